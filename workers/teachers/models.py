"""The teachers' models: the built-in architectures per recipe, and any teacher's model
built from its name or from a reference to the user's code.

Architectures (paper, section 4.3):

* ``lenet``: LeNet-5 for a 28x28 input: conv 6@5x5 (padding 2, so C1 sees a
  28x28 image as the original saw 32x32), ReLU, 2x2 max-pool; conv 16@5x5,
  ReLU, 2x2 max-pool; FC 120, 84, C. (ReLU and max-pooling stand in for the
  original's scaled tanh and subsampling, as in most modern reimplementations.)
* ``alexnet``: the paper's modified AlexNet: conv 64@3x3 p1, ReLU, 2x2
  max-pool; conv 192@3x3 p1, ReLU, 2x2 max-pool; conv 384@3x3 p1, ReLU;
  dropout, FC 4096, ReLU, dropout, FC 4096, ReLU, FC C.
* ``ensemble``: no model of its own but its members (``workers.kinds.TEACHERS["ensemble"].members``,
  LeNet and AlexNet), assembled from their logits (:mod:`workers.teachers.logits`).
* ``qnn`` (a quantum teacher, for quantum-to-quantum distillation): the
  amplitude student's pipeline at teacher size, 8 qubits, an fc reduction to 256
  amplitudes and a 4-layer ``hea`` circuit with a linear head, trained like the
  CNNs (Adam, the whole class-filtered training split) on the exact statevector
  with autograd, then frozen; its logits are cached the same way.

Every model takes the dataset's image shape (``workers.kinds.DATASETS``).

The ``paper-code`` recipe builds the released notebooks' models: the classic LeNet-5
(conv 6@5x5 without padding, tanh, 2x2 average pooling; conv 16@5x5, tanh, average
pooling; FC 256-120-84-C with tanh: 44,086 parameters for 6 classes); and an ensemble
that is one model, AlexNet and LeNet side by side with their logits averaged, trained
jointly from scratch (not two trained teachers combined). How the recipe trains them:
:mod:`workers.teachers.train`.

The user's own teacher is a reference in place of a name: ``PKG.MODULE:CALLABLE``, called
as ``fn(n_classes, image_shape)``, returns a ``torch.nn.Module`` that gives N x n_classes
scores; ``torchvision:NAME`` is torchvision's classification model NAME (``weights=None``:
nothing is downloaded) adapted to the images (:func:`torchvision_model`); a package's kind
carries its builder (``TeacherKind.build``, same call). Either is trained by the recipe the
config names, exactly as a built-in teacher, and cached the same way; what identifies its
code (:func:`model_source`) is part of its cache key, so that an edited model is a new
teacher.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from workers.errors import ConfigError
from workers.kinds import TEACHERS, trained_as_one
from workers.refs import RefError, resolve, source_hash, user_code
from workers.student import amplitude_model

#: The teachers there are (every registered kind but ``none``).
ARCHS = tuple(k for k in TEACHERS if k != "none")
#: An image's channels, height and width when a model is built without a dataset.
MNIST_SHAPE = (1, 28, 28)


def _flat_size(features: nn.Module, shape: tuple[int, ...]) -> int:
    """How many values ``features`` makes of one image of ``shape`` (what a classifier sees)."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *shape)).numel())


