"""Gradients of measured probabilities with respect to a circuit's angles.

* ``autograd``: torch differentiates the exact torch statevector (no shots).
* ``parameter-shift``: for any executor and any measurement, every Ry angle's
  derivative from two shifted circuits, d f / d t = scale * (f(t + s) - f(t - s)),
  each shifted circuit measured as the forward one is (with its own shots). The
  shifted rows of a batch are run in the same executor call as the forward rows.
  Rules (:data:`SHIFT_RULES`): ``exact`` is s = pi/2, scale 1/2 (exact for Ry);
  ``pi4-unnormalized`` is the released notebooks' s = pi/4, scale 1, which is
  2 sin(pi/4) = sqrt(2) times the gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: shift rule -> (shift, scale): the estimate of d f / d t is scale * (f(t + shift) - f(t - shift)).
SHIFT_RULES = {"exact": (math.pi / 2, 0.5), "pi4-unnormalized": (math.pi / 4, 1.0)}


def bound_rows(enc: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """One row of angles per sample: its encoding angles, then the shared weights."""
    e = enc.detach().cpu().double().numpy()
    w = weights.detach().cpu().double().numpy()
    return np.concatenate([e, np.broadcast_to(w, (len(e), len(w)))], axis=1)


class Autograd:
    """torch autograd through the exact statevector executor."""

    name = "autograd"

    def probabilities(self, backend, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        backend.executions += enc.shape[0]
        return backend.executor.probabilities(enc, weights)


class ParameterShift:
    """The parameter-shift rule on any executor; ``rule`` one of :data:`SHIFT_RULES`."""

    def __init__(self, rule: str = "exact"):
        self.rule = rule
        self.shift, self.scale = SHIFT_RULES[rule]

    @property
    def name(self) -> str:
        return f"parameter-shift:{self.rule}"

    def probabilities(self, backend, enc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # Decided here, not inside the Function: there grad mode is always off and
        # inputs still say requires_grad, so an evaluation under no_grad would pay
        # for every parameter-shift copy.
        if torch.is_grad_enabled() and (enc.requires_grad or weights.requires_grad):
            return _ShiftFunction.apply(enc, weights, backend, self)
        return torch.as_tensor(backend.run_samples(enc, weights), dtype=torch.float64)


class _ShiftFunction(torch.autograd.Function):
    """Measured forward; parameter-shift backward, the shifted circuits run in the same call."""

    @staticmethod
    def forward(ctx, enc, weights, backend, rule: ParameterShift):
        e = enc.detach().cpu().double().numpy()
        w = weights.detach().cpu().double().numpy()
        out = backend.run_shifted(e, w, rule.shift)  # (b, 1 + 2p, 2**n)
        p = (out.shape[1] - 1) // 2
        jac = (out[:, 1 : 1 + p] - out[:, 1 + p :]) * rule.scale  # (b, p, 2**n): d prob / d angle
        ctx.save_for_backward(torch.as_tensor(jac))
        ctx.n_enc = enc.shape[1]
        return torch.as_tensor(out[:, 0], dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad_out):
        (jac,) = ctx.saved_tensors
        g = torch.bmm(jac, grad_out.to(jac.dtype).unsqueeze(-1)).squeeze(-1)  # (b, p)
        grad_enc = g[:, : ctx.n_enc]
        grad_w = g[:, ctx.n_enc :].sum(dim=0)
        return grad_enc, grad_w, None, None
