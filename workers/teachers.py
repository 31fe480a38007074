"""Classical teachers, trained once and cached with their logits.

Architectures (paper, section 4.3):

* ``lenet``: LeNet-5 for a 28x28 input: conv 6@5x5 (padding 2, so C1 sees a
  28x28 image as the original saw 32x32), ReLU, 2x2 max-pool; conv 16@5x5,
  ReLU, 2x2 max-pool; FC 120, 84, C. (ReLU and max-pooling stand in for the
  original's scaled tanh and subsampling, as in most modern reimplementations.)
* ``alexnet``: the paper's modified AlexNet: conv 64@3x3 p1, ReLU, 2x2
  max-pool; conv 192@3x3 p1, ReLU, 2x2 max-pool; conv 384@3x3 p1, ReLU;
  dropout, FC 4096, ReLU, dropout, FC 4096, ReLU, FC C.
* ``ensemble``: the mean of its members' softmax outputs (eq. 16; the members
  are ``workers.config.TEACHERS["ensemble"].members``, LeNet and AlexNet); its
  distillation logits are the log of that mean.
* ``qnn`` (a quantum teacher, for quantum-to-quantum distillation): the
  amplitude student's pipeline at teacher size, 8 qubits, an fc reduction to 256
  amplitudes and a 4-layer ``hea`` circuit with a linear head, trained like the
  CNNs (Adam, the whole class-filtered training split) on the exact statevector
  with autograd, then frozen; its logits are cached the same way.

Every model takes the dataset's image shape (``workers.config.DATASETS``).

The user's own teacher is a reference in place of a name: ``PKG.MODULE:CALLABLE``, called
as ``fn(n_classes, image_shape)``, returns a ``torch.nn.Module`` that gives N x n_classes
scores; ``torchvision:NAME`` is torchvision's classification model NAME (``weights=None``:
nothing is downloaded) adapted to the images (:func:`torchvision_model`); a package's kind
carries its builder (``TeacherKind.build``, same call). Either is trained by the recipe the
config names, exactly as a built-in teacher, and cached the same way; its cache key adds
the reference's source hash (``source``), so that an edited model is a new teacher, and,
for a user's dataset, a hash of its arrays (``data``).

The ``paper-code`` recipe is the released notebooks': pixels in [0, 1] (no
normalization), Adam at lr 1e-3 for 10 epochs, batch 128, the test split scored
after every epoch; the classic LeNet-5 (conv 6@5x5 without padding, tanh, 2x2
average pooling; conv 16@5x5, tanh, average pooling; FC 256-120-84-C with tanh:
44,086 parameters for 6 classes); and an ensemble that is one model, AlexNet and
LeNet side by side with their logits averaged, trained jointly from scratch (not
two trained teachers combined). The notebooks print the best test epoch's
accuracy but save (by reference) and distil from the last epoch's weights: the
recipe keeps the last epoch (``keep: best_test`` keeps the best one instead) and
a teacher row reports both accuracies; ``best_test_acc`` is selection on the
test split.

Cache layout, one folder per key (dataset, classes, arch, teacher seed, hash
of the training settings)::

    <cache_dir>/teachers/<dataset>/<classes>/<arch>-seed<seed>-<hash>/
        weights.safetensors   (not for ensemble: it is its members)
        logits.parquet        one row per sample of the class-filtered train
                              and test splits: split, index, label, logit_<class>
        meta.json             the key, test accuracy, training time, versions

Logits cover the whole class-filtered splits, so any student sample, whatever
its seed, finds its teacher's logits by its index in the source split. A
logits file that fails its schema check is rebuilt (from the saved weights
when they load) with a warning; every file is written to a temporary name and
renamed into place.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from workers.config import (
    TEACHERS,
    ConfigError,
    TeacherSettings,
    members_of,
    n_labels,
    parse_classes,
    teacher_kind,
    trained_as_one,
    user_dataset,
)
from workers.data import Dataset, Split, load_dataset
from workers.io import Location, atomic_write, location, remove_stale_temporaries, write_json, write_parquet
from workers.provenance import code_version

log = logging.getLogger(__name__)

#: Bumped when the architectures or the training recipe change, so that old
#: cache entries stop matching instead of being read as if they were new.
TEACHER_RECIPE = 1
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
    from workers.student import amplitude_model  # noqa: PLC0415 (the students' torch modules, for this kind only)

    return amplitude_model(QNN_QUBITS, "hea", QNN_LAYERS, n_classes, shape)


#: Per recipe, the architectures and how each is built from (classes, image shape); an
#: ensemble missing here is assembled from trained members (eq. 16) instead of trained as
#: one model. A new teacher is one entry here and one in ``workers.config.TEACHERS``.
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
    from workers.refs import resolve  # noqa: PLC0415

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
    from workers.refs import resolve, source_hash  # noqa: PLC0415

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
    from workers.refs import RefError, last_line  # noqa: PLC0415

    call = f"{ref}(n_classes={n_classes}, image_shape={tuple(shape)})"
    try:
        build = _builder(ref, "default")
    except RefError as exc:
        raise ConfigError("teacher", str(exc)) from None
    try:
        model = build(n_classes, tuple(shape))
    except Exception as exc:  # noqa: BLE001 - the user's callable: whatever it raises, in one line
        raise ConfigError("teacher", f"{call} raised {last_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError("teacher", f"{call} returned {type(model).__name__}, not a torch.nn.Module")
    batch = torch.zeros(2, *shape)
    for mode in ("eval", "train"):
        try:
            with torch.no_grad():
                out = getattr(model, mode)()(batch)
        except Exception as exc:  # noqa: BLE001 - the user's forward
            raise ConfigError("teacher", f"{ref}'s model fails on a batch of 2 images {'x'.join(map(str, shape))} "
                              f"({mode} mode): {last_line(exc)}") from None  # fmt: skip
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError("teacher", f"{ref}'s model gives {got} on a batch of 2 images "
                              f"{'x'.join(map(str, shape))} ({mode} mode), not (2, {n_classes}): "
                              "one score per class")  # fmt: skip
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("teacher", f"{ref}'s model has no trainable parameters")
    return model_source(ref)


@dataclass(frozen=True)
class TeacherLogits:
    """A teacher's logits over the class-filtered splits (rows in the Dataset's order)."""

    arch: str
    key: dict
    key_hash: str
    train_logits: np.ndarray
    test_logits: np.ndarray
    test_acc: float
    cached: bool
    path: Location
    train_seconds: float
    #: The best test accuracy over the training epochs and its epoch (NaN / 0 when
    #: the recipe scores no epoch): selection on the test split, reported as the
    #: notebooks printed it.
    best_test_acc: float = float("nan")
    best_epoch: int = 0
    n_params: int = 0

    def row(self, dataset: Dataset, classes: str) -> dict:
        """This teacher as a row of ``teachers.parquet`` (``classes`` as the user wrote them)."""
        return {
            "teacher_key": self.key_hash,
            "dataset": dataset.name,
            "classes": classes,
            "teacher": self.arch,
            "teacher_seed": int(self.key["seed"]),
            "test_acc": self.test_acc,
            "n_test": len(dataset.test),
            "n_train": len(dataset.train),
            "train_seconds": self.train_seconds,
            "recipe": self.key.get("recipe_name", "default"),
            "keep": self.key.get("keep", "last"),
            "best_test_acc": self.best_test_acc,
            "best_epoch": self.best_epoch,
            "n_params": self.n_params,
            "settings": json.dumps(self.key, sort_keys=True),
            "code_version": code_version(),
        }

    def for_split(self, dataset_split: Split, sample: Split, which: str) -> torch.Tensor:
        """The logits of ``sample`` (a subset of ``dataset_split``), looked up by source index."""
        table = self.train_logits if which == "train" else self.test_logits
        rows = np.searchsorted(dataset_split.index, sample.index).clip(max=len(dataset_split.index) - 1)
        if not np.array_equal(dataset_split.index[rows], sample.index):
            raise ValueError("student samples are not a subset of the teacher's split")
        return torch.as_tensor(table[rows])


def teacher_key(dataset: Dataset, arch: str, settings: TeacherSettings) -> tuple[dict, str]:
    """The cache key and its hash: everything that decides the teacher's weights."""
    if not trained_as_one(arch, settings.recipe):
        members = {m: teacher_key(dataset, m, settings)[1] for m in members_of(arch)}
        key = {"dataset": dataset.name, "classes": list(dataset.classes), "arch": arch,
               "seed": settings.seed, "members": members, "recipe": TEACHER_RECIPE}  # fmt: skip
    else:
        key = {
            "dataset": dataset.name,
            "classes": list(dataset.classes),
            "arch": arch,
            "seed": settings.seed,
            "epochs": settings.resolved_epochs(dataset.name, arch),
            "lr": settings.resolved_lr(arch),
            "batch_size": settings.batch_size,
            "optimizer": settings.resolved_optimizer(arch),
            "normalization": "train-split mean/std",
            "train_samples": len(dataset.train),
            "recipe": TEACHER_RECIPE,
        }
    if arch in MODEL_VERSION:  # a kind whose architecture has settings of its own
        key["model"] = MODEL_VERSION[arch]
    if source := model_source(arch):  # the user's model (or a package's): its code is part of the key
        key["source"] = source
    if ":" in dataset.name:  # the user's dataset: its arrays are
        key["data"] = user_dataset(dataset.name)[2]
    if settings.recipe != "default":  # default keys stay as they were, so old caches still match
        norm = "train-split mean/std" if settings.normalize else "none (pixels in [0, 1])"
        key |= {"recipe_name": settings.recipe, "keep": settings.keep, "normalization": norm}
    elif settings.keep != "last":
        key["keep"] = settings.keep
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return key, digest


