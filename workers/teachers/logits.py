"""A teacher's logits, all a student trial needs of it: read from the teacher's cache entry
when that is valid; else assembled from its members' (an ensemble), or computed by the
teacher's saved weights or by the teacher trained now, and written into the entry.

An ensemble that is not one model (``workers.kinds.trained_as_one``) is the mean of its
members' softmax outputs (eq. 16; its members are ``workers.kinds.TEACHERS[name].members``,
LeNet and AlexNet for ``ensemble``), each member a teacher cached under its own key; its
distillation logits are the log of that mean (:func:`ensemble_logits`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workers.data import Dataset, Split
from workers.io import Location, remove_stale_temporaries, write_json
from workers.kinds import TEACHERS, members_of, trained_as_one
from workers.provenance import code_version
from workers.teacher_settings import TeacherSettings
from workers.teachers.cache import (
    _load_weights,
    _read_logits,
    _read_meta,
    _save_weights,
    _write_logits,
    cache_folder,
    teacher_key,
)
from workers.teachers.checkpoint import CHECKPOINT
from workers.teachers.models import ARCHS
from workers.teachers.train import _accuracy, _device, _predict, _shape, train_teacher


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


def ensemble_logits(member_logits: list[np.ndarray]) -> np.ndarray:
    """log(mean of the members' softmax) (eq. 16), as a log-sum-exp of log-softmaxes in
    float64, so that a class every member rules out by a wide margin stays finite."""
    logp = torch.stack([torch.log_softmax(torch.as_tensor(x, dtype=torch.float64), 1) for x in member_logits])
    # float32, as stored: a fresh teacher and a cached one must give a trial the same numbers.
    return (torch.logsumexp(logp, 0) - np.log(len(member_logits))).float().numpy()


def get_teacher(
    dataset: Dataset,
    arch: str,
    settings: TeacherSettings,
    cache_dir: str | Path | Location,
    progress: Callable[[str], None] | None = None,
    checkpoint_every_s: float = 0.0,
) -> TeacherLogits:
    """The teacher's logits, from the cache when a valid entry exists, else trained now
    (checkpointed as :func:`workers.teachers.train.train_teacher` says)."""
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
        members = [get_teacher(dataset, m, settings, cache_dir, progress, checkpoint_every_s) for m in members_of(arch)]

        tr = ensemble_logits([m.train_logits for m in members])
        te = ensemble_logits([m.test_logits for m in members])
        train_seconds = sum(m.train_seconds for m in members)
        n_params = sum(m.n_params for m in members)
    else:
        model = _load_weights(folder, arch, len(dataset.classes), settings.recipe, _shape(dataset))
        if model is None:
            remove_stale_temporaries(folder)  # a killed writer's half-written files, never read
            training = train_teacher(dataset, arch, settings, progress, folder / CHECKPOINT, digest, checkpoint_every_s)
            model, test_accs = training.model, training.test_accs
            t0 -= training.earlier_seconds  # epochs an earlier process trained count too
            (best_acc, best_epoch) = training.best
            _save_weights(folder, model)
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
