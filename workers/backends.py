"""Two compilations of one :class:`~workers.circuits.Circuit`.

* :class:`AerBackend`: Qiskit Aer. The circuit is built once with all its
  angles as parameters, transpiled and assembled once per trial; a whole
  batch of samples, and for training every sample's parameter-shift copies,
  is bound at run time (``runtime_parameter_bind_enable``) and run straight
  through Aer's controller in calls of 128 bindings, Aer's threads running
  the bindings of a call in parallel.
  Measurement: Aer saves the exact outcome distribution of each bound circuit
  (``save_probabilities``; under a noise model, of the noisy density matrix)
  and the backend draws ``shots`` counts from it as one multinomial draw.
  That has the same distribution as Aer's per-shot sampling of the measured
  circuit (a test holds the two together) and costs a fraction of it.
  Gradients: the two-term parameter-shift rule for every Ry angle,
  f'(t) = (f(t + pi/2) - f(t - pi/2)) / 2, each shifted circuit measured
  with its own shots; or, to replicate the paper's released notebooks
  (``shift_rule="pi4-unnormalized"``), f(t + pi/4) - f(t - pi/4), which is
  2 sin(pi/4) = sqrt(2) times the gradient for a Ry angle.
* :class:`StatevectorBackend`: an exact batched simulator in torch (float64),
  with autograd, for fast exploration. Every gate in the gate set (H, X, Ry,
  CX, CZ) is real, so the state is a real vector.

Both return the 2**n basis-state probabilities, qubit 0 as the least
significant bit of the index, and count what they ran (circuit executions and
shots) so that a trial can report its quantum cost.

Where the time goes, and why the code below looks the way it does, is written
down in ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import torch

from workers.circuits import Circuit, Gate
from workers.config import NoiseSpec, parse_noise

log = logging.getLogger(__name__)


class _Counter:
    #: Where shot sampling draws from (None: a backend that does not sample).
    rng: np.random.Generator | None = None

    def __init__(self) -> None:
        self.executions = 0
        self.shots_total = 0

    @contextlib.contextmanager
    def drawing_from(self, rng: np.random.Generator | None) -> Iterator[None]:
        """Draw the shots of the calls inside from ``rng`` instead of the backend's own stream.

        A trial scores its validation split this way, so that adding one leaves the
        draws of training and of the test split, and so their numbers, as they were.
        """
        if rng is None or self.rng is None:
            yield
            return
        own, self.rng = self.rng, rng
        try:
            yield
        finally:
            self.rng = own


# --------------------------------------------------------------------------- statevector
#
# The gate list is compiled once into a short program over the stored state S
# (B x 2**n). Three ideas keep the number of torch operations, which is what
# costs at these sizes, small and independent of the gate count where possible:
#
# * a *frame*: permutation and sign gates (X, CX, CZ) are not applied to S; the
#   true state is psi[j] = d[j] * S[f[j]], and (f, d) is carried at compile time
#   into the matrices of later gates;
# * a data-dependent Ry(theta) is S <- cos(theta/2) S + sin(theta/2) (S @ Q),
#   Q a constant signed permutation that already includes the frame;
# * a maximal run of gates that do not depend on the sample (trainable Ry, H
#   and the permutations around them: the whole ansatz) is fused into one
#   2**n x 2**n matrix, built from the weights on every call (differentiably)
#   and applied to the batch as a single matmul.


class _Frame:
    """Gates not yet applied to the stored state: psi[j] = d[j] * S[f[j]]."""

    def __init__(self, dim: int) -> None:
        self.f = np.arange(dim)
        self.d = np.ones(dim)

    @property
    def identity(self) -> bool:
        return bool((self.f == np.arange(len(self.f))).all() and (self.d == 1).all())

    def permute(self, g: np.ndarray) -> None:
        """A gate with psi'[j] = psi[g[j]]."""
        self.f, self.d = self.f[g], self.d[g]

    def flip(self, z: np.ndarray) -> None:
        """A diagonal gate of signs: psi'[j] = z[j] psi[j]."""
        self.d = self.d * z

    def ry_partner(self, q: int) -> np.ndarray:
        """Q such that Ry(theta) on qubit q is S <- cos(theta/2) S + sin(theta/2) S @ Q, frame kept."""
        dim = len(self.f)
        j = np.argsort(self.f)  # j[i]: the basis index that stored slot i holds
        jb = j ^ (1 << q)
        sigma = np.where((j >> q) & 1, 1.0, -1.0)  # Ry: new0 = c a0 - s a1, new1 = s a0 + c a1
        q_mat = np.zeros((dim, dim))
        q_mat[self.f[jb], np.arange(dim)] = sigma * self.d[j] * self.d[jb]
        return q_mat

    def absorb(self, u: np.ndarray | None = None) -> np.ndarray:
        """A with S <- S @ A applying the frame (then the constant gate ``u``); the frame resets."""
        dim = len(self.f)
        u = np.eye(dim) if u is None else u
        a = np.zeros((dim, dim))
        a[self.f, :] = (u * self.d[None, :]).T  # S_new[j] = sum_k u[j, k] d[k] S[f[k]]
        self.f, self.d = np.arange(dim), np.ones(dim)
        return a


