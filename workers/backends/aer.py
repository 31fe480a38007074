"""The Aer executor: exact outcome probabilities of bound circuits from Qiskit Aer.

The circuit is built once with all its angles as parameters, transpiled once per
trial, and every batch of bound angle rows (a sample's encoding angles, then the
weights; for training, every sample's parameter-shift copies too) is bound at run
time (``runtime_parameter_bind_enable``). Aer saves the exact outcome distribution
of each bound circuit (``save_probabilities``; under a noise model, of the noisy
density matrix); drawing shots from it is the measurement's job
(:mod:`workers.backends.measurement`), the same for every executor.

Two ways through Aer, one result: straight through its controller
(:mod:`workers.backends.aer_direct`, ``aer-direct``), or its public
``AerSimulator.run`` (``aer-public``) when the direct path cannot be built or
disagrees with it. :attr:`AerExecutor.name` says which one runs, and every result
row records it.
"""

from __future__ import annotations

import numpy as np

from workers.backends.aer_direct import DirectAer, direct_or_none, gc_paused
from workers.circuits import Circuit
from workers.config import NoiseSpec, parse_noise


def to_qiskit(circuit: Circuit):
    """The Qiskit form of a circuit: parameters ``e[k]`` (encoding) and ``w[k]`` (trainable)."""
    from qiskit import QuantumCircuit  # noqa: PLC0415 - Qiskit loads only where a circuit is built for it
    from qiskit.circuit import ParameterVector  # noqa: PLC0415

    enc = ParameterVector("e", circuit.n_enc)
    w = ParameterVector("w", circuit.n_weights)
    qc = QuantumCircuit(circuit.n_qubits)
    for g in circuit.gates:
        if g.name == "ry":
            kind, k = g.param
            qc.ry(enc[k] if kind == "enc" else w[k], g.qubits[0])
        else:
            getattr(qc, g.name)(*g.qubits)
    return qc, list(enc), list(w)


def noise_model(spec: NoiseSpec):
    """Depolarizing noise after every 1-qubit (p1) and 2-qubit (p2) gate."""
    from qiskit_aer.noise import NoiseModel, depolarizing_error  # noqa: PLC0415

    model = NoiseModel()
    if spec.p1:
        model.add_all_qubit_quantum_error(depolarizing_error(spec.p1, 1), ["ry", "h", "x"])
    if spec.p2:
        model.add_all_qubit_quantum_error(depolarizing_error(spec.p2, 2), ["cx", "cz"])
    return model


class AerExecutor:
    """One transpiled parameterized circuit; :meth:`run_rows` binds a matrix of angle rows."""

    def __init__(
        self,
        circuit: Circuit,
        noise: str | None = None,
        seed: int = 0,
        max_parallel_threads: int = 0,
        direct: bool = True,
    ):
        from qiskit import transpile  # noqa: PLC0415
        from qiskit_aer import AerSimulator  # noqa: PLC0415

        self.circuit = circuit
        #: Seconds Aer itself reported simulating (its controller's execute time):
        #: the floor under what :meth:`run_rows` costs.
        self.sim_seconds = 0.0
        self._noise_model = noise_model(parse_noise(noise)) if noise else None
        self.simulator = AerSimulator(
            method="density_matrix" if self._noise_model else "statevector",
            noise_model=self._noise_model,
            runtime_parameter_bind_enable=True,
            max_parallel_threads=max_parallel_threads,
            seed_simulator=seed,
        )
        qc, self.enc_params, self.w_params = to_qiskit(circuit)
        qc.save_probabilities()
        self.transpiled = transpile(qc, self.simulator, optimization_level=1, seed_transpiler=seed)
        self._params = self.enc_params + self.w_params
        self.direct: DirectAer | None = (
            direct_or_none(self.simulator, self.transpiled, self._params, self._noise_model, self._run_public)
            if direct
            else None
        )

    @property
    def name(self) -> str:
        """What runs: ``aer-direct`` (through Aer's controller) or ``aer-public`` (``AerSimulator.run``)."""
        return "aer-direct" if self.direct is not None else "aer-public"

    def _run_public(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        binds = {p: values[:, i] for i, p in enumerate(self._params)}
        with gc_paused():
            result = self.simulator.run([self.transpiled], parameter_binds=[binds]).result()
            if not result.success:
                raise RuntimeError(f"Aer run failed: {result.status}")
            probs = np.array([np.asarray(r.data.probabilities, dtype=np.float64) for r in result.results])
        return probs, float(result.metadata.get("time_taken_execute", 0.0))

    def run_rows(self, rows: np.ndarray) -> np.ndarray:
        """Exact probabilities (R x 2**n) of R bound circuits (encoding angles, then weights)."""
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        probs, sim_seconds = self.direct(rows) if self.direct is not None else self._run_public(rows)
        self.sim_seconds += sim_seconds
        return probs
