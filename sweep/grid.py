"""Grid expansion: a spec's axes -> the student trials and the teachers they need.

The Cartesian product of each grid (the union over subgrids), with the paper's
structure kept:

* a baseline (``teacher: none``) does not depend on T or λ, so it is run once
  per dataset x classes x qubits x seed (x the other settings), not once per
  T x λ: trials are deduplicated on :meth:`TrialConfig.config_hash`, which
  ignores T and λ where they have no effect;
* a combination that cannot run (3 qubits for 10 classes) is dropped with a
  message; a value that cannot run in *any* combination (qubits: [2] for the
  6 classes of 0-5, a negative temperature, an unknown teacher) is an error
  naming the field, since it is a mistake in the spec, not a corner of it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from dataclasses import dataclass, field

from sweep.spec import Spec
from sweep.spec_errors import SpecError
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.kinds import members_of, n_labels, parse_classes, trained_as_one
from workers.teacher_settings import TeacherSettings


@dataclass(frozen=True)
class TeacherJob:
    """One teacher to train and cache in phase 1 (the ensemble after its members)."""

    dataset: str
    classes: str
    arch: str
    settings: TeacherSettings

    @property
    def label(self) -> str:
        return f"{self.arch} on {self.dataset} {self.classes} (seed {self.settings.seed})"

    @property
    def key(self) -> tuple:
        """What identifies the teacher: the parsed class labels, so that ``0-5`` and
        ``0,1,2,3,4,5`` are the same teacher (as they are in the teacher cache)."""
        return self.key_for(self.arch)

    def key_for(self, arch: str) -> tuple:
        """The key of the teacher ``arch`` on this job's dataset, classes and settings
        (an ensemble's members: ``key_for("lenet")``, ``key_for("alexnet")``)."""
        return (self.dataset, parse_classes(self.classes, n_labels(self.dataset)), arch, self.settings)


@dataclass
class Grid:
    trials: list[TrialConfig]
    #: One line per dropped combination (or group of them), to print.
    dropped: list[str] = field(default_factory=list)
    n_combinations: int = 0
    n_duplicates: int = 0

    def teacher_jobs(self, trials: list[TrialConfig] | None = None) -> list[TeacherJob]:
        """The teachers ``trials`` (default: all) need, members before ensembles, each once.

        An ensemble's members are trained (and cached) as jobs of their own, so
        that two ensembles, or an ensemble and a LeNet trial, share them.
        """
        jobs: dict[tuple, TeacherJob] = {}
        for cfg in trials if trials is not None else self.trials:
            if cfg.teacher == "none":
                continue
            assembled = not trained_as_one(cfg.teacher, cfg.teacher_settings.recipe)
            archs = [*members_of(cfg.teacher), cfg.teacher] if assembled else [cfg.teacher]
            for arch in archs:
                job = TeacherJob(cfg.dataset, cfg.classes, arch, cfg.teacher_settings)
                jobs.setdefault(job.key, job)
        return sorted(jobs.values(), key=lambda j: (bool(members_of(j.arch)), j.dataset, j.key[1], j.arch))


def trial_config(spec: Spec, values: dict) -> TrialConfig:
    """The TrialConfig of one grid point: fixed settings, then the point's axis values."""
    return TrialConfig(
        **{**spec.trial, **values},
        teacher_settings=spec.teacher,
        data_root=spec.data_root,
        download=spec.download,
        cache_dir=spec.cache_dir,
    )


def _where(spec: Spec, name: str) -> str:
    """A TrialConfig field name as the spec spells its place."""
    if name.startswith("teacher_") and name != "teacher":
        return f"teacher.{name.removeprefix('teacher_')}"
    if name in spec.axes:
        return f"grid.{name}"
    return f"trial.{name}" if name in spec.trial else name


def expand(spec: Spec) -> Grid:
    """Every runnable, distinct trial of ``spec``; SpecError for a value that never runs."""
    trials: dict[str, TrialConfig] = {}
    combos = 0
    runnable: Counter = Counter()  # (axis, value) -> runnable combinations
    first_error: dict[tuple, ConfigError] = {}
    dropped: Counter = Counter()
    for grid in spec.grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            combos += 1
            point = dict(zip(keys, values, strict=True))
            marks = [(k, repr(v)) for k, v in point.items()]
            try:
                cfg = trial_config(spec, point).validate()
            except ConfigError as exc:
                for m in marks:
                    first_error.setdefault(m, exc)
                dropped[str(exc)] += 1
                continue
            for m in marks:
                runnable[m] += 1
            trials.setdefault(cfg.config_hash(), cfg)

    for grid in spec.grids:
        for key, values in grid.items():
            for v in values:
                if runnable[(key, repr(v))] == 0:
                    exc = first_error[(key, repr(v))]
                    raise SpecError(_where(spec, exc.field), _message(exc), spec.source)
    if spec.search is not None:
        _check_search_bounds(spec, next(iter(trials.values())))
    lines = [f"dropped {n} combination{'s' * (n > 1)}: {msg}" for msg, n in dropped.items()]
    return Grid(list(trials.values()), lines, combos, combos - sum(dropped.values()) - len(trials))


def _message(exc: ConfigError) -> str:
    return str(exc).removeprefix(f"{exc.field}: ")


def _check_search_bounds(spec: Spec, base: TrialConfig) -> None:
    """Every value a study may draw must make a runnable trial: try the ends of each range."""
    for p in spec.search.params:
        cases = [("choices", v) for v in p.choices] if p.choices is not None else [("low", p.low), ("high", p.high)]
        for end, value in cases:
            try:
                dataclasses.replace(base, **{p.name: value}).validate()
            except ConfigError as exc:
                raise SpecError(f"search.params.{p.name}.{end}", _message(exc), spec.source) from None
    if base.teacher == "none" and any(p.name in ("temperature", "lam", "kd_form") for p in spec.search.params):
        raise SpecError("search.params", "T, lam and kd_form do nothing for teacher none", spec.source)