def _signed_permutation(g: Gate, dim: int) -> tuple[str, np.ndarray] | None:
    idx = np.arange(dim)
    if g.name == "x":
        return "permute", idx ^ (1 << g.qubits[0])
    if g.name == "cx":
        c, t = g.qubits
        return "permute", np.where((idx >> c) & 1, idx ^ (1 << t), idx)
    if g.name == "cz":
        c, t = g.qubits
        return "flip", 1.0 - 2.0 * (((idx >> c) & 1) & ((idx >> t) & 1))
    return None


def _constant_matrix(g: Gate, dim: int) -> np.ndarray:
    """The full matrix of a parameter-free gate that is no signed permutation (H)."""
    if g.name != "h":
        raise ValueError(f"statevector: no rule for gate {g.name!r}")
    (q,) = g.qubits
    idx = np.arange(dim)
    bit = (idx >> q) & 1
    u = np.zeros((dim, dim))
    r = math.sqrt(0.5)
    u[idx, idx] = np.where(bit, -r, r)
    u[idx ^ (1 << q), idx] = r
    return u


@dataclass
class _Block:
    """A fused run of sample-independent gates: S <- S @ X(w)."""

    start: torch.Tensor  # X before the first trainable gate (the frame and fixed gates so far)
    steps: list[tuple[str, object]]  # ("ry", (k, Q)) | ("const", A)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


def _fuse(run: list[tuple[str, object]], dim: int) -> _Block:
    """Leading constants folded into the start matrix, neighbouring constants multiplied together."""
    start = np.eye(dim)
    steps: list[tuple[str, object]] = []
    for kind, arg in run:
        if kind == "const" and not steps:
            start = start @ arg
        elif kind == "const" and steps[-1][0] == "const":
            steps[-1] = ("const", steps[-1][1] @ arg)
        else:
            steps.append((kind, arg))
    return _Block(_tensor(start), [(k, (a[0], _tensor(a[1])) if k == "ry" else _tensor(a)) for k, a in steps])


