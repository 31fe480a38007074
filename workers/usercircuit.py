"""A researcher's own Qiskit circuit, compiled once into this project's circuit description.

The contract (issue 21): a callable takes ``n_qubits`` and returns a
``qiskit.QuantumCircuit`` whose parameters are elements of two ``ParameterVector``s,
``x`` (the data, one value per element) and ``w`` (the trainable weights). Gate angles
may be expressions of them (``2*x[0]``, ``x[0]*x[1]``, ``(pi - x[0])*(pi - x[1])`` as in
``zz_feature_map``). A circuit with ``x`` parameters and no ``w`` ones is accepted and has
zero weights, because a ``ParameterVector`` of length 0 cannot appear in a circuit: that
is how a data-only circuit (the released notebooks' H + Ry(x[k])) is written.

:func:`compile_circuit` runs once per trial, not per sample: it transpiles the circuit
to :data:`SUPPORTED_GATES` (``optimization_level=0``, so the gates stay the user's
gates, only decomposed), drops barriers and final measurements (the student measures
every qubit in the computational basis, qubit 0 the least significant bit of the
outcome index, as in Qiskit), and turns every gate angle into a *slot*: an angle
expression over ``x`` and ``w``, compiled once (:class:`AngleMap`) into a function of
batched torch tensors (differentiable, for autograd) and of numpy arrays (with its
exact derivatives, for the parameter-shift chain rule). The result,
:class:`UserCircuit`, is plain data (gate names, qubits, slot indices, expressions);
the executors (:mod:`workers.backends.complex_sv`) and the gradient
(:mod:`workers.backends.shift`) need nothing else, and the Qiskit side
(:meth:`UserCircuit.bound`, :meth:`UserCircuit.aer_circuit`, :meth:`UserCircuit.slot_circuit`)
keeps the circuit as the user wrote it for Aer.

A circuit that cannot be run this way is a :class:`CircuitError` (a ``ValueError``, and a
:class:`~workers.errors.ConfigError` for the field ``circuit``) with one line naming
what is wrong: a gate left outside the set, ``reset``, a gate after a measurement,
classical control, a missing ``x`` vector, a parameter outside ``x`` and ``w``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import sympy
import torch
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.transpiler.exceptions import TranspilerError

from workers import refs
from workers.errors import ConfigError

#: Gates a user circuit is reduced to, by name: (number of qubits, number of angles).
#: ``u`` is ``p(phi) ry(theta) p(lam)`` exactly (three slots); every other angle is one slot.
SUPPORTED_GATES: dict[str, tuple[int, int]] = {
    **{g: (1, 0) for g in ("h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg")},
    **{g: (1, 1) for g in ("rx", "ry", "rz", "p")},
    "u": (1, 3),
    **{g: (2, 0) for g in ("cx", "cy", "cz", "swap")},
    **{g: (2, 1) for g in ("crx", "cry", "crz", "cp", "rxx", "ryy", "rzz")},
}

#: Instructions that change no outcome probability and are dropped.
_DROPPED = ("barrier", "id", "delay")

#: Names of the two parameter vectors.
X, W = "x", "w"


class CircuitError(ConfigError):
    """A user circuit this project cannot run; the one-line message says what and where."""

    def __init__(self, message: str):
        super().__init__("circuit", message)


# ---------------------------------------------------------------------- angle expressions

#: The functions an angle expression may use, by sympy's name, for torch and for numpy.
_FUNCS = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "exp", "log", "sqrt", "abs")
_TORCH = SimpleNamespace(**{f: getattr(torch, f) for f in _FUNCS}, atan2=torch.atan2)
_NUMPY = SimpleNamespace(
    **{f: getattr(np, {"asin": "arcsin", "acos": "arccos", "atan": "arctan"}.get(f, f)) for f in _FUNCS},
    atan2=np.arctan2,
)


def _source(expr: sympy.Expr, columns: dict[str, tuple[str, int]]) -> str:
    """Python source of ``expr`` over ``X`` (rows x n_x) and ``W`` (n_w), functions from ``F``.

    Written here rather than with ``sympy.lambdify`` so that one printer serves torch
    and numpy alike and the parameter names (``x[0]``, not identifiers) need no dummies.
    """
    if expr.is_Symbol:
        kind, k = columns[expr.name]
        return f"X[:, {k}]" if kind == X else f"W[{k}]"
    if expr.is_Number or expr.is_NumberSymbol:
        value = complex(expr)
        if value.imag:
            raise CircuitError(f"angle expression {expr} is complex; angles must be real")
        return repr(value.real)
    args = [_source(a, columns) for a in expr.args]
    if expr.is_Add:
        return "(" + " + ".join(args) + ")"
    if expr.is_Mul:
        return "(" + " * ".join(args) + ")"
    if expr.is_Pow:
        if expr.exp == sympy.Rational(1, 2):
            return f"F.sqrt({args[0]})"
        return f"({args[0]} ** {args[1]})"
    name = {"Abs": "abs"}.get(type(expr).__name__, type(expr).__name__)
    if name in _FUNCS or name == "atan2":
        return f"F.{name}(" + ", ".join(args) + ")"
    raise CircuitError(f"angle expression {expr}: {type(expr).__name__} is not supported")


def _compile(exprs: list[sympy.Expr], columns: dict[str, tuple[str, int]]) -> Callable:
    """One function ``(X, W, F) -> tuple`` evaluating every expression of ``exprs``."""
    body = ", ".join(_source(e, columns) for e in exprs)
    return eval(f"lambda X, W, F: ({body},)", {})  # noqa: S307 - our own printer's output, no user text


@dataclass(eq=False)
class AngleMap:
    """Every slot's angle as a function of ``x`` (B x n_x) and ``w`` (n_w), compiled once.

    Affine slots (most: ``x[k]``, ``w[k]``, ``2*x[0]``, a constant) are one matrix product
    for all of them; the others are one generated function, for torch and for numpy. The
    numpy side also has the exact derivative of every slot, which is what the
    parameter-shift rule's chain rule multiplies with.
    """

    exprs: tuple[sympy.Expr, ...]
    n_x: int
    n_w: int
    columns: dict[str, tuple[str, int]] = field(repr=False)

    def __post_init__(self) -> None:
        s = len(self.exprs)
        self.ax, self.aw, self.b = np.zeros((s, self.n_x)), np.zeros((s, self.n_w)), np.zeros(s)
        self.nonlinear: list[int] = []
        derivs: list[tuple[int, str, int, sympy.Expr]] = []  # (slot, kind, column, d angle / d column)
        for i, e in enumerate(self.exprs):
            grads = {sym: sympy.diff(e, sym) for sym in e.free_symbols}
            if all(g.is_number for g in grads.values()):
                for sym, g in grads.items():
                    kind, k = self.columns[sym.name]
                    (self.ax if kind == X else self.aw)[i, k] = float(g)
                self.b[i] = float(e.subs({sym: 0 for sym in e.free_symbols}))
            else:
                self.nonlinear.append(i)
                derivs += [(i, *self.columns[sym.name], g) for sym, g in grads.items()]
        linear = [i for i in range(s) if i not in set(self.nonlinear)]
        self._order = torch.as_tensor(np.argsort(np.array(linear + self.nonlinear, dtype=np.int64)))
        self._linear = torch.as_tensor(np.array(linear, dtype=np.int64))
        self._fn = _compile([self.exprs[i] for i in self.nonlinear], self.columns) if self.nonlinear else None
        self._derivs = derivs
        self._dfn = _compile([d[3] for d in derivs], self.columns) if derivs else None
        self.data_slots = np.array([i for i, e in enumerate(self.exprs) if self._uses_x(e)], dtype=np.int64)
        self.shared_slots = np.array([i for i in range(s) if i not in set(self.data_slots)], dtype=np.int64)

    def _uses_x(self, e: sympy.Expr) -> bool:
        return any(self.columns[sym.name][0] == X for sym in e.free_symbols)

    def __len__(self) -> int:
        return len(self.exprs)

    def torch(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Angles (B x slots) of B samples sharing ``w``; differentiable in ``x`` and ``w``."""
        ax = torch.as_tensor(self.ax, dtype=x.dtype, device=x.device)[self._linear]
        aw = torch.as_tensor(self.aw, dtype=x.dtype, device=x.device)[self._linear]
        b = torch.as_tensor(self.b, dtype=x.dtype, device=x.device)[self._linear]
        lin = x @ ax.T + (aw @ w.to(x.dtype) + b)
        if self._fn is None:
            return lin
        cols = [torch.broadcast_to(v, x.shape[:1]) for v in self._fn(x, w.to(x.dtype), _TORCH)]
        full = torch.cat([lin, torch.stack(cols, dim=1)], dim=1)
        return full.index_select(1, self._order.to(x.device))

    def numpy(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Angles (B x slots), float64."""
        x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
        out = x @ self.ax.T + (self.aw @ w + self.b)
        if self._fn is not None:
            for i, v in zip(self.nonlinear, self._fn(x, w, _NUMPY), strict=True):
                out[:, i] = v
        return out

    def jacobian(self, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d angle / d x (B x slots x n_x) and d angle / d w (B x slots x n_w), exact, float64."""
        x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
        b = len(x)
        jx = np.broadcast_to(self.ax, (b, *self.ax.shape)).copy()
        jw = np.broadcast_to(self.aw, (b, *self.aw.shape)).copy()
        if self._dfn is not None:
            for (i, kind, k, _), v in zip(self._derivs, self._dfn(x, w, _NUMPY), strict=True):
                (jx if kind == X else jw)[:, i, k] = v
        return jx, jw


# ---------------------------------------------------------------------- the description


@dataclass(frozen=True)
class UGate:
    """One gate of a user circuit: its name, its qubits (control first), its angle slots."""

    name: str
    qubits: tuple[int, ...]
    slots: tuple[int, ...] = ()  # indices into UserCircuit.angles; u: (theta, phi, lam)


@dataclass(frozen=True, eq=False)
class UserCircuit:
    """A user's circuit as this project's description: gates over angle slots, compiled once.

    ``source`` is the circuit as the user wrote it (parameters unbound); ``x_params`` and
    ``w_params`` are its ``ParameterVector``s (``w_params`` empty when it has no weights).
    """

    n_qubits: int
    gates: tuple[UGate, ...]
    angles: AngleMap
    source: Any  # qiskit.QuantumCircuit
    x_params: tuple[Any, ...]
    w_params: tuple[Any, ...] = ()
    name: str = "circuit"

    @property
    def dim(self) -> int:
        return 2**self.n_qubits

    @property
    def n_x(self) -> int:
        return len(self.x_params)

    @property
    def n_weights(self) -> int:
        return len(self.w_params)

    @property
    def n_slots(self) -> int:
        return len(self.angles)

    def describe(self) -> list[str]:
        """The gate list as text, one gate a line (``ry q1 (2*x[0])``), for logs and reviews."""
        out = []
        for g in self.gates:
            angles = ", ".join(str(self.angles.exprs[s]) for s in g.slots)
            out.append(f"{g.name} q{','.join(map(str, g.qubits))}" + (f" ({angles})" if angles else ""))
        return out

    # ------------------------------------------------------------------ the Qiskit side
    def _binding(self, x: np.ndarray, w: np.ndarray) -> dict:
        present = set(self.source.parameters)
        values = dict(zip(self.x_params, np.asarray(x, dtype=np.float64).tolist(), strict=True))
        values.update(zip(self.w_params, np.asarray(w, dtype=np.float64).tolist(), strict=True))
        return {p: v for p, v in values.items() if p in present}

    def bound(self, x: np.ndarray, w: np.ndarray | None = None, measure: bool = False):
        """The circuit as the user wrote it with one sample's ``x`` and the weights ``w`` bound
        (without final measurements; ``measure``: every qubit measured, as the student reads it)."""
        qc = self.aer_circuit() if measure else self.unmeasured()
        return qc.assign_parameters(self._binding(x, np.zeros(0) if w is None else w))

    def unmeasured(self):
        """The user's circuit with its final measurements removed (for ``Statevector``)."""
        qc = self.source.copy()
        qc.remove_final_measurements(inplace=True)
        return qc

    def aer_circuit(self):
        """The user's circuit as written, parameters unbound, every qubit measured once at the
        end: what an Aer executor transpiles once and binds at run time (:meth:`aer_binds`)."""
        qc = self.unmeasured()
        qc.measure_all()
        return qc

    def aer_binds(self, x: np.ndarray, w: np.ndarray) -> dict:
        """``parameter_binds`` for :meth:`aer_circuit`: each parameter it has, its B values
        (``x`` is B x n_x; ``w`` is n_w, shared, or B x n_w, one row per circuit)."""
        x = np.asarray(x, dtype=np.float64)
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), (len(x), self.n_weights))
        present = set(self.source.parameters)
        binds = {p: x[:, k] for k, p in enumerate(self.x_params) if p in present}
        binds.update({p: w[:, k] for k, p in enumerate(self.w_params) if p in present})
        return binds

    def slot_circuit(self):
        """The description as a Qiskit circuit with one parameter per slot (``s[k]``), in
        slot order: any Qiskit executor binds rows of slot angles (:meth:`AngleMap.numpy`,
        and the parameter-shift rule's shifted rows) to it."""

        s = ParameterVector("s", self.n_slots)
        qc = QuantumCircuit(self.n_qubits)
        for g in self.gates:
            getattr(qc, g.name)(*[s[k] for k in g.slots], *g.qubits)
        return qc


