"""The Aer executor: exact outcome probabilities of bound circuits from Qiskit Aer.

The circuit is built once with all its angles as parameters, transpiled once per
trial, and every batch of bound angle rows (a sample's encoding angles, then the
weights; for training, every sample's parameter-shift copies too) is bound at run
time (``runtime_parameter_bind_enable``). Aer saves the exact outcome distribution
of each bound circuit (``save_probabilities``; under a noise model, of the noisy
density matrix); drawing shots from it is the measurement's job
(:mod:`workers.backends.measurement`), the same for every executor.

Under a device's noise (``noise: fake:NAME``) the circuit is the device's transpiled one
(:func:`workers.backends.noise.device_circuit`: basis gates, coupling map, layout), run
as it is on the density matrix, and the device's readout error, which Aer applies to
``measure`` instructions only and so not to saved probabilities, is applied to the
saved probabilities after every run (:func:`workers.backends.noise.apply_readout`: the
distribution a measurement would read). ``noise_scale`` multiplies every error rate of
either model (see :mod:`workers.backends.noise`).

Two ways through Aer, one result: straight through its controller
(:mod:`workers.backends.aer_direct`, ``aer-direct``), or its public
``AerSimulator.run`` (``aer-public``) when the direct path cannot be built or
disagrees with it. :attr:`AerExecutor.name` says which one runs, and every result
row records it.
"""

from __future__ import annotations

import numpy as np
from qiskit import transpile
from qiskit_aer import AerSimulator

from workers.backends.aer_direct import DirectAer, direct_or_none, gc_paused
from workers.backends.noise import DeviceCircuit, apply_readout, device_circuit, is_gate, noise_model, to_qiskit
from workers.circuits import Circuit
from workers.noise_spec import DeviceNoise, parse_noise

__all__ = ["AerExecutor", "noise_model", "to_qiskit"]


class AerExecutor:
    """One transpiled parameterized circuit; :meth:`run_rows` binds a matrix of angle rows."""

    def __init__(
        self,
        circuit: Circuit,
        noise: str | None = None,
        seed: int = 0,
        max_parallel_threads: int = 0,
        direct: bool = True,
        noise_scale: float = 1.0,
    ):
        self.circuit = circuit
        #: Seconds Aer itself reported simulating (its controller's execute time):
        #: the floor under what :meth:`run_rows` costs.
        self.sim_seconds = 0.0
        spec = parse_noise(noise) if noise else None
        #: The device's circuit, noise and readout under ``fake:NAME`` noise, else None.
        self.device: DeviceCircuit | None = None
        if isinstance(spec, DeviceNoise):
            self.device = device_circuit(circuit, spec, noise_scale, seed)
            self._noise_model = self.device.noise_model
        else:
            self._noise_model = noise_model(spec, noise_scale) if spec else None
        self.simulator = AerSimulator(
            method="density_matrix" if self._noise_model else "statevector",
            noise_model=self._noise_model,
            runtime_parameter_bind_enable=True,
            max_parallel_threads=max_parallel_threads,
            seed_simulator=seed,
        )
        if self.device is not None:  # transpiled for the device already: run as it is
            self.transpiled = self.device.circuit
            self._params = self.device.params
        else:
            qc, enc_params, w_params = to_qiskit(circuit)
            qc.save_probabilities()
            self.transpiled = transpile(qc, self.simulator, optimization_level=1, seed_transpiler=seed)
            self._params = enc_params + w_params
        self.direct: DirectAer | None = (
            direct_or_none(self.simulator, self.transpiled, self._params, self._noise_model, self._run_public)
            if direct
            else None
        )

    @property
    def name(self) -> str:
        """What runs: ``aer-direct`` (through Aer's controller) or ``aer-public`` (``AerSimulator.run``)."""
        return "aer-direct" if self.direct is not None else "aer-public"

    def circuit_info(self) -> dict:
        """What the row records of the circuit that runs: the device layout (physical qubit
        of each logical qubit, ``""`` off a device), its depth and two-qubit gate count."""
        if self.device is not None:
            d = self.device
            return {"layout": ",".join(map(str, d.layout)), "transpiled_depth": d.depth,
                    "two_qubit_gates": d.two_qubit_gates}  # fmt: skip
        ops = [inst for inst in self.transpiled.data if is_gate(inst)]
        return {"layout": "", "transpiled_depth": int(self.transpiled.depth(filter_function=is_gate)),
                "two_qubit_gates": sum(1 for inst in ops if len(inst.qubits) == 2)}  # fmt: skip

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
        if self.device is not None:  # readout error: Aer applies it to measure only (module docstring)
            probs = apply_readout(probs, self.device.readout)
        return probs