class StatevectorBackend(_Counter):
    """Exact, batched, differentiable: torch autograd through real gate matrices."""

    name = "statevector"

    def __init__(self, circuit: Circuit):
        super().__init__()
        self.circuit = circuit
        self._program = self._compile(circuit)

    @property
    def shots(self) -> int:
        return 0

    @staticmethod
    def _compile(circuit: Circuit) -> list[tuple[str, object]]:
        """The program: ("ry", (k, Q)) per data-dependent gate, ("block", _Block) per fused run, ("const", A)."""
        dim = circuit.dim
        frame = _Frame(dim)
        program: list[tuple[str, object]] = []
        run: list[tuple[str, object]] | None = None  # the open run of sample-independent gates

        def close_run() -> None:
            nonlocal run
            if run is not None:
                if not frame.identity:
                    run.append(("const", frame.absorb()))
                program.append(("block", _fuse(run, dim)))
                run = None

        for g in circuit.gates:
            if g.name == "ry" and g.param[0] == "enc":
                close_run()
                program.append(("ry", (g.param[1], _tensor(frame.ry_partner(g.qubits[0])))))
                continue
            perm = _signed_permutation(g, dim)
            if perm is not None:
                getattr(frame, perm[0])(perm[1])
                continue
            if run is None:
                run = [("const", frame.absorb())]
            if g.name == "ry":
                run.append(("ry", (g.param[1], frame.ry_partner(g.qubits[0]))))
            else:
                run.append(("const", frame.absorb(_constant_matrix(g, dim))))
        close_run()
        if not frame.identity:
            program.append(("const", _tensor(frame.absorb())))
        return program

    def probabilities(self, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        b, dim = enc.shape[0], self.circuit.dim
        half_e = enc.to(torch.float64) * 0.5
        cos_e = torch.cos(half_e).unsqueeze(-1).unbind(1)  # n_enc tensors of (B, 1)
        sin_e = torch.sin(half_e).unsqueeze(-1).unbind(1)
        half_w = weights.to(torch.float64) * 0.5
        cos_w, sin_w = torch.cos(half_w), torch.sin(half_w)
        state = torch.zeros(b, dim, dtype=torch.float64)
        state[:, 0] = 1.0
        for kind, arg in self._program:
            if kind == "ry":
                k, q_mat = arg
                state = torch.addcmul(state * cos_e[k], sin_e[k], state @ q_mat)
            elif kind == "block":
                x = arg.start
                for step, sarg in arg.steps:
                    if step == "ry":
                        k, q_mat = sarg
                        x = x * cos_w[k] + (x @ q_mat) * sin_w[k]
                    else:
                        x = x @ sarg
                state = state @ x
            else:
                state = state @ arg
        self.executions += b
        return state * state


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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Aer hands back one dict tree per bound circuit; the collector would rescan the heap many times over."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _aer_threads(requested: int | None) -> int:
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


class _DirectAer:
    """One pre-assembled circuit run straight through Aer's controller, bindings as columns.

    ``AerSimulator.run`` re-compiles and re-assembles the circuit, converts the
    bindings parameter by parameter, runs in a job thread and wraps each bound
    circuit's output in ``qiskit.result`` objects on every call; for a 3-qubit
    circuit that costs more than the simulation. Here the assembly, the slot of
    every parameter and the configuration are made once; a call sets the
    bindings and reads the probabilities out of the controller's own output.
    It calls Aer below its public API (``assemble_circuits``,
    ``generate_aer_config``, the simulator's controller), so
    :class:`AerBackend` checks it against ``AerSimulator.run`` once and keeps to
    the public path if the two disagree or this cannot be built.
    """

    #: Bindings per Aer call. Aer's cost per binding grows with the bindings in a
    #: call (its result objects and their Python copies fall out of cache): on
    #: the machine in docs/performance.md calls of 128 cost a fifth (one thread)
    #: to a third (two) less per circuit than one call of 864; a call's fixed
    #: cost is ~60 us.
    chunk = 128

    def __init__(self, simulator, transpiled, params: list, noise_model) -> None:
        from qiskit.circuit import ParameterExpression  # noqa: PLC0415
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
        shots = _aer_threads(simulator.options.max_parallel_threads)
        self._config = generate_aer_config([transpiled], simulator.options, shots=shots, **fusion)
        self._config.library_dir = LIBRARY_DIR
        self._noise = noise_model.to_dict(serializable=True) if noise_model is not None else {}
        self._controller = simulator._controller

    def __call__(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Exact probabilities per row of ``values``, and the seconds Aer says it simulated."""
        probs = np.empty((len(values), 2**self._circuit.num_qubits))
        sim_seconds = 0.0
        with _gc_paused():
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
        direct: bool = True,
        shift_rule: str = "exact",
    ):
        super().__init__()
        #: The parameter-shift rule: derivative estimate = scale * (f(t + shift) - f(t - shift)).
        self.shift, self.shift_scale = SHIFT_RULES[shift_rule]
        from qiskit import transpile  # noqa: PLC0415
        from qiskit_aer import AerSimulator  # noqa: PLC0415

        self.circuit = circuit
        self.shots = int(shots)
        #: Seconds Aer itself reported simulating (its controller's execute time):
        #: the floor under what :meth:`run_bound` costs.
        self.sim_seconds = 0.0
        self.rng = np.random.default_rng(seed)
        self._noise_model = _noise_model(parse_noise(noise)) if noise else None
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
        self._direct = self._make_direct() if direct else None

    def _make_direct(self) -> _DirectAer | None:
        try:
            direct = _DirectAer(self.simulator, self.transpiled, self._params, self._noise_model)
            probe = np.random.default_rng(0).uniform(-math.pi, math.pi, size=(3, len(self._params)))
            if np.abs(direct(probe)[0] - self._run_public(probe)[0]).max() <= 1e-12:
                return direct
            log.warning("Aer direct path disagrees with AerSimulator.run; using AerSimulator.run")
        except Exception as exc:  # noqa: BLE001 - any failure here only means the slower public path
            log.warning("Aer direct path unavailable (%s); using AerSimulator.run", exc)
        return None

    # ------------------------------------------------------------------ running
    def _run_public(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        binds = {p: values[:, i] for i, p in enumerate(self._params)}
        with _gc_paused():
            result = self.simulator.run([self.transpiled], parameter_binds=[binds]).result()
            if not result.success:
                raise RuntimeError(f"Aer run failed: {result.status}")
            probs = np.array([np.asarray(r.data.probabilities, dtype=np.float64) for r in result.results])
        return probs, float(result.metadata.get("time_taken_execute", 0.0))

    def run_bound(self, values: np.ndarray) -> np.ndarray:
        """Outcome frequencies (rows x 2**n) for each row of angles (encoding, then weights).

        Exact probabilities when ``shots`` is 0, else ``shots``-sample
        frequencies drawn from them.
        """
        values = np.ascontiguousarray(values, dtype=np.float64)
        probs, sim_seconds = self._direct(values) if self._direct is not None else self._run_public(values)
        self.sim_seconds += sim_seconds
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
        shifts = np.concatenate([np.eye(p), -np.eye(p)]) * backend.shift  # (2p, p)
        rows = np.concatenate([base[:, None, :], base[:, None, :] + shifts[None]], axis=1)
        out = backend.run_bound(rows.reshape(b * (1 + 2 * p), p)).reshape(b, 1 + 2 * p, -1)
        jac = (out[:, 1 : 1 + p] - out[:, 1 + p :]) * backend.shift_scale  # (b, p, 2**n): d prob / d angle
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


#: shift rule -> (shift, scale): the estimate of d f / d t is scale * (f(t + shift) - f(t - shift)).
SHIFT_RULES = {"exact": (math.pi / 2, 0.5), "pi4-unnormalized": (math.pi / 4, 1.0)}


def make_backend(name: str, circuit: Circuit, shots: int, noise: str | None, seed: int, shift_rule: str = "exact"):
    if name == "statevector":
        return StatevectorBackend(circuit)
    if name == "aer":
        return AerBackend(circuit, shots=shots, noise=noise, seed=seed, shift_rule=shift_rule or "exact")
    raise ValueError(f"backend: unknown backend {name!r}")
