"""The students: registered kinds, each turning an image into class scores.

Kinds (``student`` in a config; :data:`workers.kinds.STUDENT_KINDS` describes
them, :data:`BUILDERS` builds them):

* ``amplitude`` (default, the paper's text): the pipeline below.
* ``cnn-angle`` (the paper's released notebooks): a small CNN (conv 1->10 5x5,
  max-pool 2, ReLU; conv 10->20 5x5, 2-D dropout 0.5, max-pool 2, ReLU; FC
  320->50, ReLU, dropout 0.5; FC 50->Q) gives Q angles pi*tanh(x); the circuit is
  H on every qubit then Ry(angle_k) on qubit k (angle encoding, no trainable
  gate); its 2**Q outcome frequencies go through the ``sigmoid-pair`` head. All
  ~21.5k trainable parameters are classical.
* ``cnn-classical`` (a control for what the circuit adds): the same CNN and
  pi*tanh, then a linear layer Q -> 2**Q and a softmax in place of the circuit:
  the same inputs, 2**Q probabilities out, the same head.
* ``circuit`` (a user's Qiskit circuit, ``circuit: PKG.MODULE:CALLABLE``; see the README):
  a :class:`Reduction` to len(x) features and pi*tanh, or (``reduction: cnn``) the CNN
  above, into the user's circuit on its backend (:mod:`workers.backends.user`), then the
  head. With the notebooks' circuit written by hand it trains exactly as ``cnn-angle``.

The amplitude student:

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
* ``sigmoid-pair`` (the released notebooks'): ``z = sigmoid(p)`` over all 2**Q
  outcomes, scores ``concat(z, 1 - z)`` (2 * 2**Q of them). Cross-entropy runs
  over all of them against the class index, the prediction is the argmax over
  all of them, and the distillation term sees the first C. No scale.

``s`` starts at ``head_scale`` and is learned (as log s) unless ``learn_scale``
is off.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from workers.backends import make_backend
from workers.choices import DEFAULT_HEAD_SCALE, HEADS
from workers.circuits import Circuit, build_angle_circuit, build_circuit, encoding_params
from workers.config import TrialConfig
from workers.kinds import STUDENT_KINDS, dataset_kind, user_circuit
from workers.refs import resolve


def grid_shape(n_qubits: int) -> tuple[int, int]:
    """An h x w grid with h*w = 2**n, as square as possible."""
    h = 2 ** (n_qubits // 2)
    return h, 2**n_qubits // h


def feature_grid(n: int) -> tuple[int, int]:
    """An h x w grid with h*w = n, as square as possible (``grid_shape`` for a power of two)."""
    h = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return h, n // h


class Reduction(nn.Module):
    """Image batch (B x C x H x W, 1 x 28 x 28 for MNIST) to 2**Q features (``n_features``
    when given: the circuit student's len(x)). Pooling and cropping see a colour image's
    channel mean; fc and pca see every channel."""

    def __init__(self, kind: str, n_qubits: int, train_images: torch.Tensor | None = None, seed: int = 0,
                 shape: tuple[int, ...] = (1, 28, 28), n_features: int | None = None):  # fmt: skip
        super().__init__()
        self.kind = kind
        dim = n_features or 2**n_qubits
        self.grid = grid_shape(n_qubits) if n_features is None else feature_grid(n_features)
        if kind == "fc":
            self.fc = nn.Linear(math.prod(shape), dim)
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
        if self.kind in ("avgpool", "maxpool", "crop") and images.shape[1] > 1:
            images = images.mean(1, keepdim=True)
        if self.kind in ("avgpool", "maxpool"):
            return self.pool(images).reshape(b, -1)
        if self.kind == "crop":
            h, w = self.grid
            top, left = (images.shape[-2] - h) // 2, (images.shape[-1] - w) // 2
            return images[..., top : top + h, left : left + w].reshape(b, -1)
        flat = images.reshape(b, -1).double()
        return (flat - self.mean) @ self.components.T


class Head(nn.Module):
    """Probabilities (B x 2**Q) to class scores; ``linear`` and ``log`` carry a scale s."""

    def __init__(self, kind: str, n_classes: int, scale: float | None = None, learn_scale: bool = True):
        super().__init__()
        self.kind, self.n_classes = kind, n_classes
        if kind not in HEADS:
            raise ValueError(f"head: unknown head {kind!r}")
        if kind not in DEFAULT_HEAD_SCALE:  # the heads without a scale
            return
        initial = scale if scale is not None else DEFAULT_HEAD_SCALE[kind]
        log_scale = torch.tensor(math.log(initial), dtype=torch.float64)
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> float:
        return self.log_scale.exp().item() if hasattr(self, "log_scale") else math.nan

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid-pair":
            z = torch.sigmoid(probs)
            return torch.cat([z, 1 - z], dim=1)
        if self.kind == "softmax-freqs":
            return torch.softmax(probs, dim=1)
        p = probs[:, : self.n_classes]
        scale = self.log_scale.exp()
        if self.kind == "linear":
            return scale * p
        renorm = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return scale * torch.log(renorm.clamp_min(1e-6))


class _Student(nn.Module):
    """What every kind shares: ``probabilities`` (B x 2**Q), a head, scores out."""

    backend = None
    head: Head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.probabilities(images))

    @property
    def log_scale(self) -> torch.Tensor:
        return self.head.log_scale

    @property
    def head_scale(self) -> float:
        return self.head.scale

    @property
    def n_params(self) -> int:
        """Trainable parameters, classical and quantum."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


#: The public name of what a student kind builds (a package's ``StudentKind.build`` returns one):
#: an ``nn.Module`` with ``probabilities(images)`` (B x 2**Q, or any B x K scores' inputs), a
#: ``head`` (:class:`Head`) and a ``backend`` (None for a student that runs no circuit).
StudentModel = _Student


class QuantumStudent(_Student):
    """The amplitude student: reduction, encoding and circuit on a backend, and a head."""

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
        # The paper: angles "randomly initialized"; uniform over a full turn.
        self.weights = nn.Parameter(
            torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 2 * math.pi
        )
        self.head = Head(head, n_classes, head_scale, learn_scale)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        enc = encoding_params(self.circuit, self.reduction(images))
        return self.backend.probabilities(enc, self.weights)


class AngleCNN(nn.Module):
    """The released notebooks' front-end: a 1x28x28 image (or C x H x W) to Q angles pi*tanh(x)."""

    def __init__(self, n_out: int, dropout: float = 0.5, shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        self.conv1 = nn.Conv2d(shape[0], 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.conv2_drop = nn.Dropout2d(dropout)
        side_h, side_w = ((shape[1] - 4) // 2 - 4) // 2, ((shape[2] - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(20 * side_h * side_w, 50)  # 320 on 28x28
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(50, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(nn.functional.max_pool2d(self.conv1(x), 2))
        x = torch.relu(nn.functional.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = self.drop(torch.relu(self.fc1(x.flatten(1))))
        return math.pi * torch.tanh(self.fc2(x))


class AngleStudent(_Student):
    """``cnn-angle``: CNN angles into H + Ry(angle) on a backend; no trainable gate."""

    def __init__(self, circuit: Circuit, backend, n_classes: int, head: str = "sigmoid-pair",
                 shape: tuple[int, ...] = (1, 28, 28), **head_kw):  # fmt: skip
        super().__init__()
        if circuit.encoding != "angle" or circuit.n_weights:
            raise ValueError("the cnn-angle student runs an angle-encoded circuit without trainable gates")
        self.circuit, self.backend, self.n_classes = circuit, backend, n_classes
        self.cnn = AngleCNN(circuit.n_qubits, shape=shape)
        self.register_buffer("weights", torch.zeros(0, dtype=torch.float64))
        self.head = Head(head, n_classes, **head_kw)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.backend.probabilities(self.cnn(images).to(torch.float64), self.weights)


class CircuitStudent(_Student):
    """``circuit``: an encoder to len(x) angles, the user's circuit on a backend, the head.

    The encoder is a :class:`Reduction` followed by pi*tanh, or (``reduction: cnn``) the
    notebooks' :class:`AngleCNN`, which ends in pi*tanh itself; the weights ``w`` start
    uniform over a full turn, as the amplitude student's do (none when the circuit has none).
    """

    def __init__(self, circuit, backend, n_classes: int, encoder: nn.Module, head: str = "linear",
                 generator: torch.Generator | None = None, **head_kw):  # fmt: skip
        super().__init__()
        if n_classes > circuit.dim:
            raise ValueError(f"{n_classes} classes need more than {circuit.n_qubits} qubits")
        self.circuit, self.backend, self.n_classes = circuit, backend, n_classes
        self.encoder = encoder
        if circuit.n_weights:
            w = torch.rand(circuit.n_weights, generator=generator, dtype=torch.float64) * 2 * math.pi
            self.weights = nn.Parameter(w)
        else:
            self.register_buffer("weights", torch.zeros(0, dtype=torch.float64))
        self.head = Head(head, n_classes, **head_kw)

    def angles(self, images: torch.Tensor) -> torch.Tensor:
        """The circuit's ``x`` (B x len(x)), float64."""
        x = self.encoder(images)
        if isinstance(self.encoder, Reduction):
            x = math.pi * torch.tanh(x)
        return x.to(torch.float64)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.backend.probabilities(self.angles(images), self.weights)


class ClassicalControl(_Student):
    """``cnn-classical``: the same CNN angles, a linear layer Q -> 2**Q and a softmax."""

    def __init__(self, n_qubits: int, n_classes: int, head: str = "sigmoid-pair",
                 shape: tuple[int, ...] = (1, 28, 28), **head_kw):  # fmt: skip
        super().__init__()
        self.n_classes = n_classes
        self.cnn = AngleCNN(n_qubits, shape=shape)
        self.mix = nn.Linear(n_qubits, 2**n_qubits)
        self.head = Head(head, n_classes, **head_kw)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mix(self.cnn(images)).to(torch.float64), dim=1)


class ClassicalStudent(_Student):
    """``classical``: the amplitude student with the circuit replaced by a classical layer.

    The same reduction to 2**Q features, the same tanh and L2 normalization the amplitude
    encoding applies, then a linear layer 2**Q -> 2**Q and a softmax where the circuit
    turned the encoded state into 2**Q outcome probabilities, and the same head. Its
    parameters are the reduction's, 4**Q + 2**Q for the layer, and the head's scale: on
    MNIST with the fc reduction, 6,361 for 3 qubits against the quantum student's 6,290
    (h-ry) or so, within the 10% a parameter-matched comparison asks for.
    """

    def __init__(self, n_qubits: int, n_classes: int, reduction: Reduction, head: str = "linear", **head_kw):
        super().__init__()
        self.n_classes = n_classes
        self.reduction = reduction
        self.layer = nn.Linear(2**n_qubits, 2**n_qubits, dtype=torch.float64)
        self.head = Head(head, n_classes, **head_kw)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.reduction(images).to(torch.float64))
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.softmax(self.layer(x), dim=1)


def _backend(cfg: TrialConfig, circuit: Circuit, shot_seed: int, test: bool = False):
    """The backend of a student's circuit; ``test``: the one its test split is scored on
    (``cfg.effective_test_noise``)."""
    noise = cfg.effective_test_noise if test else cfg.noise
    return make_backend(cfg.backend, circuit, cfg.shots, noise, shot_seed, cfg.shift_rule, cfg.gradient, cfg.device,
                        noise_scale=cfg.noise_scale)  # fmt: skip


def _head_kw(cfg: TrialConfig) -> dict:
    return {"scale": cfg.head_scale, "learn_scale": cfg.learn_scale}


def _shape(cfg: TrialConfig) -> tuple[int, int, int]:
    return dataset_kind(cfg.dataset).shape


def amplitude_model(n_qubits: int, ansatz: str, layers: int, n_classes: int, shape: tuple[int, ...],
                    reduction: str = "fc") -> QuantumStudent:  # fmt: skip
    """An amplitude-encoded circuit model on the exact statevector with autograd, its angles
    drawn from torch's global generator (the ``qnn`` teacher is one)."""
    circuit = build_circuit(n_qubits, ansatz, layers)
    backend = make_backend("statevector", circuit, 0, None, 0, "exact", "autograd", "cpu")
    return QuantumStudent(circuit, backend, n_classes, Reduction(reduction, n_qubits, shape=shape))


def _amplitude(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    circuit = build_circuit(cfg.qubits, cfg.ansatz, cfg.layers)
    backend = _backend(cfg, circuit, shot_seed)
    reduction = Reduction(cfg.reduction, cfg.qubits, train_images, seed=seed, shape=_shape(cfg))
    return QuantumStudent(circuit, backend, cfg.n_classes, reduction, head=cfg.head,
                          head_scale=cfg.head_scale, learn_scale=cfg.learn_scale,
                          generator=torch.Generator().manual_seed(seed))  # fmt: skip


def _cnn_angle(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    circuit = build_angle_circuit(cfg.qubits)
    backend = _backend(cfg, circuit, shot_seed)
    return AngleStudent(circuit, backend, cfg.n_classes, cfg.head, shape=_shape(cfg), **_head_kw(cfg))


def _circuit(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    circuit = user_circuit(cfg.circuit, cfg.qubits)  # compiled once, when the config was validated
    backend = _backend(cfg, circuit, shot_seed)
    if cfg.reduction == "cnn":
        encoder = AngleCNN(circuit.n_x, shape=_shape(cfg))
    else:
        encoder = Reduction(
            cfg.reduction, cfg.qubits, train_images, seed=seed, shape=_shape(cfg), n_features=circuit.n_x
        )
    return CircuitStudent(circuit, backend, cfg.n_classes, encoder, cfg.head,
                          generator=torch.Generator().manual_seed(seed), **_head_kw(cfg))  # fmt: skip


def _cnn_classical(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    return ClassicalControl(cfg.qubits, cfg.n_classes, cfg.head, shape=_shape(cfg), **_head_kw(cfg))


def _classical(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    reduction = Reduction(cfg.reduction, cfg.qubits, train_images, seed=seed, shape=_shape(cfg))
    return ClassicalStudent(cfg.qubits, cfg.n_classes, reduction, cfg.head, **_head_kw(cfg))


#: Student kind -> builder(resolved config, training images, init seed, shot seed).
#: A new kind is one entry here and one in workers.kinds.STUDENT_KINDS.
BUILDERS = {"amplitude": _amplitude, "cnn-angle": _cnn_angle, "cnn-classical": _cnn_classical,
            "classical": _classical, "circuit": _circuit}  # fmt: skip
assert all(k in BUILDERS or STUDENT_KINDS[k].build is not None for k in STUDENT_KINDS), "a builder per kind"


def scoring_backend(cfg: TrialConfig, model: _Student, shot_seed: int):
    """The backend the test and validation splits are scored on: the model's own, unless
    ``cfg`` (resolved) gives a ``test_noise`` of its own; then one on the same circuit under it."""
    if cfg.test_noise is None or model.backend is None:
        return model.backend
    return _backend(cfg, model.circuit, shot_seed, test=True)


def build_student(cfg: TrialConfig, train_images: torch.Tensor, seed: int, shot_seed: int) -> _Student:
    """The student ``cfg`` (resolved) names, initialized from ``seed`` (torch's global
    generator included, for the layers torch initializes itself), its backend's shots
    drawn from ``shot_seed``."""
    if cfg.student in BUILDERS:
        build = BUILDERS[cfg.student]
    else:  # a package's kind (StudentKind.build)
        build = resolve(STUDENT_KINDS[cfg.student].build)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build(cfg, train_images, seed, shot_seed)
