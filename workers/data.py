"""Datasets, class subsets and the paper's splits.

* ``mnist`` and ``fashionmnist`` come through torchvision: from the standard
  raw IDX files under ``<root>/MNIST/raw`` (``<root>/FashionMNIST/raw``), read
  without network, or downloaded by torchvision for users who are online.
* ``digits`` is scikit-learn's bundled 8x8 digits (1797 images), resized to
  28x28 so that the same teachers and reductions apply. It has no official
  split; a fixed seed splits every class in half (train gets the odd one).
* ``cifar10`` (luminance, 1x32x32) and ``cifar10-rgb`` (colour, 3x32x32) come
  through torchvision's ``CIFAR10``: the python batches under
  ``<root>/cifar-10-batches-py``, each checked against its published MD5.

A damaged or partly downloaded file (truncated, compressed under its raw name, a folder
in its place) is one line naming it and what is wrong: :mod:`workers.datafiles` checks the
IDX files before torchvision parses them, and names the CIFAR10 batch that fails.

Every dataset is one entry of :data:`LOADERS` and one of ``workers.kinds.DATASETS``
(its image shape, its label, its default samples per class); the models take their
input shape from there. A package's kind carries its loader (``DatasetKind.load``); a
reference ``PKG.MODULE:CALLABLE`` in place of a name is called with no arguments and
returns the four arrays itself (:func:`user_arrays`, checked by :func:`check_arrays`).

The paper's protocol: teachers train on the whole class-filtered training split
and are scored on the whole class-filtered test split; students get N samples
per class drawn with a seed from the training split, and N per class from the
test split. Every :class:`Split` keeps each sample's index in its source split,
which is how cached teacher logits are looked up.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workers import datafiles
from workers.errors import ConfigError
from workers.io import DataError  # raised here; defined there, so that catching it imports no torch
from workers.kinds import DATASETS, DatasetKind, user_dataset
from workers.refs import RefError, resolve, user_code

IMAGE_SIZE = 28
DIGITS_SPLIT_SEED = 20231122

#: torchvision's IDX datasets: the class and its folder under the data root.
_TORCHVISION = {"mnist": "MNIST", "fashionmnist": "FashionMNIST"}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: torchvision's CIFAR10: its folder under the data root and the python batches in it.
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                "test_batch", "batches.meta")  # fmt: skip
#: ITU-R BT.601 luma weights: a colour image as one gray channel.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Split:
    """Images (float32, N x C x H x W, normalized), labels remapped to 0..C-1,
    and each sample's index in its source split."""

    images: torch.Tensor
    labels: torch.Tensor
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Split:
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        return Split(self.images[rows_t], self.labels[rows_t], self.index[rows])


@dataclass(frozen=True)
class Dataset:
    """The class-filtered train and test splits of one dataset."""

    name: str
    classes: tuple[int, ...]
    train: Split
    test: Split
    #: Whether the images are normalized by the training split's mean and std.
    normalized: bool = True
    root: str = ""
    download: bool = True

    def with_normalization(self, normalize: bool) -> Dataset:
        """The same splits, normalized or as pixels in [0, 1] (a teacher's recipe may differ
        from its student's); the raw files are read once per process either way."""
        if normalize == self.normalized:
            return self
        return load_dataset(self.name, self.classes, self.root, self.download, normalize=normalize)


def default_data_root() -> str:
    return os.environ.get("QKD_DATA_ROOT", "data")


@functools.lru_cache(maxsize=4)
def _raw(name: str, root: str, download: bool) -> tuple[np.ndarray, ...]:
    """All images (floats in [0, 1], N x H x W or N x C x H x W) and labels of both splits."""
    if name in LOADERS:
        return LOADERS[name](root, download)
    if name in DATASETS and DATASETS[name].load is not None:  # a package's kind
        with user_code(DataError, f"dataset: {name}'s loader raised "):
            value = resolve(DATASETS[name].load)(root, download)
        try:
            return check_arrays(value, f"{name}'s loader")
        except ConfigError as exc:
            raise DataError(str(exc)) from None
    if ":" in name:
        return user_dataset(name)[1]
    raise DataError(f"dataset: unknown dataset {name!r}")


def _fetch(name: str, folder: Path, files: tuple[str, ...], download: bool, get: Callable[[], object]) -> None:
    """Make sure ``files`` are in ``folder``: present, or fetched by ``get`` (torchvision's
    download) when ``download`` allows; else one line naming the folder and the files."""
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and download:
        try:
            get()
        except Exception as exc:  # noqa: BLE001 (any network failure reads the same to a user)
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"data_root: {name} files {missing} are missing under {folder} "
                f"and the download failed ({reason}); copy the files there "
                "or pass --data-root to where they are"
            ) from None
        missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"data_root: {name} files {missing} are missing under {folder} "
            "(offline: copy the files there, or pass --data-root; online: allow download)"
        )


