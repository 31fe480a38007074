"""The torch statevector executor: exact probabilities of a circuit, float64, on CPU or GPU.

Two entry points over one compiled description of the circuit:

* :meth:`StatevectorExecutor.probabilities` ``(enc, weights)``: a batch of samples that
  share one set of trainable weights, differentiable by torch autograd (the
  ``autograd`` gradient). The sample-independent gates (the whole ansatz) are fused
  into one 2**n x 2**n matrix per call.
* :meth:`StatevectorExecutor.run_rows` ``(rows)``: one row of bound angles per
  circuit (encoding angles, then weights), every row its own weights: what the
  parameter-shift gradient and a sampled measurement need, the same interface as
  the Aer executors.

Every gate in the gate set (H, X, Ry, CX, CZ) is real, so the state is a real vector;
qubit 0 is the least significant bit of the basis index, as in Qiskit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from workers.circuits import Circuit, Gate

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

    start: np.ndarray | torch.Tensor  # X before the first trainable gate (the frame and fixed gates so far)
    steps: list[tuple[str, object]]  # ("ry", (k, Q)) | ("const", A)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


#: From this dimension on (5 qubits), a Ry's partner Q is applied as the signed permutation it
#: is (a gather and a product: O(2**n) per row) instead of a dense 2**n x 2**n product (O(4**n)).
STRUCTURED_FROM_DIM = 32


@dataclass(frozen=True)
class _Perm:
    """A signed permutation matrix Q kept as (idx, sign): (S @ Q)[:, i] = S[:, idx[i]] * sign[i]."""

    idx: np.ndarray | torch.Tensor
    sign: np.ndarray | torch.Tensor


def _times(x, q):
    """``x @ q`` for a dense partner or a :class:`_Perm` (numpy or torch alike).

    The gather is ``index_select`` / ``take`` rather than ``x[..., idx]``: the same values,
    and at 8 qubits (B = 32) half the cost forward and backward (advanced indexing's
    backward is an accumulating ``index_put_``; ``index_select``'s an ``index_add_``,
    each element receiving its one contribution either way, so the gradients agree
    bit for bit)."""
    if isinstance(q, _Perm):
        if isinstance(x, torch.Tensor):
            return torch.index_select(x, -1, q.idx) * q.sign
        return np.take(x, q.idx, axis=-1) * q.sign
    return x @ q


def _structured(q_mat: np.ndarray) -> np.ndarray | _Perm:
    """Q dense at small sizes, else as its signed permutation (one nonzero per column)."""
    if q_mat.shape[0] < STRUCTURED_FROM_DIM:
        return q_mat
    idx = np.abs(q_mat).argmax(axis=0)
    return _Perm(idx, q_mat[idx, np.arange(q_mat.shape[1])])


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
    return _Block(start, steps)


def _row_program(circuit: Circuit) -> list[tuple[str, object]]:
    """Every gate against its own row column: ("ry", (column, Q)) per Ry, ("const", A) between.

    Columns are the bound-row layout: encoding angles ``0..n_enc-1``, then weights.
    Permutations and signs ride in the frame, folded into the next Ry's Q or constant.
    """
    dim = circuit.dim
    frame = _Frame(dim)
    program: list[tuple[str, object]] = []

    def const(a: np.ndarray) -> None:
        if program and program[-1][0] == "const":
            program[-1] = ("const", program[-1][1] @ a)
        else:
            program.append(("const", a))

    for g in circuit.gates:
        perm = _signed_permutation(g, dim)
        if perm is not None:
            getattr(frame, perm[0])(perm[1])
        elif g.name == "ry":
            kind, k = g.param
            column = k if kind == "enc" else circuit.n_enc + k
            program.append(("ry", (column, _structured(frame.ry_partner(g.qubits[0])))))
        else:
            const(frame.absorb(_constant_matrix(g, dim)))
    if not frame.identity:
        const(frame.absorb())
    return program


class StatevectorExecutor:
    """Exact, batched torch simulation of one circuit; ``device`` ``cpu`` or ``cuda``."""

    name = "statevector"

    def __init__(self, circuit: Circuit, device: str = "cpu"):
        self.circuit = circuit
        self.device = torch.device(device)
        self._np_program = self._compile(circuit)
        self._program = [_on(step, self.device) for step in self._np_program]
        self._rows = [_on(step, self.device) for step in _row_program(circuit)]
        self._shifted = _shift_plan(self._np_program, circuit.dim) if self.device.type == "cpu" else None

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
                program.append(("ry", (g.param[1], _structured(frame.ry_partner(g.qubits[0])))))
                continue
            perm = _signed_permutation(g, dim)
            if perm is not None:
                getattr(frame, perm[0])(perm[1])
                continue
            if run is None:
                run = [("const", frame.absorb())]
            if g.name == "ry":
                run.append(("ry", (g.param[1], _structured(frame.ry_partner(g.qubits[0])))))
            else:
                run.append(("const", frame.absorb(_constant_matrix(g, dim))))
        close_run()
        if not frame.identity:
            program.append(("const", frame.absorb()))
        return program

    def probabilities(self, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Probabilities (B x 2**n) of B samples sharing ``weights``; differentiable."""
        b, dim = enc.shape[0], self.circuit.dim
        half_e = enc.to(self.device, torch.float64) * 0.5
        cos_e = torch.cos(half_e).unsqueeze(-1).unbind(1)  # n_enc tensors of (B, 1)
        sin_e = torch.sin(half_e).unsqueeze(-1).unbind(1)
        half_w = weights.to(self.device, torch.float64) * 0.5
        cos_w, sin_w = torch.cos(half_w), torch.sin(half_w)
        state = torch.zeros(b, dim, dtype=torch.float64, device=self.device)
        state[:, 0] = 1.0
        for kind, arg in self._program:
            if kind == "ry":
                k, q_mat = arg
                state = torch.addcmul(state * cos_e[k], sin_e[k], _times(state, q_mat))
            elif kind == "block":
                x = arg.start
                for step, sarg in arg.steps:
                    if step == "ry":
                        k, q_mat = sarg
                        x = x * cos_w[k] + _times(x, q_mat) * sin_w[k]
                    else:
                        x = x @ sarg
                state = state @ x
            else:
                state = state @ arg
        probs = state * state
        return probs if self.device.type == "cpu" else probs.cpu()

    def run_shifted(self, enc: np.ndarray, weights: np.ndarray, shift: float) -> np.ndarray | None:
        """The rows the parameter-shift rule runs, without running each from the start.

        ``(B, 1 + 2P, 2**n)`` exact probabilities, P = encoding angles + weights: per
        sample its circuit, then every angle (encoding, then weights) shifted by
        ``+shift``, then by ``-shift``; the layout of the rows
        :mod:`workers.backends.gradient` builds.

        Since Ry(t + s) = Ry(t) (cos(s/2) + sin(s/2) Q), the circuit with encoding angle
        k shifted by +-s prepares cos(s/2) psi +- sin(s/2) phi_k, where psi is the
        sample's state and phi_k is Q applied to the state just before gate k, carried
        through gate k and every gate after it. So the encoding runs on the sample and
        one more vector per angle, each from its own gate on (half the gates on average,
        for 1 + P vectors instead of 1 + 2P); the ansatz's weights are the same for the
        whole batch, so the same holds for them. None when the circuit is not
        encoding-then-ansatz (the caller runs the rows one by one).
        """
        if self._shifted is None:
            return None
        enc_steps, block, tail = self._shifted
        b, n_enc = enc.shape
        n_w = len(weights)
        p, dim = n_enc + n_w, self.circuit.dim
        # vecs[0] is psi; vecs[1 + k] is phi_k (angle k of the row: encoding, then weights)
        # once its gate is reached; the gates run on the live ones only.
        half = enc.T * 0.5  # (n_enc, B)
        cos_e, sin_e = np.cos(half)[:, None, :, None], np.sin(half)[:, None, :, None]  # (n_enc, 1, B, 1)
        cos_w, sin_w = np.cos(weights * 0.5), np.sin(weights * 0.5)
        vecs = np.zeros((1 + p, b, dim))
        vecs[0, :, 0] = 1.0
        live = 1

        def ry(slot: int, q_mat, c, s) -> None:
            nonlocal live
            vecs[slot] = _times(vecs[0], q_mat)  # Q psi just before the gate
            live = max(live, slot + 1)
            v = vecs[:live]
            vecs[:live] = v * c + _times(v, q_mat) * s

        for kind, arg in enc_steps:
            if kind == "ry":
                col, q_mat = arg
                ry(1 + col, q_mat, cos_e[col], sin_e[col])
            else:
                vecs[:live] = vecs[:live] @ arg
        if block is not None:  # the weights are the batch's own: scalars
            vecs[:live] = vecs[:live] @ block.start
            for step, arg in block.steps:
                if step == "ry":
                    k, q_mat = arg
                    ry(1 + n_enc + k, q_mat, cos_w[k], sin_w[k])
                else:
                    vecs[:live] = vecs[:live] @ arg
        final = vecs @ tail  # (1 + p, B, dim)
        cs, ss = math.cos(shift / 2), math.sin(shift / 2)
        out = np.empty((b, 1 + 2 * p, dim))
        out[:, 0] = final[0]
        out[:, 1 : 1 + p] = (cs * final[0][None] + ss * final[1:]).transpose(1, 0, 2)
        out[:, 1 + p :] = (cs * final[0][None] - ss * final[1:]).transpose(1, 0, 2)
        return out * out

    def run_rows(self, rows: np.ndarray) -> np.ndarray:
        """Exact probabilities (R x 2**n) of R bound circuits, one row of angles each."""
        half = torch.as_tensor(rows, dtype=torch.float64).to(self.device) * 0.5
        cos, sin = torch.cos(half).unsqueeze(-1).unbind(1), torch.sin(half).unsqueeze(-1).unbind(1)
        state = torch.zeros(half.shape[0], self.circuit.dim, dtype=torch.float64, device=self.device)
        state[:, 0] = 1.0
        for kind, arg in self._rows:
            if kind == "ry":
                col, q_mat = arg
                state = torch.addcmul(state * cos[col], sin[col], _times(state, q_mat))
            else:
                state = state @ arg
        return (state * state).cpu().numpy()