# ---------------------------------------------------------------------- compiling


def _vector_of(p) -> tuple[str, int, int] | None:
    """(vector name, its length, the element's index) of a ParameterVector element, else None."""
    vector = getattr(p, "vector", None)
    if vector is None:
        return None
    return vector.name, len(vector), p.index


def _check_parameters(qc) -> tuple[tuple, tuple]:
    """The ``x`` and ``w`` ParameterVectors' elements, all of them in index order."""
    vectors: dict[str, Any] = {}
    for p in qc.parameters:
        v = _vector_of(p)
        if v is None or v[0] not in (X, W):
            raise CircuitError(
                f"parameter {p.name!r} is not an element of a ParameterVector named 'x' (data) or 'w' (weights)"
            )
        vectors.setdefault(v[0], p.vector)
    if X not in vectors:
        raise CircuitError("the circuit has no parameter of a ParameterVector named 'x' (the data)")
    elements = {name: tuple(vec[k] for k in range(len(vec))) for name, vec in vectors.items()}
    return elements[X], elements.get(W, ())


def _transpiled(qc):
    """``qc`` reduced to :data:`SUPPORTED_GATES` (optimization level 0), errors named."""

    allowed = set(SUPPORTED_GATES) | set(_DROPPED) | {"measure"}
    for inst in qc.data:  # an opaque gate: say which, before the transpiler says it less plainly
        op = inst.operation
        if op.name not in allowed and getattr(op, "definition", None) is None and op.name != "reset":
            if getattr(op, "blocks", None):
                raise CircuitError(f"instruction {op.name!r}: classical control flow is not supported")
            raise CircuitError(f"gate {op.name!r} has no definition in terms of the supported gates")
    try:
        return transpile(qc, basis_gates=sorted(SUPPORTED_GATES), optimization_level=0)
    except TranspilerError as e:
        raise CircuitError(f"cannot reduce the circuit to the supported gates: {str(e).splitlines()[0]}") from e


