"""The quantum student: reduce the image to 2**Q features, encode, run, read out.

::

    image (1x28x28) -> reduction -> 2**Q features -> tanh -> L2 normalize
      -> amplitude encoding (Ry tree) -> ansatz -> 2**Q basis-state probabilities
      -> head -> class logits

Reductions (the paper's section on dimensionality):

* ``fc``: flatten and a trainable linear layer (784 -> 2**Q); the only one
  with classical parameters, trained through the encoding by the chain rule.
* ``avgpool`` / ``maxpool``: adaptive pooling to an h x w grid, h*w = 2**Q
  (2x4 for 3 qubits, 4x4 for 4).
* ``crop``: the central h x w patch (the same grid shapes; 8 is no square).
* ``pca``: whitened principal components fitted on the student's training
  images (whitening keeps tanh out of saturation).

Heads (how probabilities become logits; the first C basis states are the C
classes, the rest are read as "none of them"):

* ``linear`` (default): ``logits = s * p_c``. Gradients are linear in the
  probabilities, so shot noise is not amplified, and a confident teacher at
  T = 3 is matched by a modest scale rather than by driving probabilities
  to 1e-5.
* ``log``: ``logits = s * log(p_c / sum_c p_c)``; with s = 1 the softmax is the
  renormalized class probabilities. Its gradient carries 1/p_c, which shot
  noise turns into large errors where a probability is small.

``s`` starts at ``head_scale`` and is learned (as log s) unless ``learn_scale``
is off.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from workers.circuits import Circuit, encoding_params

DEFAULT_HEAD_SCALE = {"linear": 10.0, "log": 1.0}


def grid_shape(n_qubits: int) -> tuple[int, int]:
    """An h x w grid with h*w = 2**n, as square as possible."""
    h = 2 ** (n_qubits // 2)
    return h, 2**n_qubits // h


class Reduction(nn.Module):
    """Image batch (B x 1 x 28 x 28) to 2**Q features."""

    def __init__(self, kind: str, n_qubits: int, train_images: torch.Tensor | None = None, seed: int = 0):
        super().__init__()
        self.kind = kind
        dim = 2**n_qubits
        self.grid = grid_shape(n_qubits)
        if kind == "fc":
            self.fc = nn.Linear(28 * 28, dim)
        elif kind == "avgpool":
            self.pool = nn.AdaptiveAvgPool2d(self.grid)
        elif kind == "maxpool":
            self.pool = nn.AdaptiveMaxPool2d(self.grid)
        elif kind == "pca":
            if train_images is None:
                raise ValueError("reduction pca needs the training images to fit on")
            from sklearn.decomposition import PCA  # noqa: PLC0415

            flat = train_images.reshape(len(train_images), -1).double().numpy()
            pca = PCA(n_components=dim, whiten=True, random_state=seed).fit(flat)
            scale = np.sqrt(pca.explained_variance_)[:, None]
            self.register_buffer("mean", torch.as_tensor(pca.mean_))
            self.register_buffer("components", torch.as_tensor(pca.components_ / scale))
        elif kind != "crop":
            raise ValueError(f"reduction: unknown reduction {kind!r}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        if self.kind == "fc":
            return self.fc(images.reshape(b, -1))
        if self.kind in ("avgpool", "maxpool"):
            return self.pool(images).reshape(b, -1)
        if self.kind == "crop":
            h, w = self.grid
            top, left = (images.shape[-2] - h) // 2, (images.shape[-1] - w) // 2
            return images[..., top : top + h, left : left + w].reshape(b, -1)
        flat = images.reshape(b, -1).double()
        return (flat - self.mean) @ self.components.T


class QuantumStudent(nn.Module):
    """Reduction, encoding and circuit on a backend, and a head; logits out."""

    def __init__(
        self,
        circuit: Circuit,
        backend,
        n_classes: int,
        reduction: Reduction,
        head: str = "linear",
        head_scale: float | None = None,
        learn_scale: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if n_classes > circuit.dim:
            raise ValueError(f"{n_classes} classes need more than {circuit.n_qubits} qubits")
        self.circuit, self.backend, self.n_classes = circuit, backend, n_classes
        self.reduction = reduction
        self.head = head
        # The paper: angles "randomly initialized"; uniform over a full turn.
        self.weights = nn.Parameter(
            torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 2 * math.pi
        )
        scale = head_scale if head_scale is not None else DEFAULT_HEAD_SCALE[head]
        log_scale = torch.tensor(math.log(scale), dtype=torch.float64)
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        enc = encoding_params(self.circuit, self.reduction(images))
        return self.backend.probabilities(enc, self.weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p = self.probabilities(images)[:, : self.n_classes]
        scale = self.log_scale.exp()
        if self.head == "linear":
            return scale * p
        renorm = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return scale * torch.log(renorm.clamp_min(1e-6))
