"""How a teacher is trained: its settings, their choices, and the per-teacher values they
may hold.

A sweep trains each teacher once and caches it under a key read off these settings
(:func:`workers.teachers.cache.teacher_key`), so every value here is resolved for one
architecture before it is keyed: a number or a choice may be a default and per-teacher
values, ``10,alexnet=5`` (:func:`parse_per_teacher`), so that one spec trains its AlexNet
differently while its LeNet keeps the key it was cached under. Validation
(:meth:`workers.config.TrialConfig.validate`) parses them once, with no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.errors import ConfigError
from workers.kinds import TEACHERS

#: Teacher training recipes (workers.teachers): ``default`` is this project's (ReLU
#: LeNet, AlexNet at lr 1e-4, a few epochs, inputs normalized, last epoch kept);
#: ``paper-code`` is the released notebooks' (classic tanh / avg-pool LeNet-5, both at
#: lr 1e-3 for 10 epochs, pixels in [0, 1], the epoch with the best test accuracy kept).
TEACHER_RECIPES = ("default", "paper-code")
#: Which epoch of a teacher's training is kept: its last (what the notebooks saved and
#: distilled from), or the one with the best accuracy on the test split (what they printed).
TEACHER_KEEPS = ("last", "best_test")

#: How a teacher's Adam steps run: torch's per-tensor loop (``adam``, what every cached
#: teacher so far was trained with), or its fused kernel (``adam-fused``: the same update,
#: rounded differently; an AlexNet step on CPU 2.1 s -> 1.5 s on the dev VM, the update
#: itself 0.65 s -> 0.09 s, docs/performance.md). Part of the cache key.
TEACHER_OPTIMIZERS = ("adam", "adam-fused")


def parse_per_teacher(field: str, text: object, value: Callable[[str], Any], what: str) -> tuple[Any, dict[str, Any]]:
    """A default and per-architecture values, ``DEFAULT,ARCH=VALUE,...`` (either part may be
    left out): the value for every teacher, and the ones that differ by name. ``value``
    parses one value, raising ValueError; ``what`` says what a value is, for the one line."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, f"unknown value {text!r}; {what}")
    default, by_arch = None, {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        arch, eq, raw = part.rpartition("=")
        if eq and arch not in TEACHERS and ":" not in arch:
            raise ConfigError(field, f"{part!r} names no teacher; choose from {list(TEACHERS)}")
        if not eq and i > 0:
            raise ConfigError(field, f"{part!r}: after the default, give ARCH=VALUE; {what}")
        try:
            parsed = value(raw.strip())
        except (TypeError, ValueError):
            raise ConfigError(field, f"unknown value {raw!r}; {what} (or ARCH=VALUE after the default)") from None
        if eq:
            by_arch[arch] = parsed
        else:
            default = parsed
    return default, by_arch


def _optimizer_value(text: str) -> str:
    if text not in TEACHER_OPTIMIZERS:
        raise ValueError(text)
    return text


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        v = kind(text)
        if not (v > 0) or (kind is float and not math.isfinite(v)):
            raise ValueError(text)
        return v

    return parse


def parse_optimizer(text: object) -> tuple[str, dict[str, str]]:
    """``adam``, or a default and per-architecture choices, ``adam,alexnet=adam-fused``: the
    optimizer for every teacher, and the ones that differ by name (so that a spec's AlexNet
    takes the fused kernel while its LeNet keeps the key it was cached under)."""
    default, by_arch = parse_per_teacher("teacher_optimizer", text, _optimizer_value,
                                         f"choose one of {list(TEACHER_OPTIMIZERS)}")  # fmt: skip
    return default or "adam", by_arch


def parse_teacher_number(field: str, value: object, kind: type) -> tuple[Any, dict[str, Any]]:
    """A teacher's ``epochs`` or ``lr``: ``None`` (the recipe's default), a number, or a
    default and per-architecture numbers, ``"10,alexnet=5"`` (:func:`parse_per_teacher`)."""
    if value is None:
        return None, {}
    if isinstance(value, str):
        return parse_per_teacher(field, value, _positive(kind), f"a number > 0{' (whole)' if kind is int else ''}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"must be a number or DEFAULT,ARCH=VALUE, got {value!r}")
    return value, {}


@dataclass(frozen=True)
class TeacherSettings:
    """How a teacher is trained; hashed into its cache key.

    ``epochs`` of ``None`` means the per-dataset default (enough optimizer steps
    for the tiny ``digits`` set, a few passes over MNIST-sized sets).
    """

    #: A number, or a default and per-architecture values, ``"10,alexnet=5"``
    #: (:func:`parse_teacher_number`); ``None``: the recipe's default.
    epochs: int | str | None = None
    lr: float | str | None = None
    batch_size: int = 128
    seed: int = 0
    recipe: str = "default"
    #: Which epoch's weights are kept. The notebooks print their best test epoch but
    #: save the last one (a state_dict kept by reference), and distil from that: so
    #: both recipes keep ``last`` unless told ``best_test``; a paper-code teacher's row
    #: reports both accuracies.
    keep: str = "last"
    #: One of :data:`TEACHER_OPTIMIZERS`, or a default and per-architecture choices
    #: (``adam,alexnet=adam-fused``; :func:`parse_optimizer`).
    optimizer: str = "adam"

    def resolved_optimizer(self, arch: str) -> str:
        """The optimizer ``arch`` is trained with (what its cache key records)."""
        default, by_arch = parse_optimizer(self.optimizer)
        return by_arch.get(arch, default)

    @property
    def resolved_keep(self) -> str:
        return self.keep

    @property
    def normalize(self) -> bool:
        """Whether the teacher sees images normalized by the training split's mean and std."""
        return self.recipe != "paper-code"

    def resolved_epochs(self, dataset: str, arch: str) -> int:
        default, by_arch = parse_teacher_number("teacher_epochs", self.epochs, int)
        if arch in by_arch:
            return by_arch[arch]
        if default is not None:
            return default
        if self.recipe == "paper-code":
            return 10
        if dataset == "digits":  # ~540 images: many passes for enough steps
            return 40 if arch == "lenet" else 20
        return 5 if arch == "lenet" else 3

    def resolved_lr(self, arch: str) -> float:
        default, by_arch = parse_teacher_number("teacher_lr", self.lr, float)
        if arch in by_arch:
            return by_arch[arch]
        if default is not None:
            return default
        if self.recipe == "paper-code":
            return 1e-3
        # AlexNet's two 4096-wide layers are unstable at LeNet's rate.
        return 1e-4 if arch == "alexnet" else 1e-3
