"""A teacher's training: Adam on the whole class-filtered training split, seeded, and
resumable after any epoch (:mod:`workers.teachers.checkpoint`).

The ``paper-code`` recipe is the released notebooks': pixels in [0, 1] (no
normalization), Adam at lr 1e-3 for 10 epochs, batch 128, the test split scored
after every epoch (its models: :mod:`workers.teachers.models`). The notebooks print
the best test epoch's accuracy but save (by reference) and distil from the last
epoch's weights: the recipe keeps the last epoch (``keep: best_test`` keeps the best
one instead) and a teacher row reports both accuracies; ``best_test_acc`` is
selection on the test split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.data import Dataset
from workers.io import Location
from workers.kinds import teacher_kind
from workers.teacher_settings import TeacherSettings
from workers.teachers.checkpoint import (
    CHECKPOINT_FORMAT,
    _load_checkpoint,
    _rng_states,
    _save_checkpoint,
    _set_rng_states,
)
from workers.teachers.models import make_model

log = logging.getLogger(__name__)


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


def _accuracy(logits: np.ndarray, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels.numpy()).mean())


def _shape(dataset: Dataset) -> tuple[int, ...]:
    return tuple(dataset.train.images.shape[1:])


def train_teacher(
    dataset: Dataset,
    arch: str,
    settings: TeacherSettings,
    progress: Callable[[str], None] | None = None,
    checkpoint: Location | None = None,
    key_hash: str = "",
    checkpoint_every_s: float = 0.0,
) -> Training:
    """Adam on the whole class-filtered training split, seeded.

    The ``paper-code`` recipe (or ``keep: best_test``) scores the test split after
    every epoch, as the notebooks did; ``keep`` says which epoch's weights come back.
    ``progress`` gets one line per epoch (loss, test accuracy when scored, time, ETA).

    With ``checkpoint`` (a path in the teacher's cache entry), the state after each
    epoch is written there (weights, optimizer, every random state, the scored epochs
    and the best one's weights), and a training that finds one resumes after its epoch:
    the result is bit-identical to an uninterrupted run on the same number of threads.
    ``checkpoint_every_s`` > 0 skips the checkpoint of an epoch that ends less than that
    long after the last one written (or the start): an AlexNet's is 1.1 GB (weights and
    Adam's two moments, 5 s to write on the dev VM), more than a 9-second epoch on the
    digits is worth; 0 writes one after every epoch.
    """
    t0 = time.perf_counter()
    saved_at = t0
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
        due = time.perf_counter() - saved_at >= checkpoint_every_s
        if checkpoint is not None and epoch + 1 < epochs and due:  # the last epoch's state is the entry itself
            _save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "key_hash": key_hash, "arch": arch, "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "rng": _rng_states(dev, gen), "test_accs": accs,
                "best_state": best_state or {}, "seconds": before + spent, "threads": torch.get_num_threads(),
            })  # fmt: skip
            saved_at = time.perf_counter()
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
