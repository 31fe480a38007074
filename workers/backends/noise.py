"""Noise models for the Aer executor: depolarizing, or an IBM device from its offline calibration.

``noise`` (and ``test_noise``) in a config is one of

* ``depolarizing:P1[,P2]``: a depolarizing channel after every 1-qubit (P1) and 2-qubit
  (P2) gate of the circuit as Aer runs it (its own gates, no device);
* ``fake:NAME`` (``fake:manila``, ``fake:brisbane``, any backend that
  ``qiskit_ibm_runtime.fake_provider`` ships; :func:`workers.noise_spec.fake_devices` lists
  them): the circuit as that device would run it. It is transpiled once per trial to
  the device's basis gates and coupling map (layout and routing on the whole device,
  ``optimization_level=1``, the trial's shot seed as the transpiler's seed), cut down to
  the physical qubits it touches, and simulated on Aer's density matrix under
  ``NoiseModel.from_backend`` of the device's calibration on those qubits (per gate a
  depolarizing error and thermal relaxation from T1, T2 and the gate's duration; per
  qubit a readout confusion matrix). :class:`DeviceCircuit` holds the result and what
  a row records of it: the layout (physical qubit of each logical qubit), the depth and
  the two-qubit gate count of the transpiled circuit.

Readout error. Aer applies a ``ReadoutError`` to ``measure`` instructions only; the
probabilities an executor saves (``save_probabilities``) are those of the noisy density
matrix *before* measurement and do not include it. A device's readout errors are
classical and independent per qubit (``P(read m | state p)``, one 2x2 matrix per qubit),
so the distribution a measurement would return is the saved one pushed through the
tensor product of those matrices, each applied to the bit of the physical qubit that
holds the logical qubit at the end of the circuit (after routing): :func:`apply_readout`,
which the executor applies after every run. That is exact, the same distribution as
Aer's measured counts under the same model (``tests/test_noise.py`` holds the two
together), and keeps the shots to the shared measurement (one multinomial per row).

``noise_scale`` (s >= 0) multiplies every error rate of a model:

* depolarizing: P1 and P2 become s * P1 and s * P2 (the channel's mixing probability,
  which is what the error rate of a depolarizing channel is);
* a device: the calibration is scaled *before* the model is built: every gate error and
  readout error (both flip probabilities) times s, and both relaxation rates 1/T1 and
  1/T2 times s (T1 / s and T2 / s, so T2 <= 2 T1 still holds). ``from_backend`` then builds
  the same channels from the scaled numbers (it fits each gate's depolarizing part so that
  the gate's total error, relaxation included, is the scaled error), so to first order
  every channel's infidelity, relaxation included, is s times the device's, and the
  structure of the noise (which qubits and gates are worse) is kept. s = 0 is the
  noise-free circuit as transpiled for the device; a scale that takes the device's worst
  error rate (readout included) above 1 is refused when the config is validated.
  Gate durations are not scaled; idle time is not modelled (the circuit is not
  scheduled, as in ``from_backend``'s default use).

Before transpiling, each Ry(t) is written as SX, RZ(t), SX, X (equal to Ry(t) up to a
constant global phase), so that every angle stays a bare parameter of one RZ (the device's
basis has no Ry); the transpiler merges the fixed gates around it. With Qiskit's own
translation an angle becomes ``pi + t``, which the direct Aer path does not bind (it
would fall back to ``AerSimulator.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.providers import QubitProperties
from qiskit.transpiler import InstructionProperties, Target
from qiskit_aer.noise import NoiseModel, depolarizing_error
from qiskit_aer.noise.device import basic_device_readout_errors

from workers.circuits import Circuit
from workers.noise_spec import DeviceNoise, NoiseSpec, fake_devices

#: Instructions that are no gate of the circuit (left out of its depth and gate counts).
_NOT_GATES = {"barrier", "delay", "save_probabilities", "measure"}
#: Control flow is global in a device's target and means nothing for these circuits.
_CONTROL_FLOW = {"if_else", "for_loop", "switch_case", "while_loop", "box"}


def noise_model(spec: NoiseSpec, scale: float = 1.0):
    """Depolarizing noise after every 1-qubit (p1) and 2-qubit (p2) gate, both times ``scale``."""

    p1, p2 = spec.p1 * scale, spec.p2 * scale
    model = NoiseModel()
    if p1:
        model.add_all_qubit_quantum_error(depolarizing_error(p1, 1), ["ry", "h", "x"])
    if p2:
        model.add_all_qubit_quantum_error(depolarizing_error(p2, 2), ["cx", "cz"])
    return model


def fake_backend(name: str):
    """The offline fake IBM backend ``name`` (``manila``), calibration data and all."""
    return fake_devices()[name]()


def is_gate(inst) -> bool:
    """Whether a transpiled circuit's instruction is part of the circuit, not Aer's
    ``save_probabilities`` or a barrier: what a circuit's depth and gate counts count."""
    return inst.operation.name not in ("save_probabilities", "barrier")


def to_qiskit(circuit: Circuit, device: bool = False):
    """The Qiskit form of a circuit: parameters ``e[k]`` (encoding) and ``w[k]`` (trainable).

    ``device``: every Ry(t) as SX, RZ(t), SX, X, so that each angle stays a bare parameter
    through a device's transpilation (module docstring)."""

    enc = ParameterVector("e", circuit.n_enc)
    w = ParameterVector("w", circuit.n_weights)
    qc = QuantumCircuit(circuit.n_qubits)
    for g in circuit.gates:
        if g.name != "ry":
            getattr(qc, g.name)(*g.qubits)
            continue
        kind, k = g.param
        angle, q = enc[k] if kind == "enc" else w[k], g.qubits[0]
        if device:
            qc.sx(q)
            qc.rz(angle, q)
            qc.sx(q)
            qc.x(q)
        else:
            qc.ry(angle, q)
    return qc, list(enc), list(w)