def cache_folder(cache_dir: str | Path | Location, dataset: Dataset, arch: str, settings: TeacherSettings) -> Location:
    _, digest = teacher_key(dataset, arch, settings)
    classes = "-".join(str(c) for c in dataset.classes)
    where = location(cache_dir) / "teachers" / _path_name(dataset.name) / classes
    return where / f"{_path_name(arch)}-seed{settings.seed}-{digest}"


def _path_name(name: str) -> str:
    """A name as one folder name: a reference's ':' and anything unusual become '_' (the
    key's hash tells two apart); a built-in name as it is."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _logits_schema(classes: tuple[int, ...]) -> pa.Schema:
    return pa.schema(
        [("split", pa.string()), ("index", pa.int64()), ("label", pa.int64())]
        + [(f"logit_{c}", pa.float32()) for c in classes]
    )


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, batch: int = 512) -> np.ndarray:
    model.eval()
    dev = next(model.parameters()).device
    out = [model(images[i : i + batch].to(dev)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()


@dataclass
class Training:
    """A trained teacher: the kept weights, and each epoch's test accuracy when scored."""

    model: nn.Module
    test_accs: list[float]
    #: Seconds earlier processes spent on this training before it was resumed here.
    earlier_seconds: float = 0.0
    #: The epoch a checkpoint resumed this training from (0: trained from scratch here).
    resumed_from: int = 0

    @property
    def best(self) -> tuple[float, int]:
        """The best test accuracy and its (1-based, first) epoch; (NaN, 0) when none was scored."""
        if not self.test_accs:
            return float("nan"), 0
        i = int(np.argmax(self.test_accs))
        return self.test_accs[i], i + 1


