"""The teacher phase's task (:func:`prepare_teacher`): a teacher named as a sweep's config
names it (dataset and classes as text), so that a Ray worker of :mod:`sweep.teachers_phase`
loads the data itself and sends back a ``teachers.parquet`` row, not the logits; a trial
that runs alone gets its teacher from :func:`workers.teachers.logits.get_teacher` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workers.data import load_dataset
from workers.io import Location
from workers.kinds import n_labels, parse_classes
from workers.teacher_settings import TeacherSettings
from workers.teachers.logits import get_teacher


def prepare_teacher(
    dataset: str,
    classes: str,
    arch: str,
    settings: TeacherSettings,
    cache_dir: str | Path | Location,
    data_root: str | None = None,
    download: bool = True,
    progress: Callable[[str], None] | None = None,
    checkpoint_every_s: float = 0.0,
) -> tuple[dict, bool]:
    """Train (or find cached) one teacher; its ``teachers.parquet`` row, and whether it was cached.

    The sweep's phase 1 runs this once per teacher the grid needs, before any
    student trial starts, so that no two trials train the same teacher.
    """
    ds = load_dataset(dataset, parse_classes(classes, n_labels(dataset)), data_root, download)
    teacher = get_teacher(ds, arch, settings, cache_dir, progress, checkpoint_every_s)
    return teacher.row(ds, classes), teacher.cached