def compile_circuit(qc, n_qubits: int | None = None, name: str = "circuit") -> UserCircuit:
    """``qc`` (a ``qiskit.QuantumCircuit`` over ``x`` and ``w`` vectors) as a :class:`UserCircuit`."""

    if not isinstance(qc, QuantumCircuit):
        raise CircuitError(f"{name} returned {type(qc).__name__}, not a qiskit.QuantumCircuit")
    if n_qubits is not None and qc.num_qubits != n_qubits:
        raise CircuitError(f"{name} returned a circuit on {qc.num_qubits} qubits, asked for {n_qubits}")
    x_params, w_params = _check_parameters(qc)
    columns = {p.name: (X, k) for k, p in enumerate(x_params)}
    columns.update({p.name: (W, k) for k, p in enumerate(w_params)})

    tq = _transpiled(qc)
    gates: list[UGate] = []
    exprs: list[sympy.Expr] = []
    measured: set[int] = set()
    for inst in tq.data:
        op = inst.operation
        qubits = tuple(tq.find_bit(q).index for q in inst.qubits)
        if op.name in _DROPPED:
            continue
        if op.name == "measure":
            measured.update(qubits)
            continue
        if op.name not in SUPPORTED_GATES:
            if op.name == "reset":
                raise CircuitError(
                    "instruction 'reset' is not supported (from reset or initialize): "
                    "the student starts in |0...0> and measures only at the end"
                )
            raise CircuitError(f"gate {op.name!r} is not supported; supported: {', '.join(SUPPORTED_GATES)}")
        if measured & set(qubits):
            raise CircuitError(f"gate {op.name!r} after a measurement of its qubit: only final measurements")
        if getattr(op, "condition", None) is not None:
            raise CircuitError(f"gate {op.name!r} is classically controlled; that is not supported")
        slots = []
        for value in op.params:
            slots.append(len(exprs))
            exprs.append(_sympy(value))
        gates.append(UGate(op.name, qubits, tuple(slots)))
    angles = AngleMap(tuple(exprs), len(x_params), len(w_params), columns)
    return UserCircuit(qc.num_qubits, tuple(gates), angles, qc, x_params, w_params, name)


