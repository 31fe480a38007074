"""A spec's ``search:`` section: the hyperparameter study it turns the spec into.

A spec with ``search:`` is not a grid but one cell of it searched by Ray Tune's Optuna
searcher with a pruning scheduler (run by :mod:`sweep.search`). The section is read and
checked here, once, with the same one-line errors as the rest of the spec
(:class:`~sweep.spec_fields.Reader`): each searched field is a range (a number's, on a log
scale if asked) or a list of choices; the objective is a validation metric, never the test
split's; the grid holds one value per axis, and no field is both searched and fixed.

Layout::

    search:
      params: {lam: {low: 0.0, high: 1.0}, lr: {low: 0.0003, high: 0.03, log: true},
               teacher: {choices: [lenet, alexnet]}}
      num_samples: 12             # trials in the study
      metric: val_acc             # or val_loss, train_loss
      sampler: tpe                # or random
      seed: 0
      scheduler: asha             # or median, none
      grace_period: 2             # epochs before the scheduler may stop a trial
      storage: null               # SQLAlchemy URL; null: sqlite:///<results dir>/optuna.db
      study_name: null
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from sweep.spec_fields import TRIAL_FIELDS, Reader

SEARCH_METRICS = {"val_acc": "max", "val_loss": "min", "train_loss": "min"}
SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "median", "none")


@dataclass(frozen=True)
class SearchParam:
    """One searched field: a float or int range (``log`` for a log scale), or ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None


@dataclass(frozen=True)
class SearchSpec:
    """A hyperparameter study: Ray Tune's Optuna searcher plus a pruning scheduler.

    The objective is measured on a validation split held out of the training
    samples (``trial.val_samples_per_class``), never on the test split: a
    study tuned on the test split reports a biased number.
    """

    params: tuple[SearchParam, ...]
    num_samples: int = 12
    metric: str = "val_acc"
    sampler: str = "tpe"
    seed: int | None = 0
    scheduler: str = "asha"
    #: Epochs every trial runs before the scheduler may stop it.
    grace_period: int = 2
    #: SQLAlchemy URL of the Optuna storage; None: sqlite:///<results dir>/optuna.db.
    storage: str | None = None
    study_name: str | None = None

    @property
    def mode(self) -> str:
        return SEARCH_METRICS[self.metric]


def parse_search(r: Reader, raw: Any, grids: tuple[dict, ...], trial: dict, results_root: str) -> SearchSpec:
    """The ``search:`` section as a :class:`SearchSpec`, checked against the grid (one cell)
    and the trial settings it searches beside."""
    fields = {f.name for f in dataclasses.fields(SearchSpec)}
    raw = r.mapping(raw, "search", fields)
    if "params" not in raw or not raw["params"]:
        r.fail("search.params", "missing; name the fields to search, e.g. lam: {low: 0.1, high: 1.0}")
    params_raw = r.mapping(raw["params"], "search.params", TRIAL_FIELDS)
    params = []
    for name, p in params_raw.items():
        where = f"search.params.{name}"
        p = r.mapping(p, where, ("low", "high", "log", "choices"))
        tp = TRIAL_FIELDS[name]
        base = next(a for a in (typing.get_args(tp) or (tp,)) if a is not type(None))
        if "choices" in p:
            if set(p) != {"choices"} or not isinstance(p["choices"], list) or len(p["choices"]) < 2:
                r.fail(where, "give either choices: [a, b, ...] (two or more) or low/high")
            choices = tuple(r.trial_value(name, v, f"{where}.choices[{i}]") for i, v in enumerate(p["choices"]))
            params.append(SearchParam(name, choices=choices))
            continue
        if base not in (int, float):
            r.fail(where, f"{name} is not numeric; search it with choices: [...]")
        if "low" not in p or "high" not in p:
            r.fail(where, "needs low and high (or choices)")
        low = r.typed(p["low"], base, f"{where}.low")
        high = r.typed(p["high"], base, f"{where}.high")
        log = r.typed(p.get("log", False), bool, f"{where}.log")
        if not low < high:
            r.fail(where, f"low ({low!r}) must be below high ({high!r})")
        if log and low <= 0:
            r.fail(f"{where}.low", f"a log scale needs low > 0, got {low!r}")
        params.append(SearchParam(name, low, high, log, integer=base is int))

    def opt(key: str, tp: Any, default: Any) -> Any:
        return r.typed(raw[key], tp, f"search.{key}") if key in raw else default

    s = SearchSpec(
        params=tuple(params),
        num_samples=opt("num_samples", int, 12),
        metric=opt("metric", str, "val_acc"),
        sampler=opt("sampler", str, "tpe"),
        seed=opt("seed", int | None, 0),
        scheduler=opt("scheduler", str, "asha"),
        grace_period=opt("grace_period", int, 2),
        storage=opt("storage", str | None, None),
        study_name=opt("study_name", str | None, None),
    )
    if s.storage is None and "://" in str(results_root):
        r.fail("search.storage", "the default SQLite study file needs a local results root; give a SQLAlchemy URL")
    if s.num_samples < 1:
        r.fail("search.num_samples", f"must be >= 1, got {s.num_samples!r}")
    if s.grace_period < 1:
        r.fail("search.grace_period", f"must be >= 1, got {s.grace_period!r}")
    if s.metric not in SEARCH_METRICS:
        why = "; tuning on the test split biases the reported number" if s.metric.startswith("test") else ""
        r.fail("search.metric", f"{s.metric!r}: choose one of {list(SEARCH_METRICS)}{why}")
    if s.sampler not in SAMPLERS:
        r.fail("search.sampler", f"unknown sampler {s.sampler!r}; choose one of {list(SAMPLERS)}")
    if s.scheduler not in SCHEDULERS:
        r.fail("search.scheduler", f"unknown scheduler {s.scheduler!r}; choose one of {list(SCHEDULERS)}")
    if s.metric.startswith("val") and not trial.get("val_samples_per_class"):
        r.fail("trial.val_samples_per_class", f"a study on {s.metric} needs a validation split; set it >= 1")
    if len(grids) > 1:
        r.fail("subgrids", "a study searches one cell; drop subgrids (run one spec per cell)")

    for key, values in grids[0].items():
        if len(values) > 1:
            r.fail(f"grid.{key}", f"{len(values)} values; a study searches one cell, give one value per axis")
        if any(p.name == key for p in params):
            r.fail(f"search.params.{key}", "also an axis under 'grid'; give it in one place")
    for p in params:
        if p.name in trial:
            r.fail(f"search.params.{p.name}", "also fixed under 'trial'; give it in one place")
    return s
