"""Parameter-shift gradients of a user circuit, for any executor that runs rows of slot angles.

A :class:`~workers.usercircuit.UserCircuit`'s angles are *slots*, each an expression of
``x`` and ``w``. The derivative of the outcome probabilities with respect to a slot
comes from the same circuit run with that slot shifted (exact probabilities in,
exact derivative out), and the chain rule through the expressions gives d/dx and d/dw:

    d p / d x_i = sum over slots k of (d p / d angle_k) * (d angle_k / d x_i)

with d angle_k / d x_i from :meth:`~workers.usercircuit.AngleMap.jacobian` (exact,
per sample, since an expression such as ``x[0]*x[1]`` has a derivative that depends
on the sample).

The rule for a slot depends on its gate's generator G (gate = exp(-i angle G)):

* two distinct eigenvalues of G, a distance 1 apart, for rx, ry, rz, rxx, ryy, rzz
  (G = P/2, eigenvalues +-1/2), p and u's phi and lam (p(a) = e^{ia/2} rz(a): the extra
  factor is a global phase when p is not controlled, so the probabilities are those of
  rz), u's theta (an ry), and cp: its G = |11><11| has eigenvalues 0 and 1 only, so the
  probabilities are a + b cos(a) + c sin(a) and two terms are exact (the four-term rule
  is exact too, at twice the circuits). :data:`TWO_TERM`: shifts +-pi/2, scale 1/2;
* three eigenvalues (0 and +-1/2) for the controlled rotations crx, cry, crz: the
  probabilities hold frequencies 1/2 and 1, and :data:`FOUR_TERM` (shifts +-pi/2 and
  +-3pi/2, coefficients (sqrt2 +- 1) / (4 sqrt2)) is exact for both.

The executor is any ``run_angles(rows) -> probabilities`` (R x slots in, R x 2**n out):
:meth:`~workers.backends.complex_sv.ComplexStatevectorExecutor.run_angles`, or an Aer
run of :meth:`~workers.usercircuit.UserCircuit.slot_circuit` with the rows bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from workers.usercircuit import UserCircuit

_D1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_D2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
#: (shifts, coefficients): d p / d angle = sum coef_i p(angle + shift_i).
TWO_TERM = ((math.pi / 2, -math.pi / 2), (0.5, -0.5))
FOUR_TERM = ((math.pi / 2, -math.pi / 2, 3 * math.pi / 2, -3 * math.pi / 2), (_D1, -_D1, -_D2, _D2))
#: The gates whose angle takes the four-term rule; every other angle takes the two-term one.
FOUR_TERM_GATES = ("crx", "cry", "crz")


def slot_rules(circuit: UserCircuit) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The shift rule of every slot, in slot order."""
    rules: list = [None] * circuit.n_slots
    for g in circuit.gates:
        for k in g.slots:
            rules[k] = FOUR_TERM if g.name in FOUR_TERM_GATES else TWO_TERM
    return rules


def shift_plan(circuit: UserCircuit) -> tuple[np.ndarray, np.ndarray]:
    """The shifted circuits of one sample: ``offsets`` (T x slots, each row one slot's shift)
    and ``coefs`` (slots x T), so that d p / d angles = coefs @ p(angles + offsets)."""
    rules = slot_rules(circuit)
    t = sum(len(r[0]) for r in rules)
    offsets, coefs = np.zeros((t, len(rules))), np.zeros((len(rules), t))
    row = 0
    for k, (shifts, cs) in enumerate(rules):
        for s, c in zip(shifts, cs, strict=True):
            offsets[row, k], coefs[k, row] = s, c
            row += 1
    return offsets, coefs


def slot_jacobian(circuit: UserCircuit, run_angles: Callable, angles: np.ndarray) -> np.ndarray:
    """d p / d angle (B x slots x 2**n) by the parameter shift, every shifted circuit of the
    batch in one ``run_angles`` call (B * T rows)."""
    offsets, coefs = shift_plan(circuit)
    b, s = angles.shape
    rows = (angles[:, None, :] + offsets[None]).reshape(-1, s)
    probs = np.asarray(run_angles(rows)).reshape(b, len(offsets), -1)
    return np.einsum("st,btd->bsd", coefs, probs)


def parameter_shift_jacobian(
    circuit: UserCircuit, run_angles: Callable, x: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """d p / d x (B x n_x x 2**n) and d p / d w (B x n_w x 2**n, each sample's own) by the
    parameter shift on ``run_angles`` and the chain rule through the angle expressions."""
    x = np.asarray(x, dtype=np.float64)
    w = np.zeros(0) if w is None else np.asarray(w, dtype=np.float64)
    angles = circuit.angles.numpy(x, w)
    d_slot = slot_jacobian(circuit, run_angles, angles)
    jx, jw = circuit.angles.jacobian(x, w)
    return np.einsum("bsd,bsi->bid", d_slot, jx), np.einsum("bsd,bsj->bjd", d_slot, jw)


class _Shift(torch.autograd.Function):
    """Exact forward from ``run_angles``, backward from the parameter-shift Jacobians."""

    @staticmethod
    def forward(ctx, x, w, circuit, run_angles):
        xn, wn = x.detach().cpu().double().numpy(), w.detach().cpu().double().numpy()
        probs = np.asarray(run_angles(circuit.angles.numpy(xn, wn)))
        jx, jw = parameter_shift_jacobian(circuit, run_angles, xn, wn)
        ctx.save_for_backward(torch.as_tensor(jx), torch.as_tensor(jw))
        return torch.as_tensor(probs, dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad_out):
        jx, jw = ctx.saved_tensors
        g = grad_out.to(jx.dtype)
        return torch.einsum("bid,bd->bi", jx, g), torch.einsum("bjd,bd->j", jw, g), None, None


def shift_probabilities(circuit: UserCircuit, run_angles: Callable, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Probabilities (B x 2**n) whose gradient (to ``x`` and the shared ``w``) is the
    parameter shift's: what a training loop uses on an executor torch cannot differentiate."""
    return _Shift.apply(x, w, circuit, run_angles)
