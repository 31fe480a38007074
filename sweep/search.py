"""Hyperparameter studies: Ray Tune's Optuna searcher over a spec's ``search:`` section.

The study lives in an Optuna RDB storage (by default a SQLite file,
``<results>/<name>/optuna.db``; any SQLAlchemy URL, such as PostgreSQL, when
``search.storage`` gives one) under the spec's name, so that it can be
resumed (running the spec again adds ``num_samples`` trials to it), inspected
with ``optuna.load_study`` and shared. TPE (or random) sampling is Optuna's; a
pruning scheduler (ASHA or the median rule) stops trials whose per-epoch
validation score trails after ``grace_period`` epochs. A trial the scheduler
stopped is told to Optuna as *pruned*, not as a completed trial with a
partial score.

The objective is a validation split held out of the training samples; the
test accuracy of each trial is recorded too, and ``best_params.json`` says
which number comes from which split.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
from ray.tune.search.optuna import OptunaSearch

from sweep.results import TRIALS, read_table
from sweep.spec import Spec
from workers.config import TrialConfig
from workers.io import write_json

if TYPE_CHECKING:
    import optuna
    import pandas as pd


def storage_url(spec: Spec) -> str:
    return spec.search.storage or f"sqlite:///{spec.results_dir / 'optuna.db'}"


def study_name(spec: Spec) -> str:
    return spec.search.study_name or spec.name


def _space(spec: Spec) -> dict[str, Any]:
    space = {}
    for p in spec.search.params:
        if p.choices is not None:
            space[p.name] = tune.choice(list(p.choices))
        elif p.integer:
            space[p.name] = (tune.lograndint if p.log else tune.randint)(int(p.low), int(p.high) + 1)
        else:
            space[p.name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    return space


def _searcher_class():
    class Searcher(OptunaSearch):
        """Tune's Optuna searcher, telling Optuna 'pruned' for a trial the scheduler stopped
        (Tune would otherwise record its last, partial score as a completed trial's).

        Each Optuna trial gets the ids of its run as user attributes, for :func:`best_row`
        to find its row of ``trials.parquet`` by: ``tune_trial_id`` (the Tune trial id,
        the row's ``tune_trial_id``) when it is drawn, and ``trial_id`` (the row's own
        ``trial_id``, from the row the trial reports last) when it completes."""

        def suggest(self, trial_id: str) -> dict | None:
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and trial_id not in self._completed_trials:
                ot_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
            return config

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if result is not None and not error and "row_json" not in result:
                result = None
            ot_trial = self._ot_trials.get(trial_id)
            if result is not None and ot_trial is not None and trial_id not in self._completed_trials:
                row_id = json.loads(result["row_json"]).get("trial_id")
                if row_id:
                    ot_trial.set_user_attr(ROW_TRIAL_ID, row_id)
            super().on_trial_complete(trial_id, result, error)

    return Searcher


def study_setup(spec: Spec, base: TrialConfig) -> tuple[dict, dict]:
    """The Tune param space and TuneConfig arguments of the study."""

    s = spec.search
    spec.results_dir.mkdir()
    sampler = (optuna.samplers.TPESampler(seed=s.seed) if s.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=s.seed))  # fmt: skip
    storage = optuna.storages.RDBStorage(storage_url(spec))
    searcher = _searcher_class()(
        metric=s.metric, mode=s.mode, sampler=sampler, study_name=study_name(spec), storage=storage
    )
    if s.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=base.epochs,
                                  grace_period=min(s.grace_period, base.epochs))  # fmt: skip
    elif s.scheduler == "median":
        scheduler = MedianStoppingRule(time_attr="training_iteration", grace_period=s.grace_period,
                                       min_samples_required=3)  # fmt: skip
    else:
        scheduler = None
    kwargs = {"metric": s.metric, "mode": s.mode, "search_alg": searcher, "num_samples": s.num_samples}
    if scheduler is not None:
        kwargs["scheduler"] = scheduler
    return _space(spec), kwargs


#: The user attributes of a study's trial naming its run (set by the searcher).
ROW_TRIAL_ID = "trial_id"
TUNE_TRIAL_ID = "tune_trial_id"


def best_row(trials: pd.DataFrame | None, best: optuna.trial.FrozenTrial) -> pd.Series | None:
    """The row of ``trials.parquet`` that the study's trial ``best`` ran as, or None.

    Joined on the id the searcher stored with the Optuna trial: the row's ``trial_id``,
    else its Tune trial id (``tune_trial_id``); never on parameter values, which two
    trials may share (a resumed study, a choice parameter) with different results.
    """
    if trials is None or trials.empty:
        return None
    for attr in (ROW_TRIAL_ID, TUNE_TRIAL_ID):
        want = best.user_attrs.get(attr)
        if want and attr in trials:
            match = trials[trials[attr] == want]
            if len(match):
                return match.iloc[-1]
    return None


def write_best(spec: Spec) -> str:
    """``best_params.json`` next to the results: the study's best trial, and the test
    accuracy of the run that produced it. Returns a line to print."""

    study = optuna.load_study(study_name=study_name(spec), storage=storage_url(spec))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return "study: no trial completed yet"
    best = study.best_trial
    row = best_row(read_table(spec.results_dir / TRIALS), best)
    test_acc = math.nan if row is None else float(row["test_acc"])
    states = {st.name.lower(): sum(t.state == st for t in study.trials) for st in optuna.trial.TrialState}
    out = {
        "study_name": study.study_name,
        "storage": storage_url(spec),
        "objective": {"metric": spec.search.metric, "mode": spec.search.mode, "split": "validation"},
        "best_trial_number": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "test_acc_of_best": test_acc,
        "test_acc_note": "test split, not seen by the search; one run at the best parameters",
        "trials": {k: v for k, v in states.items() if v},
    }
    write_json(json.loads(json.dumps(out, default=float)), spec.results_dir / "best_params.json")
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    return (f"study {study.study_name}: {len(study.trials)} trials; best {spec.search.metric} "
            f"{best.value:.4f} (validation) at {params}; its test acc {test_acc:.4f}")  # fmt: skip


def leaderboard(spec: Spec, top: int = 8) -> str:
    """The study's trials so far, best validation score first, as Markdown."""
    trials = read_table(spec.results_dir / TRIALS)
    if trials is None or trials.empty:
        return "no trials yet"
    names = [p.name for p in spec.search.params]
    cols = [*names, spec.search.metric, "test_acc", "status", "wall_s"]
    best_first = spec.search.mode == "min"
    view = trials[cols].sort_values(spec.search.metric, ascending=best_first, na_position="last").head(top)
    return (
        f"top {len(view)} of {len(trials)} trials by {spec.search.metric} (validation split; "
        f"test_acc is reported, never searched on; a pruned trial shows its last epoch):\n"
        + view.to_markdown(index=False, floatfmt=".4g")
    )