#: A cache entry's checkpoint file, present only while its teacher is being trained.
CHECKPOINT = "checkpoint.pt"
#: Bumped when what a checkpoint holds changes, so an old one is discarded, not misread.
CHECKPOINT_FORMAT = 1


def _rng_states(dev: torch.device, gen: torch.Generator) -> dict:
    """Every random state a teacher's training draws from or could: torch's (dropout), the
    batch order's generator, CUDA's when training there, and numpy's and Python's."""
    import random  # noqa: PLC0415

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "order": gen.get_state(),
        "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
        "numpy": {"kind": kind, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }  # fmt: skip


def _set_rng_states(states: dict, dev: torch.device, gen: torch.Generator) -> None:
    import random  # noqa: PLC0415

    torch.set_rng_state(states["torch"])
    gen.set_state(states["order"])
    if dev.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], dev)
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def _save_checkpoint(path: Location, state: dict) -> None:
    """The state after an epoch, written whole (temporary name, rename) or not at all."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Location, digest: str, epochs: int) -> dict | None:
    """A checkpoint of this teacher (its cache key's hash) to resume from; None when there
    is none, and None with one warning line (the file removed) when it is damaged, belongs
    to another key or says something impossible: training then starts over."""
    if not path.exists():
        return None
    try:
        import io  # noqa: PLC0415

        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("it is not a teacher checkpoint of this version")
        if state.get("key_hash") != digest:
            raise ValueError(f"it belongs to teacher key {state.get('key_hash')!r}, not {digest!r}")
        if not 1 <= int(state["epoch"]) <= epochs or len(state["test_accs"]) not in (0, int(state["epoch"])):
            raise ValueError(f"its epoch {state.get('epoch')!r} does not fit {epochs} epochs")
        for name in ("model", "optimizer", "rng", "seconds", "best_state"):
            state[name]  # noqa: B018 (a missing part is a damaged file)
        return state
    except Exception as exc:  # noqa: BLE001 (anything unreadable is discarded, and training starts over)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        warnings.warn(f"teacher checkpoint {path} is damaged ({reason}); discarding it and training from epoch 0",
                      stacklevel=2)  # fmt: skip
        with contextlib.suppress(OSError):
            path.delete()
        return None


def train_teacher(
    dataset: Dataset,
    arch: str,
    settings: TeacherSettings,
    progress: Callable[[str], None] | None = None,
    checkpoint: Location | None = None,
    key_hash: str = "",
) -> Training:
    """Adam on the whole class-filtered training split, seeded.

    The ``paper-code`` recipe (or ``keep: best_test``) scores the test split after
    every epoch, as the notebooks did; ``keep`` says which epoch's weights come back.
    ``progress`` gets one line per epoch (loss, test accuracy when scored, time, ETA).

    With ``checkpoint`` (a path in the teacher's cache entry), the state after each
    epoch is written there (weights, optimizer, every random state, the scored epochs
    and the best one's weights), and a training that finds one resumes after its epoch:
    the result is bit-identical to an uninterrupted run on the same number of threads.
    """
    t0 = time.perf_counter()
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    dev = torch.device("cpu") if teacher_kind(arch).quantum else _device()  # the statevector runs where it was built
    model = make_model(arch, len(dataset.classes), settings.recipe, _shape(dataset)).to(dev)
    fused = {"fused": True} if settings.resolved_optimizer(arch) == "adam-fused" else {}  # else the per-tensor loop
    opt = torch.optim.Adam(model.parameters(), lr=settings.resolved_lr(arch), **fused)
    x, y = dataset.train.images, dataset.train.labels
    epochs = settings.resolved_epochs(dataset.name, arch)
    score = settings.recipe == "paper-code" or settings.keep == "best_test"
    accs: list[float] = []
    best_state: dict | None = None
    start, before = 0, 0.0
    state = _load_checkpoint(checkpoint, key_hash, epochs) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        _set_rng_states(state["rng"], dev, gen)
        start, before, accs = int(state["epoch"]), float(state["seconds"]), list(state["test_accs"])
        best_state = state["best_state"] or None
        line = f"resuming {arch} from epoch {start}/{epochs}"
        log.info("teacher %s", line)
        if progress is not None:
            progress(line)
        del state
    for epoch in range(start, epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), settings.batch_size):
            rows = order[i : i + settings.batch_size]
            loss = F.cross_entropy(model(x[rows].to(dev)), y[rows].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        if score:
            accs.append(_accuracy(_predict(model, dataset.test.images), dataset.test.labels))
            if settings.keep == "best_test" and accs[-1] == max(accs):
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        spent = time.perf_counter() - t0
        if checkpoint is not None and epoch + 1 < epochs:  # the last epoch's state is the entry itself
            _save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "key_hash": key_hash, "arch": arch, "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "rng": _rng_states(dev, gen), "test_accs": accs,
                "best_state": best_state or {}, "seconds": before + spent, "threads": torch.get_num_threads(),
            })  # fmt: skip
        done_here = epoch + 1 - start  # the ETA counts from where this process started
        line = (f"epoch {epoch + 1}/{epochs} loss {total / len(y):.4f}"
                + (f" test acc {accs[-1]:.4f}" if score else "")
                + f" ({before + spent:.0f}s, ETA {spent / done_here * (epochs - epoch - 1):.0f}s)")  # fmt: skip
        log.info("teacher %s %s", arch, line)
        if progress is not None:
            progress(line)
    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    return Training(model.eval(), accs, before, start)


def _write_logits(folder: Location, dataset: Dataset, train: np.ndarray, test: np.ndarray) -> None:
    n_tr, n_te = len(dataset.train), len(dataset.test)
    cols = {
        "split": ["train"] * n_tr + ["test"] * n_te,
        "index": np.concatenate([dataset.train.index, dataset.test.index]).astype(np.int64),
        # The original class label, as in the logit_<class> column names.
        "label": np.asarray(dataset.classes)[
            np.concatenate([dataset.train.labels.numpy(), dataset.test.labels.numpy()])
        ],
    }
    both = np.concatenate([train, test]).astype(np.float32)
    for j, c in enumerate(dataset.classes):
        cols[f"logit_{c}"] = both[:, j]
    write_parquet(pa.table(cols, schema=_logits_schema(dataset.classes)), folder / "logits.parquet")


def _read_logits(folder: Location, dataset: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached logits, or None (with a warning) when the file fails its checks."""
    path = folder / "logits.parquet"
    if not path.exists():
        return None
    try:
        table = path.read_parquet()
        if table.schema.remove_metadata() != _logits_schema(dataset.classes):
            raise ValueError(f"schema {table.schema.names} is not the expected one")
        split = table.column("split").to_numpy(zero_copy_only=False)
        index = table.column("index").to_numpy()
        tr, te = split == "train", split == "test"
        if not (np.array_equal(index[tr], dataset.train.index) and np.array_equal(index[te], dataset.test.index)):
            raise ValueError("its samples are not this dataset's class-filtered splits")
        logits = np.stack([table.column(f"logit_{c}").to_numpy() for c in dataset.classes], axis=1)
        if not np.isfinite(logits).all():
            raise ValueError("it holds non-finite logits")
        return logits[tr], logits[te]
    except Exception as exc:  # noqa: BLE001 (anything unreadable is rebuilt)
        warnings.warn(f"teacher cache {path} failed its check ({exc}); rebuilding it", stacklevel=2)
        return None


def _read_meta(path: Location, digest: str) -> dict | None:
    """An entry's meta.json, or None: missing, or (with a warning) unreadable, not this
    key's, or missing a field a cached teacher is read with; the entry is then rebuilt."""
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"it holds a JSON {type(meta).__name__}, not an object")
        if meta.get("hash") != digest:
            raise ValueError(f"it describes teacher key {meta.get('hash')!r}, not {digest!r}")
        for name, kind in (("train_seconds", float), ("best_test_acc", float), ("best_epoch", int), ("n_params", int)):
            if name in meta and (isinstance(meta[name], bool) or not isinstance(meta[name], int | float | None)):
                raise ValueError(f"its {name} is {meta[name]!r}, not a number")
            if name in meta and meta[name] is not None:
                kind(meta[name])
        if not isinstance(meta.get("epoch_test_accs", []), list):
            raise ValueError("its epoch_test_accs is not a list")
        return meta
    except Exception as exc:  # noqa: BLE001 (anything unreadable is rebuilt)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        warnings.warn(f"teacher cache {path} failed its check ({type(exc).__name__}: {reason}); rebuilding it",
                      stacklevel=2)  # fmt: skip
        return None


def ensemble_logits(member_logits: list[np.ndarray]) -> np.ndarray:
    """log(mean of the members' softmax) (eq. 16), as a log-sum-exp of log-softmaxes in
    float64, so that a class every member rules out by a wide margin stays finite."""
    logp = torch.stack([torch.log_softmax(torch.as_tensor(x, dtype=torch.float64), 1) for x in member_logits])
    # float32, as stored: a fresh teacher and a cached one must give a trial the same numbers.
    return (torch.logsumexp(logp, 0) - np.log(len(member_logits))).float().numpy()


def _accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


def _shape(dataset: Dataset) -> tuple[int, ...]:
    return tuple(dataset.train.images.shape[1:])


def _load_weights(folder: Location, arch: str, n_classes: int, recipe: str = "default",
                  shape: tuple[int, ...] = MNIST_SHAPE) -> nn.Module | None:  # fmt: skip
    from safetensors.torch import load_file  # noqa: PLC0415

    path = folder / "weights.safetensors"
    if not path.exists():
        return None
    try:
        from safetensors.torch import load  # noqa: PLC0415

        model = make_model(arch, n_classes, recipe, shape)
        model.load_state_dict(load(path.read_bytes()) if not path.is_local else load_file(path))
        return model.eval()
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"teacher weights {path} do not load ({exc}); retraining", stacklevel=2)
        return None