def _sympy(value) -> sympy.Expr:
    """A gate parameter (a number or a ParameterExpression) as a real sympy expression."""
    if hasattr(value, "sympify"):
        return sympy.sympify(value.sympify())
    number = complex(value)
    if number.imag:
        raise CircuitError(f"gate angle {value} is complex; angles must be real")
    return sympy.Float(number.real)


def resolve(ref: str | Callable) -> Callable:
    """A ``PKG.MODULE:CALLABLE`` reference (or a callable, returned as it is): :func:`workers.refs.resolve`,
    its one-line errors as :class:`CircuitError`."""
    try:
        return refs.resolve(ref)
    except refs.RefError as e:
        raise CircuitError(str(e)) from None


def load_user_circuit(ref: str | Callable, n_qubits: int) -> UserCircuit:
    """Call the user's ``ref(n_qubits)`` once and compile what it returns."""
    fn = resolve(ref)
    name = ref if isinstance(ref, str) else getattr(fn, "__qualname__", repr(fn))
    qc = fn(n_qubits)
    return compile_circuit(qc, n_qubits, name=str(name))


__all__ = [
    "SUPPORTED_GATES",
    "AngleMap",
    "CircuitError",
    "UGate",
    "UserCircuit",
    "compile_circuit",
    "load_user_circuit",
    "resolve",
]
