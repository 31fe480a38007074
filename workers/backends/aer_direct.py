"""Aer through its controller, below the public API: the fast Aer executor and its guard.

``AerSimulator.run`` re-compiles and re-assembles the circuit, converts the bindings
parameter by parameter, runs in a job thread and wraps each bound circuit's output in
``qiskit.result`` objects on every call; for a 3-qubit circuit that costs more than the
simulation. :class:`DirectAer` makes the assembly, the slot of every parameter and the
configuration once; a call sets the bindings and reads the probabilities out of the
controller's own output.

It uses Aer internals (``assemble_circuits``, ``generate_aer_config``, the simulator's
controller), so it is guarded twice: ``pyproject.toml`` caps qiskit-aer at the newest
version this path is tested against (:data:`TESTED_AER`), and :func:`direct_or_none`
checks it against ``AerSimulator.run`` on random angles before it is used and returns
``None`` (the caller keeps to the public path, and its row says ``aer-public``) if the
two disagree or it cannot be built.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Callable, Iterator
from operator import itemgetter

import numpy as np
from qiskit.circuit import ParameterExpression

log = logging.getLogger(__name__)

#: The newest qiskit-aer this module is tested against (pyproject.toml caps it here).
TESTED_AER = "0.18.2"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Aer hands back one dict tree per bound circuit; the collector would rescan the heap many times over."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def aer_threads(requested: int | None) -> int:
    """The threads Aer will use: the request, else what OpenMP is allowed (Ray workers set OMP_NUM_THREADS)."""
    if requested and requested > 0:
        return int(requested)
    try:
        omp = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        omp = 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(omp, cores) if omp > 0 else cores)


_DATA = itemgetter("data")
_PROBS = itemgetter("probabilities")


class DirectAer:
    """One pre-assembled circuit run straight through Aer's controller, bindings as columns
    (see the module's docstring; build it through :func:`direct_or_none`)."""

    #: Bindings per Aer call. Aer's cost per binding grows with the bindings in a
    #: call (its result objects and their Python copies fall out of cache): on
    #: the machine in docs/performance.md calls of 128 cost a fifth (one thread)
    #: to a third (two) less per circuit than one call of 864; a call's fixed
    #: cost is ~60 us.
    chunk = 128

    def __init__(self, simulator, transpiled, params: list, noise_model) -> None:
        # Aer's private modules: imported here, inside direct_or_none's guard, so that an Aer
        # without them falls back to the public path instead of failing to import this module.
        from qiskit_aer.backends.aer_compiler import assemble_circuits, generate_aer_config  # noqa: PLC0415
        from qiskit_aer.backends.backend_utils import LIBRARY_DIR, CircuitHeader  # noqa: PLC0415

        phase = transpiled.global_phase
        if isinstance(phase, ParameterExpression) and phase.parameters:
            raise ValueError("parameterized global phase")
        (self._circuit,), (index_map,) = assemble_circuits([transpiled])
        self._circuit.circ_id = 0
        # Aer copies the header into every result and converts it to Python there;
        # nothing here reads it, and an empty one saves that once per bound circuit.
        self._circuit.set_header(CircuitHeader())
        column = {p: i for i, p in enumerate(params)}
        self._slots: list[tuple[tuple[int, int], int]] = []
        for i, inst in enumerate(transpiled.data):
            for pos, value in enumerate(inst.operation.params):
                if isinstance(value, ParameterExpression) and value.parameters:
                    if value not in column:  # an expression of several angles: leave it to Aer's own binding
                        raise ValueError(f"parameter expression {value}")
                    self._slots.append(((index_map[i], pos), column[value]))
        # Aer runs the bindings of one call on several threads only when shots > 1
        # (its parallel shots); the saved probabilities are exact whatever the shot
        # count, and each extra shot adds only an empty count record. On 2 idle
        # cores that cut the cost per circuit by a third (docs/performance.md).
        # Fusion only starts at 14 qubits; off below that, it adds nothing to each result.
        fusion = {"fusion_enable": False} if transpiled.num_qubits < 14 else {}
        shots = aer_threads(simulator.options.max_parallel_threads)
        self._config = generate_aer_config([transpiled], simulator.options, shots=shots, **fusion)
        self._config.library_dir = LIBRARY_DIR
        self._noise = noise_model.to_dict(serializable=True) if noise_model is not None else {}
        self._controller = simulator._controller

    def __call__(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Exact probabilities per row of ``values``, and the seconds Aer says it simulated."""
        probs = np.empty((len(values), 2**self._circuit.num_qubits))
        sim_seconds = 0.0
        with gc_paused():
            for start in range(0, len(values), self.chunk):
                rows = values[start : start + self.chunk]
                probs[start : start + len(rows)], seconds = self._run(rows)
                sim_seconds += seconds
        return probs, sim_seconds

    def _run(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        columns = values.T.tolist()
        self._config.parameterizations = [[[slot, columns[col]] for slot, col in self._slots]]
        out = self._controller.execute([self._circuit], self._noise, self._config)
        if not out.get("success", False):
            raise RuntimeError(f"Aer run failed: {out.get('status')}")
        results = out["results"]
        if len(results) != len(values):
            raise RuntimeError(f"Aer returned {len(results)} results for {len(values)} bindings")
        probs = np.array(list(map(_PROBS, map(_DATA, results))), dtype=np.float64)
        return probs, float(out.get("metadata", {}).get("time_taken_execute", 0.0))


def direct_or_none(simulator, transpiled, params: list, noise_model, public: Callable) -> DirectAer | None:
    """A :class:`DirectAer` that agrees with ``public`` (``AerSimulator.run``) to 1e-12 on
    random angles, else None with a warning naming why."""
    try:
        direct = DirectAer(simulator, transpiled, params, noise_model)
        probe = np.random.default_rng(0).uniform(-np.pi, np.pi, size=(3, len(params)))
        if np.abs(direct(probe)[0] - public(probe)[0]).max() <= 1e-12:
            return direct
        log.warning("Aer direct path disagrees with AerSimulator.run; using AerSimulator.run")
    except Exception as exc:  # noqa: BLE001 - any failure here only means the slower public path
        log.warning("Aer direct path unavailable (%s); using AerSimulator.run", exc)
    return None