def _shift_plan(program: list[tuple[str, object]], dim: int):
    """(encoding steps, the weights' block or None, the constant matrix after it) when the
    program is the encoding, then at most one trainable block, then constants; else None."""

    def trainable(step: tuple[str, object]) -> bool:
        return step[0] == "block" and any(k == "ry" for k, _ in step[1].steps)

    def constant(step: tuple[str, object]) -> np.ndarray:
        if step[0] != "block":
            return step[1]
        x = step[1].start  # a block with no trainable gate: its start times its constants
        for _, a in step[1].steps:
            x = x @ a
        return x

    blocks = [i for i, step in enumerate(program) if trainable(step)]
    last_enc = max((i for i, (kind, _) in enumerate(program) if kind == "ry"), default=-1)
    if len(blocks) > 1 or (blocks and blocks[0] < last_enc):
        return None
    cut = blocks[0] if blocks else last_enc + 1
    enc_steps = [step if step[0] == "ry" else ("const", constant(step)) for step in program[:cut]]
    tail = np.eye(dim)
    for step in program[cut + 1 if blocks else cut :]:
        tail = tail @ constant(step)
    return enc_steps, program[blocks[0]][1] if blocks else None, tail


def _on(step: tuple[str, object], device: torch.device) -> tuple[str, object]:
    """A program step (numpy) as torch tensors on ``device``."""

    def t(a: np.ndarray | _Perm) -> torch.Tensor | _Perm:
        if isinstance(a, _Perm):
            return _Perm(torch.as_tensor(a.idx, device=device), _tensor(a.sign).to(device))
        return _tensor(a).to(device)

    kind, arg = step
    if kind == "ry":
        return kind, (arg[0], t(arg[1]))
    if kind == "block":
        return kind, _Block(t(arg.start), [(k, (a[0], t(a[1])) if k == "ry" else t(a)) for k, a in arg.steps])
    return kind, t(arg)