class LeNet5(nn.Module):
    """LeNet-5 for a C x H x W input (28x28 by default). Ours (``classic=False``): padding 2
    on the first conv, ReLU and max-pooling. The released notebooks' (``classic=True``): no
    padding, tanh and average pooling, so a 256-wide flatten on 28x28 (44,086 parameters
    for 6 classes)."""

    def __init__(self, n_classes: int, shape: tuple[int, ...] = MNIST_SHAPE, classic: bool = False):
        super().__init__()
        act, pool = (nn.Tanh, nn.AvgPool2d) if classic else (nn.ReLU, nn.MaxPool2d)
        self.features = nn.Sequential(
            nn.Conv2d(shape[0], 6, 5, padding=0 if classic else 2), act(), pool(2),
            nn.Conv2d(6, 16, 5), act(), pool(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(_flat_size(self.features, shape), 120), act(),
            nn.Linear(120, 84), act(), nn.Linear(84, n_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


#: The released notebooks' LeNet-5.
classic_lenet5 = functools.partial(LeNet5, classic=True)


class JointEnsemble(nn.Module):
    """The released notebooks' ensemble: one model whose logits are the mean of its two members'."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class AlexNetMNIST(nn.Module):
    """The paper's modified AlexNet for a C x H x W input (28x28 by default)."""

    def __init__(self, n_classes: int, shape: tuple[int, ...] = MNIST_SHAPE, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(shape[0], 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(_flat_size(self.features, shape), 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, n_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


#: The ``qnn`` teacher's circuit: qubits, hea layers (its reduction is ``fc``, its head linear).
QNN_QUBITS, QNN_LAYERS = 8, 4


def qnn_teacher(n_classes: int, shape: tuple[int, ...] = MNIST_SHAPE) -> nn.Module:
    """``qnn``: the amplitude student's pipeline at teacher size (8 qubits, hea x 4, an fc
    reduction 784 -> 256 on MNIST), on the exact statevector with autograd; trained like
    a CNN teacher, then frozen, its logits cached the same way."""

    return amplitude_model(QNN_QUBITS, "hea", QNN_LAYERS, n_classes, shape)


#: Per recipe, the architectures and how each is built from (classes, image shape); an
#: ensemble missing here is assembled from trained members (eq. 16) instead of trained as
#: one model. A new teacher is one entry here and one in ``workers.kinds.TEACHERS``.
MODELS = {
    "default": {"lenet": LeNet5, "alexnet": AlexNetMNIST, "qnn": qnn_teacher},
    "paper-code": {
        "lenet": classic_lenet5,
        "alexnet": AlexNetMNIST,
        "ensemble": lambda c, shape=MNIST_SHAPE: JointEnsemble([AlexNetMNIST(c, shape), classic_lenet5(c, shape)]),
    },
}
#: What decides a model's architecture beyond its name, hashed into its cache key.
MODEL_VERSION = {"qnn": f"amplitude fc, hea x {QNN_LAYERS}, {QNN_QUBITS} qubits, linear head, exact statevector"}
assert all(trained_as_one(a, "default") == (a in MODELS["default"] or TEACHERS[a].build is not None)
           for a in ARCHS), "MODELS and trained_as_one"  # fmt: skip


#: torchvision:NAME: the smallest image side a model is tried at before its input is enlarged.
TORCHVISION_SIDES = (32, 64, 128, 224)
#: Bumped when :func:`torchvision_model`'s adaptation changes (part of those teachers' keys).
TORCHVISION_ADAPTER = 1


def torchvision_model(name: str, n_classes: int, shape: tuple[int, ...]) -> nn.Module:
    """torchvision's classification model ``name`` (``weights=None``, ``num_classes=n_classes``),
    adapted to C x H x W images: its first convolution takes C input channels (same filters,
    stride and padding), and where the model cannot run on H x W (too many poolings for a
    28 x 28 image: VGG, AlexNet), its input is first resized (bilinear) to the smallest side of
    :data:`TORCHVISION_SIDES` at which it runs. ResNets, MobileNets, EfficientNets, RegNets,
    ShuffleNets and the like run on 28 x 28 as they are (their last pooling is adaptive)."""
    import torchvision  # noqa: PLC0415 - only for this family

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ValueError(f"{name!r} is not a torchvision classification model (e.g. resnet18, mobilenet_v3_small)")
    model = torchvision.models.get_model(name, weights=None, num_classes=n_classes)
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first[1].in_channels != shape[0]:
        path, conv = first
        parent_name, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        adapted = nn.Conv2d(shape[0], conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)  # fmt: skip
        setattr(parent, attr, adapted)
    if _runs(model, shape):
        return model
    for side in TORCHVISION_SIDES:
        if side > max(shape[1:]) and _runs(model, (shape[0], side, side)):
            return nn.Sequential(nn.Upsample(size=(side, side), mode="bilinear", align_corners=False), model)
    raise ValueError(f"torchvision's {name} does not run on {shape[1]} x {shape[2]} images, "
                     f"nor resized to {TORCHVISION_SIDES[-1]} x {TORCHVISION_SIDES[-1]}")  # fmt: skip


def _runs(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` (in eval mode) takes a batch of one C x H x W image."""
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
        return True
    except RuntimeError:
        return False
    finally:
        model.train(was)


def _builder(arch: str, recipe: str):
    """How teacher ``arch`` is built: ``fn(n_classes, shape)``; raises ValueError (or RefError)."""

    if arch in MODELS.get(recipe, {}):
        return MODELS[recipe][arch]
    if arch.startswith("torchvision:"):
        return functools.partial(torchvision_model, arch.removeprefix("torchvision:"))
    if arch in TEACHERS and TEACHERS[arch].build is not None:  # a package's kind
        return resolve(TEACHERS[arch].build)
    if ":" in arch and arch not in TEACHERS:
        return resolve(arch)
    raise ValueError(f"teacher: unknown architecture {arch!r} for recipe {recipe!r}")


def make_model(arch: str, n_classes: int, recipe: str = "default", shape: tuple[int, ...] = MNIST_SHAPE) -> nn.Module:
    return _builder(arch, recipe)(n_classes, tuple(shape))


def model_source(arch: str) -> str:
    """What identifies the code of a teacher that is not built in (its cache key's ``source``):
    the hash of the user's callable (or the package kind's builder); for ``torchvision:NAME``,
    torchvision's version and this module's adapter; "" for a built-in teacher."""

    if arch.startswith("torchvision:"):
        import torchvision  # noqa: PLC0415

        return f"torchvision {torchvision.__version__}, adapter {TORCHVISION_ADAPTER}"
    if arch in TEACHERS:  # built in (""), or a package's kind with a builder of its own
        built_in = TEACHERS[arch].build is None or any(arch in models for models in MODELS.values())
        return "" if built_in else source_hash(resolve(TEACHERS[arch].build))
    return source_hash(resolve(arch)) if ":" in arch else ""


def check_user_model(ref: str, n_classes: int, shape: tuple[int, ...]) -> str:
    """Builds the teacher ``ref`` names for ``n_classes`` and ``shape`` and runs it on a dummy
    batch of two images, in eval and in train mode: a ConfigError naming ``teacher`` and ``ref``,
    in one line, when it does not import, raises, is not a ``torch.nn.Module`` or does not give
    2 x n_classes scores. Returns its source hash (:func:`model_source`)."""

    call = f"{ref}(n_classes={n_classes}, image_shape={tuple(shape)})"
    try:
        build = _builder(ref, "default")
    except RefError as exc:
        raise ConfigError("teacher", str(exc)) from None
    with user_code(lambda m: ConfigError("teacher", m), f"{call} raised "):
        model = build(n_classes, tuple(shape))
    if not isinstance(model, nn.Module):
        raise ConfigError("teacher", f"{call} returned {type(model).__name__}, not a torch.nn.Module")
    batch = torch.zeros(2, *shape)
    for mode in ("eval", "train"):
        what = f"{ref}'s model fails on a batch of 2 images {'x'.join(map(str, shape))} ({mode} mode): "
        with torch.no_grad(), user_code(lambda m: ConfigError("teacher", m), what):
            out = getattr(model, mode)()(batch)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError("teacher", f"{ref}'s model gives {got} on a batch of 2 images "
                              f"{'x'.join(map(str, shape))} ({mode} mode), not (2, {n_classes}): "
                              "one score per class")  # fmt: skip
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("teacher", f"{ref}'s model has no trainable parameters")
    return model_source(ref)
