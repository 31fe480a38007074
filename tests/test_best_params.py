"""``best_params.json`` finds the best trial's row by its id, not by its parameter values (issue 15, item 12)."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from sweep.results import TRIALS, append_rows
from sweep.search import _searcher_class, _space, best_row, storage_url, study_name, write_best
from sweep.spec import parse_spec

PARAMS = {"temperature": 3.0, "lam": 0.5}
DISTRIBUTIONS = {
    "temperature": optuna.distributions.FloatDistribution(1.0, 8.0, log=True),
    "lam": optuna.distributions.FloatDistribution(0.0, 1.0),
}


def frozen(value: float, **user_attrs) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(params=PARAMS, distributions=DISTRIBUTIONS, value=value, user_attrs=user_attrs)


def rows() -> list[dict]:
    """Two runs at the same parameter values with different results; the better one first."""
    return [
        {"trial_id": "aaaa", "tune_trial_id": "t_00000", "status": "ok", "val_acc": 0.8, "test_acc": 0.9, **PARAMS},
        {"trial_id": "bbbb", "tune_trial_id": "t_00001", "status": "ok", "val_acc": 0.6, "test_acc": 0.1, **PARAMS},
    ]


def test_best_row_joins_on_the_row_trial_id():
    trials = pd.DataFrame(rows())
    row = best_row(trials, frozen(0.8, trial_id="aaaa", tune_trial_id="t_00000"))
    assert row["trial_id"] == "aaaa" and row["test_acc"] == 0.9  # value matching took the last: bbbb, 0.1
    assert best_row(trials, frozen(0.6, trial_id="bbbb"))["test_acc"] == 0.1


def test_best_row_falls_back_on_the_tune_trial_id():
    trials = pd.DataFrame(rows())
    assert best_row(trials, frozen(0.8, tune_trial_id="t_00000"))["trial_id"] == "aaaa"
    assert best_row(trials, frozen(0.8, trial_id="gone", tune_trial_id="t_00000"))["trial_id"] == "aaaa"


def test_best_row_never_guesses_from_values():
    trials = pd.DataFrame(rows())
    assert best_row(trials, frozen(0.8)) is None  # no id: no row, even though the values match both
    assert best_row(trials, frozen(0.8, trial_id="elsewhere")) is None
    assert best_row(None, frozen(0.8, trial_id="aaaa")) is None
    assert best_row(trials.iloc[0:0], frozen(0.8, trial_id="aaaa")) is None


def study_spec(tmp_path):
    raw = {
        "name": "ids",
        "grid": {"dataset": "digits", "classes": "0-5", "teacher": "lenet", "qubits": 3, "seed": 0},
        "trial": {"backend": "statevector", "epochs": 1, "samples_per_class": 4, "val_samples_per_class": 2},
        "search": {
            "num_samples": 2,
            "params": {"temperature": {"low": 1.0, "high": 8.0, "log": True}, "lam": {"low": 0.0, "high": 1.0}},
        },
        "paths": {"results": str(tmp_path / "results")},
    }
    return parse_spec(raw, source=str(tmp_path / "spec.yaml"))


def test_write_best_reports_the_test_acc_of_the_best_run(tmp_path):
    spec = study_spec(tmp_path)
    spec.results_dir.mkdir()
    study = optuna.create_study(study_name=study_name(spec), storage=storage_url(spec), direction="maximize")
    for r in rows():
        study.add_trial(frozen(r["val_acc"], trial_id=r["trial_id"], tune_trial_id=r["tune_trial_id"]))
    append_rows(spec.results_dir / TRIALS, rows(), key="trial_id")

    line = write_best(spec)

    best = json.loads((tmp_path / "results" / "ids" / "best_params.json").read_text())
    assert best["best_trial_number"] == 0 and best["best_value"] == 0.8 and best["best_params"] == PARAMS
    assert best["test_acc_of_best"] == 0.9  # the run that scored 0.8, not its twin at the same values
    assert line.endswith("its test acc 0.9000")


def test_searcher_stores_both_ids_with_the_optuna_trial(tmp_path):
    pytest.importorskip("ray")
    spec = study_spec(tmp_path)
    spec.results_dir.mkdir()
    storage = optuna.storages.RDBStorage(storage_url(spec))
    searcher = _searcher_class()(
        space=_space(spec), metric="val_acc", mode="max", study_name=study_name(spec), storage=storage
    )
    assert searcher.suggest("run_00000") is not None
    assert searcher.suggest("run_00001") is not None
    row = {"trial_id": "cafe0123", "status": "ok"}
    searcher.on_trial_complete("run_00000", {"val_acc": 0.7, "row_json": json.dumps(row)})
    searcher.on_trial_complete("run_00001", {"val_acc": 0.2})  # stopped by the scheduler: no row yet

    done, pruned = optuna.load_study(study_name=study_name(spec), storage=storage_url(spec)).trials
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value == 0.7
    assert done.user_attrs == {"tune_trial_id": "run_00000", "trial_id": "cafe0123"}
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert pruned.user_attrs == {"tune_trial_id": "run_00001"}
