"""The loss, checked against torch's own functions and hand-written formulas."""

import pytest
import torch
import torch.nn.functional as F

from workers.distill import distillation_loss, kl_soft


def _logits(seed=0, b=16, c=6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=g, dtype=torch.float64) * 3,
            torch.randn(b, c, generator=g, dtype=torch.float64) * 5,
            torch.randint(0, c, (b,), generator=g))  # fmt: skip


def test_kl_matches_kldivloss_and_the_definition():
    s, t, _ = _logits()
    T = 3.0
    pt, ps = F.softmax(t / T, 1), F.softmax(s / T, 1)
    by_hand = (pt * (pt.log() - ps.log())).sum(1).mean()
    by_torch = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / T, 1), pt)
    assert torch.allclose(kl_soft(s, t, T), by_hand, atol=1e-12)
    assert torch.allclose(kl_soft(s, t, T), by_torch, atol=1e-12)
    assert kl_soft(t, t, T).abs() < 1e-12
    assert kl_soft(s, t, T) > 0


@pytest.mark.parametrize("T,lam", [(3.0, 0.9), (1.0, 0.5), (7.5, 0.1)])
def test_forms(T, lam):
    s, t, y = _logits(1)
    ce = F.cross_entropy(s, y)
    kl = kl_soft(s, t, T)
    want = {
        "hinton": (1 - lam) * ce + lam * T**2 * kl,
        "convex": (1 - lam) * ce + lam * kl,
        "additive": ce + lam * T**2 * kl,
    }
    for form, expected in want.items():
        loss, parts = distillation_loss(s, y, t, T, lam, form)
        assert torch.allclose(loss, expected, atol=1e-12), form
        assert parts["ce"] == pytest.approx(float(ce))
        assert parts["kl"] == pytest.approx(float(kl))


def test_baseline_is_cross_entropy():
    s, t, y = _logits(2)
    ce = F.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, y, None)[0], ce)
    assert torch.allclose(distillation_loss(s, y, t, 3.0, 0.0)[0], ce)
    assert not torch.allclose(distillation_loss(s, y, t, 3.0, 0.9)[0], ce)


def test_gradient_pulls_student_towards_teacher():
    s, t, y = _logits(3)
    s = s.clone().requires_grad_()
    loss, _ = distillation_loss(s, y, t, 3.0, 1.0)
    loss.backward()
    # d/ds of T^2 KL(pt || ps) = T (ps - pt) / B: step against it moves ps to pt.
    T, b = 3.0, s.shape[0]
    expected = T * (F.softmax(s.detach() / T, 1) - F.softmax(t / T, 1)) / b
    assert torch.allclose(s.grad, expected, atol=1e-12)


def test_unknown_form_is_refused():
    s, t, y = _logits()
    with pytest.raises(ValueError, match="kd_form"):
        distillation_loss(s, y, t, 3.0, 0.5, "paper")
