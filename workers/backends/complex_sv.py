"""The complex torch statevector executor: exact probabilities of a user's circuit.

:class:`ComplexStatevectorExecutor` runs a :class:`~workers.usercircuit.UserCircuit`
(any gate of :data:`~workers.usercircuit.SUPPORTED_GATES`, angles that are expressions
of ``x`` and ``w``) on a batch of samples at once, exactly: complex128 on the CPU
(``single=True`` gives complex64, for a GPU, where about 1e-7 is enough; probabilities
then agree with Qiskit to that, not to 1e-10), the 2**n outcome probabilities, qubit 0
the least significant bit of the outcome index, differentiable by autograd with
respect to ``x`` and ``w``. A circuit whose every gate is real (H, X, Z, Ry, CRy, CX, CZ,
SWAP) runs on real float64 amplitudes, half the work.

It is apart from :class:`~workers.backends.statevector.StatevectorExecutor`, which runs
the built-in real circuits and stays as fast as it is.

How a gate is applied (why it is cheap): every gate of the set is written as at most
a few terms ``psi'[j] = sum_d coef_d[j] * psi[j ^ d]``, a *term* being a coefficient
vector times a permuted state (one ``index_select`` on the flattened state, no
reshape to (B, 2, ..., 2) and no small matmuls):

* a constant gate: its own matrix (from Qiskit's gate library) split by the XOR offset
  between output and input index (one term for X, Y, Z, S, T, CX, CY, CZ, SWAP, two for
  H and SX); neighbouring constant gates are multiplied together at compile time (one
  term when all are monomial, else one dense matrix up to :data:`DENSE_DIM`);
* a rotation ``exp(-i theta/2 P)`` (rx, ry, rz, rxx, ryy, rzz), P a Pauli string, which
  is a signed, phased permutation: ``psi' = cos(theta/2) psi + sin(theta/2) (-i P psi)``;
  a controlled rotation (crx, cry, crz) is the same on the control's 1-half only;
* a phase gate p, cp: a diagonal, ``psi' = psi * (1 + m (e^{i theta} - 1))``, m the mask
  of the indices it phases; ``u(theta, phi, lam) = p(phi) ry(theta) p(lam)`` exactly.

A maximal run of gates that do not depend on the sample (the trainable ansatz, usually)
is built into one 2**n x 2**n matrix from the weights on every call, differentiably,
and applied to the whole batch as one matmul when that is cheaper (:func:`_fuse_pays`);
gates before the first data-dependent one run on a single state, broadcast afterwards.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from qiskit.circuit.library import get_standard_gate_name_mapping

from workers.usercircuit import SUPPORTED_GATES, UserCircuit

#: Constant runs up to this dimension (6 qubits) are one dense matrix when not monomial.
DENSE_DIM = 64

_PAULI = {
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, -1j], [1j, 0]]),
    "z": np.array([[1, 0], [0, -1]], dtype=complex),
}
#: Rotation gates: the Pauli string of the generator (one letter per qubit, in the gate's
#: qubit order) and whether the first qubit is a control.
_ROTATIONS = {
    "rx": ("x", False), "ry": ("y", False), "rz": ("z", False),
    "rxx": ("xx", False), "ryy": ("yy", False), "rzz": ("zz", False),
    "crx": ("x", True), "cry": ("y", True), "crz": ("z", True),
}  # fmt: skip


def _bits(dim: int, qubits: tuple[int, ...]) -> np.ndarray:
    """The local index (qubits[0] least significant, Qiskit's gate-matrix order) of every basis index."""
    j = np.arange(dim)
    return sum(((j >> q) & 1) << i for i, q in enumerate(qubits))


def _terms(mat: np.ndarray, qubits: tuple[int, ...], dim: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``mat`` on ``qubits`` as terms (coef, perm): psi'[j] = sum coef[j] psi[perm[j]] (perm None: j)."""
    local, j, out = _bits(dim, qubits), np.arange(dim), []
    for d in range(len(mat)):
        coef = mat[local, local ^ d]
        if np.any(coef):
            spread = sum(((d >> i) & 1) << q for i, q in enumerate(qubits))
            out.append((coef.astype(complex), None if d == 0 else j ^ spread))
    return out


def _apply_terms_np(state: np.ndarray, terms) -> np.ndarray:
    return sum(coef * (state if perm is None else state[..., perm]) for coef, perm in terms)


@dataclass
class _Const:
    """Sample-independent gates: ``terms`` (one or a few) or ``dense`` (psi' = psi @ dense)."""

    terms: list | None = None
    dense: np.ndarray | torch.Tensor | None = None


@dataclass
class _Rot:
    """psi' = c psi + s (ph * psi[perm]), c and s the cosine and sine of half the slot's angle;
    controlled: c replaced by keep + mask * c (``ph`` is already zero off the control)."""

    slot: int
    perm: np.ndarray | torch.Tensor | None
    ph: np.ndarray | torch.Tensor
    mask: np.ndarray | torch.Tensor | None = None
    keep: np.ndarray | torch.Tensor | None = None


@dataclass
class _Phase:
    """psi' = psi * (keep + mask * e^{i angle})."""

    slot: int
    mask: np.ndarray | torch.Tensor
    keep: np.ndarray | torch.Tensor


def _gate_items(name: str, qubits: tuple[int, ...], slots: tuple[int, ...], dim: int, matrices: dict) -> list:
    """One gate of the description as executor items (u as three)."""
    if name in _ROTATIONS:
        paulis, controlled = _ROTATIONS[name]
        targets = qubits[1:] if controlled else qubits
        mat = np.array([[1.0 + 0j]])
        for letter in paulis:  # the first target is the least significant: it goes on the right
            mat = np.kron(_PAULI[letter], mat)
        ((coef, perm),) = _terms(mat, targets, dim)
        ph = -1j * coef
        if not controlled:
            return [_Rot(slots[0], perm, ph)]
        m = ((np.arange(dim) >> qubits[0]) & 1).astype(float)
        return [_Rot(slots[0], perm, ph * m, m, 1.0 - m)]
    if name in ("p", "cp"):
        m = np.prod([(np.arange(dim) >> q) & 1 for q in qubits], axis=0).astype(float)
        return [_Phase(slots[0], m, 1.0 - m)]
    if name == "u":
        theta, phi, lam = slots
        return [
            *_gate_items("p", qubits, (lam,), dim, matrices),
            *_gate_items("ry", qubits, (theta,), dim, matrices),
            *_gate_items("p", qubits, (phi,), dim, matrices),
        ]
    if SUPPORTED_GATES.get(name, (0, 1))[1] == 0:
        return [_Const(terms=_terms(matrices[name], qubits, dim))]
    raise ValueError(f"complex statevector: no rule for gate {name!r}")


def _merge_consts(items: list, dim: int) -> list:
    """Neighbouring constants as one: a monomial when every one is, else dense up to DENSE_DIM."""
    out: list = []
    run: list[_Const] = []

    def flush() -> None:
        if not run:
            return
        if all(len(c.terms) == 1 for c in run):
            coef, perm = np.ones(dim, dtype=complex), np.arange(dim)
            for c in run:  # psi''[j] = c2[j] psi'[p2[j]] = c2[j] c1[p2[j]] psi[p1[p2[j]]]
                ((c2, p2),) = c.terms
                p2 = np.arange(dim) if p2 is None else p2
                coef, perm = c2 * coef[p2], perm[p2]
            out.append(_Const(terms=[(coef, None if (perm == np.arange(dim)).all() else perm)]))
        elif dim <= DENSE_DIM:
            dense = np.eye(dim, dtype=complex)
            for c in run:
                dense = _apply_terms_np(dense, c.terms)
            out.append(_Const(dense=dense))
        else:
            out.extend(run)
        run.clear()

    for item in items:
        if isinstance(item, _Const):
            run.append(item)
        else:
            flush()
            out.append(item)
    flush()
    return out


def _is_real(items: list) -> bool:
    def real(a) -> bool:
        return a is None or not np.iscomplexobj(a) or not np.any(np.imag(a))

    for item in items:
        if isinstance(item, _Phase):
            return False
        if isinstance(item, _Rot) and not real(item.ph):
            return False
        if isinstance(item, _Const) and not (real(item.dense) and all(real(c) for c, _ in item.terms or [])):
            return False
    return True


def _fuse_pays(rows: int, dim: int, n_items: int) -> bool:
    """Whether a run of ``n_items`` sample-independent gates is cheaper built into one matrix.

    Applying them to the batch costs about rows * dim * n_items element operations (and
    n_items * 5 torch calls); building the matrix costs dim * dim * n_items, and applying
    it one rows x dim x dim matmul, which BLAS does several times faster per element.
    """
    return rows >= dim and n_items > 1 and rows * dim * n_items >= dim * dim * n_items + rows * dim * dim // 4


def _data_first(gates, data_slots: set[int]) -> list:
    """The gates reordered so that sample-dependent ones run as early as they can.

    Gates on disjoint qubits commute, so any order that keeps each qubit's gates in
    their order is the same circuit. Transpiling interleaves an encoding layer with the
    ansatz's first gates qubit by qubit; taking every ready data gate before any ready
    weight gate leaves the weight gates in long runs, which :func:`_fuse_pays` builds
    into one matrix for the batch.
    """
    succ: list[list[int]] = [[] for _ in gates]
    waiting = [0] * len(gates)  # predecessors not yet placed
    last: dict[int, int] = {}
    for i, g in enumerate(gates):
        for p in {last[q] for q in g.qubits if q in last}:
            succ[p].append(i)
            waiting[i] += 1
        last.update({q: i for q in g.qubits})
    is_data = [bool(data_slots & set(g.slots)) for g in gates]
    ready: tuple[list[int], list[int]] = ([], [])  # (weight gates, data gates), heaps of indices
    for i, n in enumerate(waiting):
        if n == 0:
            heapq.heappush(ready[is_data[i]], i)
    order: list = []
    while ready[0] or ready[1]:
        i = heapq.heappop(ready[1] if ready[1] else ready[0])
        order.append(gates[i])
        for j in succ[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready[is_data[j]], j)
    return order


class ComplexStatevectorExecutor:
    """Exact, batched torch simulation of a :class:`UserCircuit`; ``device`` cpu or cuda."""

    name = "complex-statevector"

    def __init__(self, circuit: UserCircuit, device: str = "cpu", single: bool = False):
        self.circuit = circuit
        self.device = torch.device(device)
        dim = circuit.dim
        gates = get_standard_gate_name_mapping()
        matrices = {g: np.asarray(gates[g].to_matrix()) for g, (_, k) in SUPPORTED_GATES.items() if k == 0}
        items: list = []
        for g in _data_first(circuit.gates, set(circuit.angles.data_slots.tolist())):
            items += _gate_items(g.name, g.qubits, g.slots, dim, matrices)
        items = _merge_consts(items, dim)
        #: Real amplitudes suffice (every gate real): float64 instead of complex128.
        self.real = _is_real(items)
        self.rdtype = torch.float32 if single else torch.float64
        self.dtype = self.rdtype if self.real else (torch.complex64 if single else torch.complex128)
        self._phase = any(isinstance(i, _Phase) for i in items)
        self._items = [self._on_device(i) for i in items]
        data = set(circuit.angles.data_slots.tolist())
        # Segments for probabilities(): ("run", [items]) of sample-independent items, or ("data", item).
        self._segments: list[tuple[str, object]] = []
        for item in self._items:
            if isinstance(item, _Const) or item.slot not in data:
                if not self._segments or self._segments[-1][0] != "run":
                    self._segments.append(("run", []))
                self._segments[-1][1].append(item)
            else:
                self._segments.append(("data", item))
        self._data_slots = torch.as_tensor(circuit.angles.data_slots, device=self.device)
        self._shared_slots = torch.as_tensor(circuit.angles.shared_slots, device=self.device)

    def _on_device(self, item):
        def t(a, dtype=None):
            if a is None:
                return None
            if isinstance(a, np.ndarray) and a.dtype.kind == "i":
                return torch.as_tensor(a, device=self.device)
            a = np.real(a) if self.real else a
            return torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)

        if isinstance(item, _Const):
            terms = [(t(c), t(p)) for c, p in item.terms] if item.terms is not None else None
            return _Const(terms, t(item.dense))
        if isinstance(item, _Rot):
            return _Rot(item.slot, t(item.perm), t(item.ph), t(item.mask), t(item.keep))
        return _Phase(item.slot, t(item.mask), t(item.keep))

    # ------------------------------------------------------------------ applying
    @staticmethod
    def _apply(state: torch.Tensor, item, coef: dict) -> torch.Tensor:
        if isinstance(item, _Const):
            if item.dense is not None:
                return state @ item.dense
            out = None
            for c, perm in item.terms:
                term = (state if perm is None else torch.index_select(state, -1, perm)) * c
                out = term if out is None else out + term
            return out
        if isinstance(item, _Rot):
            c, s = coef[item.slot][:2]
            moved = state if item.perm is None else torch.index_select(state, -1, item.perm)
            cos = c if item.mask is None else item.keep + item.mask * c
            return torch.addcmul(state * cos, moved, item.ph * s)
        e = coef[item.slot][2]
        return state * (item.keep + item.mask * e)

    def _coefficients(self, angles: torch.Tensor, slots: np.ndarray | list[int], column: bool) -> dict:
        """slot -> (cos(a/2), sin(a/2), e^{ia} or None); each (rows, 1) when ``column``, else a scalar."""
        if angles.numel() == 0:
            return {}
        half = angles * 0.5
        # In the amplitudes' dtype from the start: one conversion here, not one per gate
        # (a real factor times a complex state costs a copy forward and backward).
        c, s = torch.cos(half).to(self.dtype), torch.sin(half).to(self.dtype)
        e = torch.complex(torch.cos(angles), torch.sin(angles)).to(self.dtype) if self._phase else None
        if column:
            c, s = c.unsqueeze(-1), s.unsqueeze(-1)
            e = e.unsqueeze(-1) if e is not None else None
        cs, ss = c.unbind(1 if column else 0), s.unbind(1 if column else 0)
        es = e.unbind(1 if column else 0) if e is not None else [None] * len(cs)
        return {int(k): (cs[i], ss[i], es[i]) for i, k in enumerate(slots)}

    def _initial(self, rows: int = 1) -> torch.Tensor:
        state = torch.zeros(rows, self.circuit.dim, dtype=self.dtype, device=self.device)
        state[:, 0] = 1
        return state

    def _probs(self, state: torch.Tensor) -> torch.Tensor:
        if self.real:
            return state * state
        r = torch.view_as_real(state)
        return (r * r).sum(-1)

    # ------------------------------------------------------------------ entry points
    def probabilities(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities (B x 2**n) of B samples ``x`` (B x n_x) sharing the weights ``w``
        (n_w); differentiable by autograd with respect to both. On the executor's device;
        float64 (float32 when ``single``)."""
        x = torch.as_tensor(x, device=self.device).to(self.rdtype)
        w = torch.zeros(0) if w is None else torch.as_tensor(w)
        w = w.to(self.device, self.rdtype)
        if x.ndim != 2 or x.shape[1] != self.circuit.n_x or w.shape != (self.circuit.n_weights,):
            raise ValueError(
                f"{self.circuit.name}: x is (B, {self.circuit.n_x}) and w ({self.circuit.n_weights},);"
                f" got {tuple(x.shape)} and {tuple(w.shape)}"
            )
        if len(x) == 0:
            return torch.zeros(0, self.circuit.dim, dtype=self.rdtype, device=self.device)
        angles = self.circuit.angles.torch(x, w)  # (B, slots)
        coef = self._coefficients(angles.index_select(1, self._data_slots), self.circuit.angles.data_slots, True)
        shared = angles[0].index_select(0, self._shared_slots)
        coef.update(self._coefficients(shared, self.circuit.angles.shared_slots, False))
        dim = self.circuit.dim
        state = self._initial()
        for kind, arg in self._segments:
            if kind == "data":
                state = self._apply(state, arg, coef)
            elif _fuse_pays(state.shape[0], dim, len(arg)):
                mat = torch.eye(dim, dtype=self.dtype, device=self.device)
                for item in arg:
                    mat = self._apply(mat, item, coef)
                state = state @ mat
            else:
                for item in arg:
                    state = self._apply(state, item, coef)
        return self._probs(state).expand(len(x), dim)

    def run_angles(self, angles: np.ndarray | torch.Tensor) -> np.ndarray:
        """Exact probabilities (R x 2**n) of R circuits, one row of slot angles each (as
        :meth:`~workers.usercircuit.AngleMap.numpy` gives): what the parameter-shift rule
        runs (:mod:`workers.backends.shift`), every row its own angles. No gradient."""
        with torch.no_grad():
            a = torch.as_tensor(np.asarray(angles), dtype=self.rdtype, device=self.device)
            if a.ndim != 2 or a.shape[1] != self.circuit.n_slots:
                raise ValueError(
                    f"{self.circuit.name}: angle rows are (R, {self.circuit.n_slots}); got {tuple(a.shape)}"
                )
            coef = self._coefficients(a, range(a.shape[1]), True)
            state = self._initial()
            for item in self._items:
                state = self._apply(state, item, coef)
            return self._probs(state).expand(len(a), -1).cpu().double().numpy()

    def run_samples(self, x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Exact probabilities (B x 2**n) of B samples sharing ``w``, float64 numpy, no gradient."""
        w = None if w is None else torch.as_tensor(np.asarray(w))
        with torch.no_grad():
            return self.probabilities(torch.as_tensor(np.asarray(x)), w).cpu().double().numpy()
