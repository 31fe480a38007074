"""Two compilations of one :class:`~workers.circuits.Circuit`.

* :class:`AerBackend`: Qiskit Aer. The circuit is built once with all its
  angles as parameters and transpiled once per trial; a whole batch of
  samples, and for training every sample's parameter-shift copies, is bound
  and run in one Aer call (``runtime_parameter_bind_enable``).
  Measurement: Aer saves the exact outcome distribution of each bound circuit
  (``save_probabilities``; under a noise model, of the noisy density matrix)
  and the backend draws ``shots`` counts from it as one multinomial draw.
  That has the same distribution as Aer's per-shot sampling of the measured
  circuit (a test holds the two together) and costs a fraction of it.
  Gradients: the two-term parameter-shift rule for every Ry angle,
  f'(t) = (f(t + pi/2) - f(t - pi/2)) / 2, each shifted circuit measured
  with its own shots.
* :class:`StatevectorBackend`: an exact batched simulator in torch (float64),
  with autograd, for fast exploration. Every gate in the gate set (H, X, Ry,
  CX, CZ) is real, so the state is a real vector.

Both return the 2**n basis-state probabilities, qubit 0 as the least
significant bit of the index, and count what they ran (circuit executions and
shots) so that a trial can report its quantum cost.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from workers.circuits import Circuit
from workers.config import NoiseSpec, parse_noise


class _Counter:
    def __init__(self) -> None:
        self.executions = 0
        self.shots_total = 0


# --------------------------------------------------------------------------- statevector
class StatevectorBackend(_Counter):
    """Exact, batched, differentiable: torch autograd through real gate matrices."""

    name = "statevector"

    def __init__(self, circuit: Circuit):
        super().__init__()
        self.circuit = circuit
        n = circuit.n_qubits
        idx = np.arange(2**n)
        self._perm: dict[tuple[int, int], torch.Tensor] = {}
        self._sign: dict[tuple[int, int], torch.Tensor] = {}
        for g in circuit.gates:
            if g.name == "cx":
                c, t = g.qubits
                flip = np.where((idx >> c) & 1, idx ^ (1 << t), idx)
                self._perm[g.qubits] = torch.as_tensor(flip)
            elif g.name == "cz":
                c, t = g.qubits
                both = ((idx >> c) & 1) & ((idx >> t) & 1)
                self._sign[g.qubits] = torch.as_tensor(1.0 - 2.0 * both, dtype=torch.float64)

    @property
    def shots(self) -> int:
        return 0

    def probabilities(self, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        n = self.circuit.n_qubits
        b = enc.shape[0]
        enc = enc.to(torch.float64)
        weights = weights.to(torch.float64)
        state = torch.zeros(b, 2**n, dtype=torch.float64)
        state[:, 0] = 1.0
        for g in self.circuit.gates:
            if g.name == "cx":
                state = state[:, self._perm[g.qubits]]
                continue
            if g.name == "cz":
                state = state * self._sign[g.qubits]
                continue
            (q,) = g.qubits
            s = state.reshape(b, 2 ** (n - 1 - q), 2, 2**q)
            s0, s1 = s[:, :, 0, :], s[:, :, 1, :]
            if g.name == "h":
                r = math.sqrt(0.5)
                new = (r * (s0 + s1), r * (s0 - s1))
            elif g.name == "x":
                new = (s1, s0)
            else:  # ry
                kind, k = g.param
                theta = enc[:, k].reshape(b, 1, 1) if kind == "enc" else weights[k]
                c, sn = torch.cos(theta / 2), torch.sin(theta / 2)
                new = (c * s0 - sn * s1, sn * s0 + c * s1)
            state = torch.stack(new, dim=2).reshape(b, 2**n)
        self.executions += b
        return state**2


# --------------------------------------------------------------------------- aer
def to_qiskit(circuit: Circuit):
    """The Qiskit form of a circuit: parameters ``e[k]`` (encoding) and ``w[k]`` (trainable)."""
    from qiskit import QuantumCircuit  # noqa: PLC0415
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


class AerBackend(_Counter):
    """Qiskit Aer: one transpiled parameterized circuit, a batch bound per run."""

    name = "aer"

    def __init__(
        self,
        circuit: Circuit,
        shots: int = 5000,
        noise: str | None = None,
        seed: int = 0,
        max_parallel_threads: int = 0,
    ):
        super().__init__()
        from qiskit import transpile  # noqa: PLC0415
        from qiskit_aer import AerSimulator  # noqa: PLC0415

        self.circuit = circuit
        self.shots = int(shots)
        self.rng = np.random.default_rng(seed)
        noise_model = _noise_model(parse_noise(noise)) if noise else None
        self.simulator = AerSimulator(
            method="density_matrix" if noise_model else "statevector",
            noise_model=noise_model,
            runtime_parameter_bind_enable=True,
            max_parallel_threads=max_parallel_threads,
            seed_simulator=seed,
        )
        qc, self.enc_params, self.w_params = to_qiskit(circuit)
        qc.save_probabilities()
        self.transpiled = transpile(qc, self.simulator, optimization_level=1, seed_transpiler=seed)
        self._params = self.enc_params + self.w_params

    # ------------------------------------------------------------------ running
    def run_bound(self, values: np.ndarray) -> np.ndarray:
        """Outcome frequencies (rows x 2**n) for each row of angles (encoding, then weights).

        Exact probabilities when ``shots`` is 0, else ``shots``-sample
        frequencies drawn from them.
        """
        values = np.asarray(values, dtype=np.float64)
        binds = {p: values[:, i] for i, p in enumerate(self._params)}
        result = self.simulator.run([self.transpiled], parameter_binds=[binds]).result()
        if not result.success:
            raise RuntimeError(f"Aer run failed: {result.status}")
        probs = np.array([np.asarray(r.data.probabilities, dtype=np.float64) for r in result.results])
        self.executions += len(values)
        if self.shots:
            probs = np.clip(probs, 0.0, None)
            probs /= probs.sum(axis=1, keepdims=True)
            probs = self.rng.multinomial(self.shots, probs) / self.shots
            self.shots_total += self.shots * len(values)
        return probs

    def probabilities(self, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # Decided here, not inside the Function: there grad mode is always off and
        # inputs still say requires_grad, so an evaluation under no_grad would pay
        # for every parameter-shift copy.
        if torch.is_grad_enabled() and (enc.requires_grad or weights.requires_grad):
            return _AerFunction.apply(enc, weights, self)
        return torch.as_tensor(self.run_bound(_bound_rows(enc, weights)), dtype=torch.float64)


def _bound_rows(enc: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """One row of angles per sample: its encoding angles, then the shared weights."""
    e = enc.detach().cpu().double().numpy()
    w = weights.detach().cpu().double().numpy()
    return np.concatenate([e, np.broadcast_to(w, (len(e), len(w)))], axis=1)


def _noise_model(spec: NoiseSpec):
    from qiskit_aer.noise import NoiseModel, depolarizing_error  # noqa: PLC0415

    model = NoiseModel()
    if spec.p1:
        model.add_all_qubit_quantum_error(depolarizing_error(spec.p1, 1), ["ry", "h", "x"])
    if spec.p2:
        model.add_all_qubit_quantum_error(depolarizing_error(spec.p2, 2), ["cx", "cz"])
    return model


class _AerFunction(torch.autograd.Function):
    """Aer forward; parameter-shift backward, with the shifted circuits run in the same call."""

    @staticmethod
    def forward(ctx, enc, weights, backend: AerBackend):  # noqa: D401
        b = enc.shape[0]
        base = _bound_rows(enc, weights)
        p = base.shape[1]
        shifts = np.concatenate([np.eye(p), -np.eye(p)]) * (math.pi / 2)  # (2p, p)
        rows = np.concatenate([base[:, None, :], base[:, None, :] + shifts[None]], axis=1)
        out = backend.run_bound(rows.reshape(b * (1 + 2 * p), p)).reshape(b, 1 + 2 * p, -1)
        jac = (out[:, 1 : 1 + p] - out[:, 1 + p :]) / 2  # (b, p, 2**n): d prob / d angle
        ctx.save_for_backward(torch.as_tensor(jac))
        ctx.n_enc = enc.shape[1]
        return torch.as_tensor(out[:, 0], dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad_out):
        (jac,) = ctx.saved_tensors
        g = torch.einsum("bpi,bi->bp", jac, grad_out.to(jac.dtype))
        grad_enc = g[:, : ctx.n_enc]
        grad_w = g[:, ctx.n_enc :].sum(dim=0)
        return grad_enc, grad_w, None


def make_backend(name: str, circuit: Circuit, shots: int, noise: str | None, seed: int):
    if name == "statevector":
        return StatevectorBackend(circuit)
    if name == "aer":
        return AerBackend(circuit, shots=shots, noise=noise, seed=seed)
    raise ValueError(f"backend: unknown backend {name!r}")
