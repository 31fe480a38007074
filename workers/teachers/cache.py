"""The teacher cache: the key that decides a teacher's weights, its entry's folder, and the
files in that entry, each checked when it is read.

Layout, one folder per key (dataset, classes, arch, teacher seed, hash of the training
settings)::

    <cache_dir>/teachers/<dataset>/<classes>/<arch>-seed<seed>-<hash>/
        weights.safetensors   (not for ensemble: it is its members)
        logits.parquet        one row per sample of the class-filtered train
                              and test splits: split, index, label, logit_<class>
        meta.json             the key, test accuracy, training time, versions
        checkpoint.pt         only while the teacher trains (workers.teachers.checkpoint)

A teacher that is not built in keys on its code too: the reference's source hash
(``source``, :func:`workers.teachers.models.model_source`), so that an edited model is a
new teacher, and, for a user's dataset, a hash of its arrays (``data``).

Logits cover the whole class-filtered splits, so any student sample, whatever its seed,
finds its teacher's logits by its index in the source split. A file that fails its check
reads as missing, with a warning, and is rebuilt (:func:`workers.teachers.logits.get_teacher`:
logits from the saved weights when they load); every file is written to a temporary name
and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from safetensors.torch import load, load_file, save_file
from torch import nn

from workers.data import Dataset
from workers.io import Location, atomic_write, location, write_parquet
from workers.kinds import members_of, trained_as_one, user_dataset
from workers.teacher_settings import TeacherSettings
from workers.teachers.models import MNIST_SHAPE, MODEL_VERSION, make_model, model_source

#: Bumped when the architectures or the training recipe change, so that old
#: cache entries stop matching instead of being read as if they were new.
TEACHER_RECIPE = 1


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


def _load_weights(folder: Location, arch: str, n_classes: int, recipe: str = "default",
                  shape: tuple[int, ...] = MNIST_SHAPE) -> nn.Module | None:  # fmt: skip
    path = folder / "weights.safetensors"
    if not path.exists():
        return None
    try:
        model = make_model(arch, n_classes, recipe, shape)
        model.load_state_dict(load(path.read_bytes()) if not path.is_local else load_file(path))
        return model.eval()
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"teacher weights {path} do not load ({exc}); retraining", stacklevel=2)
        return None


def _save_weights(folder: Location, model: nn.Module) -> None:
    """A trained model's weights into its entry (safetensors), written whole or not at all."""

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / "weights.safetensors", lambda tmp: save_file(state, tmp))