def _idx(name: str):
    """The loader of one of torchvision's IDX datasets (MNIST, FashionMNIST)."""

    def load(root: str, download: bool) -> tuple[np.ndarray, ...]:
        import torchvision  # noqa: PLC0415 (slow import, only for the real datasets)

        cls = getattr(torchvision.datasets, _TORCHVISION[name])
        folder = Path(root) / _TORCHVISION[name] / "raw"
        datafiles.check_places(folder, IDX_FILES)
        _fetch(name, folder, IDX_FILES, download,
               lambda: (cls(root, train=True, download=True), cls(root, train=False, download=True)))  # fmt: skip
        for images, labels in (IDX_FILES[:2], IDX_FILES[2:]):  # before torchvision parses them
            datafiles.check_idx_split(folder / images, folder / labels, DATASETS[name].shape[1:])
        out = []
        for train in (True, False):
            ds = cls(root, train=train, download=False)
            out.append(ds.data.numpy().astype(np.float32) / 255.0)
            out.append(ds.targets.numpy().astype(np.int64))
        return tuple(out)

    return load


def _cifar10(colour: bool):
    """The loader of CIFAR10 from its python batches (torchvision ``CIFAR10``, which checks
    each file's MD5), in colour (3 x 32 x 32) or as luminance (1 x 32 x 32)."""

    def load(root: str, download: bool) -> tuple[np.ndarray, ...]:
        import torchvision  # noqa: PLC0415 (slow import, only for the real datasets)

        cls = torchvision.datasets.CIFAR10
        folder = Path(root) / _CIFAR_FOLDER
        datafiles.check_places(folder, _CIFAR_FILES)
        _fetch("cifar10", folder, _CIFAR_FILES, download, lambda: cls(root, train=True, download=True))
        out = []
        for train in (True, False):
            pixels, labels = datafiles.read_cifar(cls, root, train, folder)  # a damaged batch: one line
            x = np.asarray(pixels, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0  # N x 3 x 32 x 32
            if not colour:
                x = np.tensordot(np.asarray(LUMA, dtype=np.float32), x, axes=([0], [1]))  # N x 32 x 32
            out.append(np.ascontiguousarray(x))
            out.append(labels)
        return tuple(out)

    return load


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 x 8 x 8 floats 0..16, labels): the CSV it bundles, read
    as ``load_digits`` reads it but without importing scikit-learn (1.9 s on the dev VM,
    paid by every worker's first digits trial, against 0.03 s for the file); through
    ``load_digits`` where that file is not where scikit-learn keeps it."""

    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits  # noqa: PLC0415

        bunch = load_digits()
        return bunch.images, bunch.target.astype(np.int64)
    with gzip.open(csv, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _raw_digits(root: str = "", download: bool = False) -> tuple[np.ndarray, ...]:
    digits, labels = digits_arrays()
    small = torch.as_tensor(digits / 16.0, dtype=torch.float32).unsqueeze(1)
    big = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = big.squeeze(1).clamp(0, 1).numpy()
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    train_rows, test_rows = [], []
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        half = (len(rows) + 1) // 2
        train_rows.append(rows[:half])
        test_rows.append(rows[half:])
    tr, te = np.sort(np.concatenate(train_rows)), np.sort(np.concatenate(test_rows))
    return images[tr], labels[tr], images[te], labels[te]


#: Dataset -> loader(data root, download) of its raw arrays: train images, train labels,
#: test images, test labels (images as floats in [0, 1], N x H x W or N x C x H x W, the
#: shape ``workers.kinds.DATASETS`` gives it; labels 0..9). A new dataset is one entry
#: here and one in ``workers.kinds.DATASETS`` (:func:`register_dataset` makes both).
LOADERS: dict[str, Callable[[str, bool], tuple[np.ndarray, ...]]] = {
    "mnist": _idx("mnist"),
    "fashionmnist": _idx("fashionmnist"),
    "digits": _raw_digits,
    "cifar10": _cifar10(colour=False),
    "cifar10-rgb": _cifar10(colour=True),
}
assert all(k in LOADERS or DATASETS[k].load is not None for k in DATASETS), "every dataset kind needs a loader"

#: The four arrays a dataset gives, in order (named in messages).
ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
#: Student samples per class of a user's dataset by default, at most (as for MNIST).
USER_SAMPLES_PER_CLASS = 150


def check_arrays(value: object, what: str) -> tuple[np.ndarray, ...]:
    """``value`` as the four arrays of :data:`LOADERS`' contract (images float32 N x C x H x W,
    labels int64), or a ConfigError naming ``dataset`` and ``what`` gave it, in one line:
    not four arrays, images that are not N x C x H x W (or N x H x W) floats or not finite,
    labels that are not a vector of non-negative integers, images and labels of different
    lengths, train and test images of different shapes."""
    if not isinstance(value, tuple | list) or len(value) != 4:
        got = f"{len(value)} values" if isinstance(value, tuple | list) else type(value).__name__
        raise ConfigError("dataset", f"{what} returned {got}, not ({', '.join(ARRAY_NAMES)})")
    out = []
    for name, x in zip(ARRAY_NAMES, value, strict=True):
        try:
            a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
        except Exception:  # noqa: BLE001 - whatever the user returned
            raise ConfigError("dataset", f"{what}'s {name} is {type(x).__name__}, not an array or tensor") from None
        if name.endswith("images"):
            if a.ndim not in (3, 4) or not np.issubdtype(a.dtype, np.floating):
                kind = f"{a.dtype} of shape {tuple(a.shape)}"
                raise ConfigError("dataset", f"{what}'s {name} are {kind}, not floats N x C x H x W")
            a = a[:, None] if a.ndim == 3 else a
            if not np.isfinite(a).all():
                raise ConfigError("dataset", f"{what}'s {name} hold non-finite values")
            a = np.ascontiguousarray(a, dtype=np.float32)
        else:
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
                raise ConfigError("dataset", f"{what}'s {name} are {a.dtype} of shape {tuple(a.shape)}, "
                                  "not a vector of integer labels")  # fmt: skip
            if len(a) and a.min() < 0:
                raise ConfigError("dataset", f"{what}'s {name} hold a negative label ({int(a.min())})")
            a = a.astype(np.int64)
        out.append(a)
    for split, (x, y) in (("train", out[:2]), ("test", out[2:])):
        if len(x) != len(y):
            raise ConfigError("dataset", f"{what}'s {split}_images hold {len(x)} images but {split}_labels "
                              f"{len(y)} labels")  # fmt: skip
        if not len(x):
            raise ConfigError("dataset", f"{what}'s {split} split is empty")
    if out[0].shape[1:] != out[2].shape[1:]:
        raise ConfigError("dataset", f"{what}'s train images are {'x'.join(map(str, out[0].shape[1:]))} "
                          f"but its test images {'x'.join(map(str, out[2].shape[1:]))} (C x H x W)")  # fmt: skip
    return tuple(out)


def user_arrays(ref: str) -> tuple[DatasetKind, tuple[np.ndarray, ...], str]:
    """The dataset reference ``ref`` names (a callable of no arguments returning the four
    arrays), called and checked: its kind (shape, labels, label ``ref``), its arrays, and a
    hash of their bytes. Every failure is a ConfigError naming ``dataset`` and ``ref``."""

    try:
        fn = resolve(ref)
    except RefError as exc:
        raise ConfigError("dataset", str(exc)) from None
    with user_code(lambda m: ConfigError("dataset", m), f"{ref}() raised "):
        value = fn()
    raw = check_arrays(value, ref)
    n_classes = int(max(raw[1].max(), raw[3].max())) + 1
    both = set(raw[1].tolist()) & set(raw[3].tolist())
    fewest = min(int(min(np.count_nonzero(raw[1] == c), np.count_nonzero(raw[3] == c))) for c in both) if both else 1
    kind = DatasetKind(ref, ref, tuple(int(d) for d in raw[0].shape[1:]), min(USER_SAMPLES_PER_CLASS, fewest),
                       "the user's dataset", n_classes=n_classes)  # fmt: skip
    digest = hashlib.sha256()
    for a in raw:
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return kind, raw, digest.hexdigest()[:12]


def register_dataset(kind: DatasetKind, loader: Callable[[str, bool], tuple[np.ndarray, ...]]) -> DatasetKind:
    """Add a dataset: its description (validation, defaults, tables) and its loader."""
    LOADERS[kind.name] = loader
    return DATASETS.add(kind)


def load_dataset(
    name: str, classes: tuple[int, ...], data_root: str | None = None, download: bool = True, normalize: bool = True
) -> Dataset:
    """The class-filtered train and test splits, normalized with the training split's statistics
    (or, with ``normalize`` off, as pixels in [0, 1], as the paper's notebooks read them).

    A process keeps the last few it made (their tensors are never written to), so that
    the trials of a sweep that one worker runs one after another load and normalize
    their data once, not once each.
    """
    root = str(Path(data_root or default_data_root()).expanduser())
    raw = _raw(name, root, download)
    key = (name, tuple(classes), root, download, normalize)
    kept = _LOADED.get(key)
    if kept is not None and kept[0] is raw:  # made from these very arrays (a cleared _raw reloads)
        return kept[1]
    dataset = _load(raw, name, tuple(classes), root, download, normalize)
    _LOADED.pop(key, None)
    _LOADED[key] = (raw, dataset)
    while len(_LOADED) > 8:
        _LOADED.pop(next(iter(_LOADED)))
    return dataset


#: load_dataset's recent results, by their arguments, with the raw arrays they came from.
_LOADED: dict[tuple, tuple[tuple[np.ndarray, ...], Dataset]] = {}
_STATS: dict[int, tuple[np.ndarray, float, float]] = {}


def _train_stats(xtr: np.ndarray) -> tuple[float, float]:
    kept = _STATS.get(id(xtr))
    if kept is None or kept[0] is not xtr:
        if len(_STATS) >= 4:
            _STATS.clear()
        kept = _STATS[id(xtr)] = (xtr, float(xtr.mean()), float(xtr.std()))
    return kept[1], kept[2]


def _load(raw, name: str, classes: tuple[int, ...], root: str, download: bool, normalize: bool) -> Dataset:
    xtr, ytr, xte, yte = raw
    mean, std = _train_stats(xtr) if normalize else (0.0, 1.0)
    remap = np.full(max(10, int(max(ytr.max(), yte.max())) + 1), -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        rows = np.flatnonzero(np.isin(y, classes))
        images = torch.as_tensor((x[rows] - mean) / std, dtype=torch.float32)
        if images.ndim == 3:  # one channel
            images = images.unsqueeze(1)
        return Split(images, torch.as_tensor(remap[y[rows]]), rows)

    return Dataset(name, tuple(classes), split(xtr, ytr), split(xte, yte), normalize, root, download)


def per_class_sample(
    split: Split,
    per_class: int,
    seed: int,
    *,
    take_available: bool = False,
    what: str = "train",
    classes: tuple[int, ...] | None = None,
    selection: str = "random",
) -> Split:
    """``per_class`` samples of every class, drawn without replacement by ``seed``
    (``selection="random"``), or the first ``per_class`` of each class in the split's
    own order (``"first"``, the paper's notebooks; ``seed`` is then unused).

    A class with fewer samples than asked is an error naming the class and the
    count, unless ``take_available`` says to take what there is.
    """
    rng = np.random.default_rng(seed)
    labels = split.labels.numpy()
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < per_class and not take_available:
            option = "samples_per_class" if what == "train" else f"{what}_samples_per_class"
            name = classes[c] if classes else c
            raise DataError(
                f"{option}: class {name} has only {len(rows)} {what} samples, {per_class} "
                "requested; lower it or pass --take-available"
            )
        k = min(per_class, len(rows))
        chosen.append(rows[:k] if selection == "first" else rng.choice(rows, size=k, replace=False))
    return split.take(np.sort(np.concatenate(chosen)))


def student_splits(
    dataset: Dataset,
    per_class: int,
    test_per_class: int,
    seed: int,
    take_available: bool = False,
    selection: str = "random",
) -> tuple[Split, Split]:
    """The student's training and test samples, both drawn with the trial's data seed
    (or the first N per class of each split, with ``selection="first"``)."""
    ss = np.random.SeedSequence([seed, 0xDA7A])
    s_train, s_test = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    kw = {"take_available": take_available, "classes": dataset.classes, "selection": selection}
    train = per_class_sample(dataset.train, per_class, s_train, **kw)
    test = per_class_sample(dataset.test, test_per_class, s_test, what="test", **kw)
    return train, test


def validation_split(
    dataset: Dataset, train: Split, per_class: int, seed: int, take_available: bool = False, selection: str = "random"
) -> Split:
    """``per_class`` held-out samples per class from the training split, disjoint from ``train``.

    A hyperparameter study scores its trials on these, so that the test split
    stays untouched by the search. They are drawn after the student's training
    samples, so asking for a validation split leaves the training samples (and
    every paired comparison built on them) as they were.
    """
    rest = np.flatnonzero(~np.isin(dataset.train.index, train.index))
    pool = dataset.train.take(rest)
    s_val = int(np.random.SeedSequence([seed, 0x7A1]).generate_state(1)[0])
    return per_class_sample(pool, per_class, s_val, take_available=take_available, what="val",
                            classes=dataset.classes, selection=selection)  # fmt: skip