def scaled_target(target, qubits: list[int], scale: float):
    """``target`` cut down to physical ``qubits`` (renumbered 0..k-1 in that order), every
    error rate times ``scale`` (module docstring)."""

    index = {q: i for i, q in enumerate(qubits)}

    def rate(p):
        return None if p is None else min(1.0, float(p) * scale)

    def lifetime(t):
        return None if t is None or scale == 0 else float(t) / scale

    qprops = target.qubit_properties
    new_qprops = None
    if qprops:
        new_qprops = [
            QubitProperties(t1=lifetime(qprops[q].t1), t2=lifetime(qprops[q].t2), frequency=qprops[q].frequency)
            for q in qubits
        ]
    new = Target(num_qubits=len(qubits), dt=target.dt, qubit_properties=new_qprops)
    for name in target.operation_names:
        if name in _CONTROL_FLOW:
            continue
        sub = {}
        for qargs, props in (target[name] or {}).items():
            if qargs is None or not all(q in index for q in qargs):
                continue
            scaled = None
            if props is not None:
                scaled = InstructionProperties(duration=props.duration, error=rate(props.error))
                for attr in ("prob_meas1_prep0", "prob_meas0_prep1"):  # asymmetric readout, where given
                    if getattr(props, attr, None) is not None:
                        setattr(scaled, attr, rate(getattr(props, attr)))
            sub[tuple(index[q] for q in qargs)] = scaled
        if sub:
            new.add_instruction(target.operation_from_name(name), sub, name=name)
    return new


def apply_readout(probs: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """What a measurement reads from outcome probabilities ``probs`` (R x 2**n, bit j of the
    index = qubit j) when qubit j is read through ``matrices[j]`` (``[p][m]`` = P(read m | p))."""
    n = len(matrices)
    rows = len(probs)
    t = np.asarray(probs, dtype=np.float64).reshape((rows,) + (2,) * n)  # axis 1 is bit n-1
    for j, m in enumerate(matrices):
        axis = n - j
        t = np.moveaxis(np.tensordot(t, m, axes=([axis], [0])), -1, axis)
    return t.reshape(rows, 2**n)


@dataclass
class DeviceCircuit:
    """A circuit as device ``device`` runs it (module docstring): the transpiled circuit on
    the physical qubits it touches, saving the logical qubits' outcome probabilities; its
    noise model; and the readout matrix of each logical qubit."""

    device: str
    #: The transpiled circuit on ``qubits`` (renumbered 0..k-1), ending in save_probabilities
    #: over the logical qubits in order.
    circuit: object
    params: list
    noise_model: object
    #: Readout matrix of logical qubit j (the physical qubit holding it at the end).
    readout: list[np.ndarray]
    #: Physical qubit of each logical qubit at the start, and at the end (after routing).
    layout: tuple[int, ...]
    final_layout: tuple[int, ...]
    #: The physical qubits the circuit touches (ancillas of routing included).
    qubits: tuple[int, ...]
    depth: int
    two_qubit_gates: int
    basis: tuple[str, ...]


def device_circuit(circuit: Circuit, spec: DeviceNoise, scale: float = 1.0, seed: int = 0) -> DeviceCircuit:
    """Transpile ``circuit`` for device ``spec`` and build its (scaled) noise model."""

    backend = fake_backend(spec.name)
    qc, enc, w = to_qiskit(circuit, device=True)
    tq = transpile(qc, backend=backend, optimization_level=1, seed_transpiler=seed)
    n = circuit.n_qubits
    layout = tuple(tq.layout.initial_index_layout(filter_ancillas=True)[:n])
    final = tuple(tq.layout.final_index_layout(filter_ancillas=True)[:n])
    touched = {tq.find_bit(q).index for inst in tq.data for q in inst.qubits}
    qubits = sorted(touched | set(layout) | set(final))
    index = {q: i for i, q in enumerate(qubits)}

    compact = QuantumCircuit(len(qubits), global_phase=tq.global_phase)
    for inst in tq.data:
        compact.append(inst.operation, [index[tq.find_bit(q).index] for q in inst.qubits], [])
    gates = [inst for inst in compact.data if inst.operation.name not in _NOT_GATES]
    depth = compact.depth(filter_function=lambda inst: inst.operation.name not in _NOT_GATES)
    two_qubit = sum(1 for inst in gates if len(inst.qubits) == 2)
    compact.save_probabilities([index[q] for q in final])

    target = scaled_target(backend.target, qubits, scale)
    # from_backend reads a BackendV2's version, operation names, target and dt: a device
    # cut down to the circuit's qubits, so that the model (and what Aer is handed on every
    # call) has the k qubits the circuit runs on, not the device's 127.
    device = SimpleNamespace(version=2, name=backend.name, operation_names=list(target.operation_names),
                             target=target, dt=backend.dt)  # fmt: skip
    model = NoiseModel.from_backend(device)
    confusion = {tuple(q): np.asarray(e.probabilities, dtype=np.float64)
                 for q, e in basic_device_readout_errors(target=target)}  # fmt: skip
    readout = [confusion.get((index[q],), np.eye(2)) for q in final]
    return DeviceCircuit(
        device=spec.name,
        circuit=compact,
        params=list(enc) + list(w),
        noise_model=model,
        readout=readout,
        layout=layout,
        final_layout=final,
        qubits=tuple(qubits),
        depth=int(depth),
        two_qubit_gates=int(two_qubit),
        basis=tuple(sorted({inst.operation.name for inst in gates})),
    )
