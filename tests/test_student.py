"""Reductions and heads: shapes, what is trainable, and where gradients go."""

import math

import pytest
import torch

from workers.backends import StatevectorBackend
from workers.circuits import build_circuit
from workers.student import QuantumStudent, Reduction, grid_shape


def _images(n=12, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["fc", "avgpool", "maxpool", "crop", "pca"])
@pytest.mark.parametrize("qubits", [3, 4])
def test_reductions_give_2_to_the_q_features(kind, qubits):
    x = _images(40)
    r = Reduction(kind, qubits, train_images=x)
    out = r(x[:7])
    assert out.shape == (7, 2**qubits)
    assert torch.isfinite(out).all()
    trainable = sum(p.numel() for p in r.parameters() if p.requires_grad)
    assert trainable == (28 * 28 * 2**qubits + 2**qubits if kind == "fc" else 0)


def test_pooling_and_crop_read_the_image_as_documented():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 13, 12] = 1.0  # inside the central 2x4 crop (rows 13-14, cols 12-15)
    h, w = grid_shape(3)
    assert (h, w) == (2, 4)
    assert Reduction("crop", 3)(x).flatten().tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert Reduction("maxpool", 3)(x).max() == 1.0
    assert Reduction("avgpool", 3)(x).sum() == pytest.approx(1 / (14 * 7))


def test_pca_whitens_its_training_images():
    x = _images(200, seed=1)
    feats = Reduction("pca", 3, train_images=x)(x)
    assert torch.allclose(feats.mean(0), torch.zeros(8, dtype=feats.dtype), atol=1e-6)
    assert torch.allclose(feats.std(0, unbiased=True), torch.ones(8, dtype=feats.dtype), atol=1e-2)


def _student(head="linear", scale=None, learn=True, n_classes=6, reduction="fc"):
    c = build_circuit(3, "h-ry")
    torch.manual_seed(0)
    return QuantumStudent(c, StatevectorBackend(c), n_classes, Reduction(reduction, 3),
                          head=head, head_scale=scale, learn_scale=learn)  # fmt: skip


def test_linear_head_is_scaled_class_probabilities():
    s = _student("linear", scale=4.0)
    x = _images(5)
    p = s.probabilities(x)[:, :6]
    assert torch.allclose(s(x), 4.0 * p)
    assert math.isclose(s.log_scale.exp().item(), 4.0)


def test_log_head_softmax_is_renormalized_class_probabilities():
    s = _student("log", scale=1.0)
    x = _images(5)
    p = s.probabilities(x)[:, :6]
    assert torch.allclose(torch.softmax(s(x), 1), p / p.sum(1, keepdim=True), atol=1e-6)


def test_gradients_reach_the_classical_layer_the_angles_and_the_scale():
    s = _student()
    torch.nn.functional.cross_entropy(s(_images(8)), torch.arange(8) % 6).backward()
    assert s.reduction.fc.weight.grad.abs().sum() > 0
    assert s.weights.grad.abs().sum() > 0
    assert s.log_scale.grad.abs() > 0
    fixed = _student(learn=False)
    assert "log_scale" not in dict(fixed.named_parameters())


def test_too_many_classes_for_the_register_is_refused():
    with pytest.raises(ValueError):
        _student(n_classes=9)