def get_teacher(
    dataset: Dataset,
    arch: str,
    settings: TeacherSettings,
    cache_dir: str | Path | Location,
    progress: Callable[[str], None] | None = None,
) -> TeacherLogits:
    """The teacher's logits, from the cache when a valid entry exists, else trained now."""
    if arch == "none" or (arch not in TEACHERS and ":" not in arch):
        raise ValueError(f"teacher: unknown teacher {arch!r}; choose one of {list(ARCHS)} or a reference")
    # The teacher sees the images as its recipe says, whatever its student sees; logits
    # are looked up by sample index, so the two need not agree.
    dataset = dataset.with_normalization(settings.normalize)
    key, digest = teacher_key(dataset, arch, settings)
    folder = cache_folder(cache_dir, dataset, arch, settings)
    meta_path = folder / "meta.json"
    meta = _read_meta(meta_path, digest)
    cached = _read_logits(folder, dataset) if meta is not None else None
    if cached is not None and meta is not None:
        tr, te = cached
        return TeacherLogits(arch, key, digest, tr, te, _accuracy(te, dataset.test.labels),
                             True, folder, float(meta.get("train_seconds", 0.0)),
                             float(meta.get("best_test_acc", math.nan)), int(meta.get("best_epoch", 0)),
                             int(meta.get("n_params", 0)))  # fmt: skip

    t0 = time.perf_counter()
    best_acc, best_epoch, test_accs = math.nan, 0, []
    if not trained_as_one(arch, settings.recipe):
        members = [get_teacher(dataset, m, settings, cache_dir, progress) for m in members_of(arch)]

        tr = ensemble_logits([m.train_logits for m in members])
        te = ensemble_logits([m.test_logits for m in members])
        train_seconds = sum(m.train_seconds for m in members)
        n_params = sum(m.n_params for m in members)
    else:
        model = _load_weights(folder, arch, len(dataset.classes), settings.recipe, _shape(dataset))
        if model is None:
            from safetensors.torch import save_file  # noqa: PLC0415

            remove_stale_temporaries(folder)  # a killed writer's half-written files, never read
            training = train_teacher(dataset, arch, settings, progress, folder / CHECKPOINT, digest)
            model, test_accs = training.model, training.test_accs
            t0 -= training.earlier_seconds  # epochs an earlier process trained count too
            (best_acc, best_epoch) = training.best
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            atomic_write(folder / "weights.safetensors", lambda tmp: save_file(state, tmp))
        elif meta is not None:  # weights kept, logits rebuilt: the epochs' scores stay
            best_acc, best_epoch = float(meta.get("best_test_acc", math.nan)), int(meta.get("best_epoch", 0))
            test_accs = list(meta.get("epoch_test_accs", []))
        tr, te = _predict(model, dataset.train.images), _predict(model, dataset.test.images)
        train_seconds = time.perf_counter() - t0
        n_params = sum(p.numel() for p in model.parameters())
    _write_logits(folder, dataset, tr, te)
    acc = _accuracy(te, dataset.test.labels)
    write_json({"key": key, "hash": digest, "test_acc": acc, "train_seconds": train_seconds,
                "best_test_acc": best_acc, "best_epoch": best_epoch, "epoch_test_accs": test_accs,
                "n_params": n_params, "torch": torch.__version__, "device": str(_device()),
                "test_samples": len(dataset.test)}, meta_path)  # fmt: skip
    if (folder / CHECKPOINT).exists():  # the entry is complete: its checkpoint has done its job
        (folder / CHECKPOINT).delete()
    return TeacherLogits(arch, key, digest, tr, te, acc, False, folder, train_seconds, best_acc, best_epoch, n_params)


def prepare_teacher(
    dataset: str,
    classes: str,
    arch: str,
    settings: TeacherSettings,
    cache_dir: str | Path | Location,
    data_root: str | None = None,
    download: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, bool]:
    """Train (or find cached) one teacher; its ``teachers.parquet`` row, and whether it was cached.

    The sweep's phase 1 runs this once per teacher the grid needs, before any
    student trial starts, so that no two trials train the same teacher.
    """
    ds = load_dataset(dataset, parse_classes(classes, n_labels(dataset)), data_root, download)
    teacher = get_teacher(ds, arch, settings, cache_dir, progress)
    return teacher.row(ds, classes), teacher.cached
