"""A student circuit's backend: an executor, a measurement and a gradient, chosen apart.

The three parts (kept apart the way PennyLane keeps devices apart from gradient
methods), one module each:

* an *executor* turns a matrix of bound angle rows (a circuit's encoding angles,
  then its weights) into exact outcome probabilities, nothing else:
  :class:`~workers.backends.statevector.StatevectorExecutor` (torch, float64, CPU or
  CUDA) or :class:`~workers.backends.aer.AerExecutor` (Qiskit Aer, through its
  controller, :mod:`workers.backends.aer_direct`, or through its public ``run``);
* a *measurement* (:mod:`workers.backends.measurement`): exact, or ``shots`` counts
  drawn as one multinomial per row from the trial's shot stream;
* a *gradient* (:mod:`workers.backends.gradient`): torch autograd (exact statevector
  only), or the parameter-shift rule for any executor, its shift rule an option.

``backend`` in a config names the executor; ``shots`` and ``gradient`` are settings of
their own, checked once in :meth:`workers.config.TrialConfig.validate` (statevector
with shots and parameter-shift is valid; autograd with shots is not). Because the
measurement is shared, the torch executor and Aer with the same seed draw the same
counts and a trial gives the same numbers on either (a test holds them to it).

Every backend returns the 2**n basis-state probabilities, qubit 0 as the least
significant bit of the index, and counts what it ran (circuit executions and shots)
so that a trial can report its quantum cost; :meth:`Backend.describe` says which
executor, measurement and gradient actually ran, for the result row.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from workers.backends.gradient import SHIFT_RULES, Autograd, ParameterShift, bound_rows
from workers.backends.measurement import Exact, Sampled, make_measurement
from workers.backends.statevector import StatevectorExecutor
from workers.circuits import Circuit
from workers.errors import ConfigError
from workers.refs import load

__all__ = [
    "SHIFT_RULES",
    "AerBackend",
    "Backend",
    "StatevectorBackend",
    "StatevectorExecutor",
    "bound_rows",
    "default_gradient",
    "make_backend",
]

#: Executors by the name a config's ``backend`` gives, as ``module:class``. The Aer one is
#: imported when it is first built, so that a torch trial never imports Qiskit.
EXECUTORS = {
    "statevector": "workers.backends.statevector:StatevectorExecutor",
    "aer": "workers.backends.aer:AerExecutor",
}
#: The backend of a user's Qiskit circuit (:mod:`workers.backends.user`), by the same rule.
USER_BACKEND = "workers.backends.user:make_user_backend"


def default_gradient(backend: str, shots: int) -> str:
    """Autograd where it is exact (the torch statevector without shots), else parameter-shift."""
    return "autograd" if backend == "statevector" and not shots else "parameter-shift"


class Backend:
    """An executor, a measurement and a gradient: ``probabilities(enc, weights)`` for a student."""

    def __init__(self, executor, measurement: Exact | Sampled, gradient: Autograd | ParameterShift):
        if isinstance(gradient, Autograd) and (measurement.shots or not hasattr(executor, "probabilities")):
            raise ValueError("gradient: autograd needs the exact statevector executor (shots 0)")
        self.executor, self.measurement, self.gradient = executor, measurement, gradient
        self.executions = 0
        self.shots_total = 0

    # ------------------------------------------------------------------ what it is
    @property
    def name(self) -> str:
        """The executor family a config names (``aer`` or ``statevector``)."""
        return "statevector" if isinstance(self.executor, StatevectorExecutor) else "aer"

    @property
    def circuit(self) -> Circuit:
        return self.executor.circuit

    @property
    def shots(self) -> int:
        return self.measurement.shots

    @property
    def rng(self) -> np.random.Generator | None:
        return self.measurement.rng

    @property
    def sim_seconds(self) -> float:
        """Seconds the simulator itself reported (Aer's own timer; 0 for torch)."""
        return float(getattr(self.executor, "sim_seconds", 0.0))

    def describe(self) -> dict[str, str]:
        """What actually ran, for the result row."""
        return {"executor": self.executor.name, "measurement": self.measurement.name, "gradient": self.gradient.name}

    @contextmanager
    def drawing_from(self, rng: np.random.Generator | None) -> Iterator[None]:
        with self.measurement.drawing_from(rng):
            yield

    # ------------------------------------------------------------------ running
    def run_bound(self, rows: np.ndarray) -> np.ndarray:
        """Measured outcome frequencies (rows x 2**n), one row of angles (encoding, then weights) each."""
        probs = self.measurement(self.executor.run_rows(rows))
        self.executions += len(rows)
        self.shots_total += self.shots * len(rows)
        return probs

    def run_samples(self, enc: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
        """Measured frequencies (B x 2**n) of B samples sharing ``weights``, no gradient."""
        if isinstance(self.executor, StatevectorExecutor):  # the fused ansatz: one matrix for the batch
            with torch.no_grad():
                probs = self.executor.probabilities(enc, weights).numpy()
        else:
            probs = self.executor.run_rows(bound_rows(enc, weights))
        self.executions += len(probs)
        self.shots_total += self.shots * len(probs)
        return self.measurement(probs)

    def run_shifted(self, enc: np.ndarray, weights: np.ndarray, shift: float) -> np.ndarray:
        """Measured frequencies (B, 1 + 2P, 2**n): each sample's circuit, then each of its
        P angles (encoding, then weights) shifted by +shift, then by -shift."""
        probs = self.executor.run_shifted(enc, weights, shift) if hasattr(self.executor, "run_shifted") else None
        if probs is None:
            base = np.concatenate([enc, np.broadcast_to(weights, (len(enc), len(weights)))], axis=1)
            p = base.shape[1]
            shifts = np.concatenate([np.eye(p), -np.eye(p)]) * shift  # (2p, p)
            rows = np.concatenate([base[:, None, :], base[:, None, :] + shifts[None]], axis=1)
            probs = self.executor.run_rows(rows.reshape(-1, p)).reshape(len(base), 1 + 2 * p, -1)
        n = probs.shape[0] * probs.shape[1]
        self.executions += n
        self.shots_total += self.shots * n
        return self.measurement(probs.reshape(n, -1)).reshape(probs.shape)

    def probabilities(self, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Measured probabilities (B x 2**n) of B samples sharing ``weights``, differentiable."""
        return self.gradient.probabilities(self, enc, weights)


def make_backend(
    name: str,
    circuit: Circuit,
    shots: int = 0,
    noise: str | None = None,
    seed: int = 0,
    shift_rule: str = "exact",
    gradient: str | None = None,
    device: str = "cpu",
    noise_scale: float = 1.0,
    **executor_kw,
) -> Backend:
    """The backend a (resolved) config names: executor ``name``, ``shots`` (0: exact) drawn
    from ``seed``, ``gradient`` (None: :func:`default_gradient`), ``noise`` with its error
    rates times ``noise_scale`` (:mod:`workers.backends.noise`). A user's circuit
    (:class:`~workers.usercircuit.UserCircuit`) gets :mod:`workers.backends.user`'s backend."""
    if not isinstance(circuit, Circuit):  # a user circuit: its module is imported only then
        return load(USER_BACKEND)(name, circuit, shots, noise, seed, shift_rule, gradient, device, **executor_kw)
    if name not in EXECUTORS:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {list(EXECUTORS)}")
    if name == "aer":
        executor = load(EXECUTORS["aer"])(circuit, noise=noise, seed=seed, noise_scale=noise_scale, **executor_kw)
    else:
        if noise:
            raise ValueError("noise: a noise model needs the aer backend")
        if device != "cpu" and not torch.cuda.is_available():
            raise ConfigError("device", f"{device!r}: torch sees no GPU on {platform.node()}")
        executor = StatevectorExecutor(circuit, device=device)
    gradient = gradient or default_gradient(name, shots)
    grad = Autograd() if gradient == "autograd" else ParameterShift(shift_rule or "exact")
    return Backend(executor, make_measurement(shots, seed), grad)


def AerBackend(
    circuit: Circuit,
    shots: int = 5000,
    noise: str | None = None,
    seed: int = 0,
    max_parallel_threads: int = 0,
    direct: bool = True,
    shift_rule: str = "exact",
) -> Backend:
    """Qiskit Aer (through its controller when it can), 5000 shots by default, parameter-shift."""
    return make_backend("aer", circuit, shots, noise, seed, shift_rule,
                        max_parallel_threads=max_parallel_threads, direct=direct)  # fmt: skip


def StatevectorBackend(circuit: Circuit, shots: int = 0, seed: int = 0, device: str = "cpu") -> Backend:
    """The torch executor: exact with autograd, or with ``shots`` and parameter-shift."""
    return make_backend("statevector", circuit, shots, None, seed, device=device)
