"""MLflow tracking of a sweep: one MLflow run per trial, its metrics per epoch, a local store."""

from __future__ import annotations

import pytest
import yaml

from sweep.driver import run_sweep
from sweep.spec import load_spec, parse_spec
from sweep.spec_errors import SpecError

ray = pytest.importorskip("ray")
mlflow = pytest.importorskip("mlflow")


def test_each_trial_is_an_mlflow_run_with_its_metrics_per_epoch(tmp_path, local_ray):
    db = tmp_path / "mlflow.db"
    spec = {
        "name": "tracked",
        "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "seed": [0, 1]},
        "trial": {"backend": "statevector", "epochs": 3, "samples_per_class": 12, "test_samples_per_class": 10},
        "paths": {"results": str(tmp_path / "results")},
        "tracking": {"mlflow": f"sqlite:///{db}", "experiment": "qkd-test"},
    }
    path = tmp_path / "tracked.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = run_sweep(load_spec(path), num_cpus=2, progress=lambda _: None, verbose=0)
    assert summary.finished == 2
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("qkd-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "test_acc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
        assert all(0.0 <= m.value <= 1.0 for m in history)
        assert "trial" in run.data.params  # the Tune config, as parameters
    rows = __import__("pandas").read_parquet(tmp_path / "results" / "tracked" / "trials.parquet")
    last = {round(r.test_acc, 12) for r in rows.itertuples()}
    logged = {round(client.get_metric_history(r.info.run_id, "test_acc")[-1].value, 12) for r in runs}
    assert last == logged  # the same numbers as the result rows


def test_tracking_section_is_checked_at_the_edge():
    base = {"name": "x", "grid": {"dataset": "digits", "teacher": "none"}}
    with pytest.raises(SpecError, match="tracking.wandb: unknown key"):
        parse_spec({**base, "tracking": {"wandb": "x"}})
    with pytest.raises(SpecError, match="tracking.mlflow: expected"):
        parse_spec({**base, "tracking": {"mlflow": 3}})
    assert parse_spec({**base, "tracking": {"mlflow": "sqlite:///m.db"}}).tracking.mlflow == "sqlite:///m.db"


def test_mlflow_missing_is_one_line_naming_the_field(monkeypatch):
    import sys

    from sweep.students_phase import tracking_callbacks

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    spec = parse_spec({"name": "x", "grid": {"dataset": "digits", "teacher": "none"},
                       "tracking": {"mlflow": "sqlite:///m.db"}})  # fmt: skip
    with pytest.raises(SpecError, match=r"^tracking.mlflow: needs MLflow: pip install"):
        tracking_callbacks(spec)
    assert tracking_callbacks(parse_spec({"name": "y", "grid": {"dataset": "digits"}})) == []


def test_an_epoch_reported_early_and_again_with_the_row_is_logged_once(tmp_path):
    """A slow trial's first epochs reach Tune early; its last report carries every epoch again
    (for its result row): MLflow gets each step once, and the next config of the same Tune
    trial (trials_per_task > 1) starts from step 1 again."""
    import json

    from sweep.students_phase import tracking_callbacks

    spec = parse_spec({"name": "x", "grid": {"dataset": "digits", "teacher": "none"},
                       "tracking": {"mlflow": f"sqlite:///{tmp_path / 'm.db'}"}})  # fmt: skip
    (callback,) = tracking_callbacks(spec)
    steps = []

    class Util:
        def log_metrics(self, run_id, metrics_to_log, step):
            steps.append((run_id, step, metrics_to_log["test_acc"]))

    callback.mlflow_util, callback._trial_runs = Util(), {"t": "run-1"}
    epochs = [{"epoch": e, "test_acc": e / 10} for e in (1, 2, 3)]
    callback.log_trial_result(1, "t", {**epochs[0], "epochs_json": json.dumps(epochs[:1])})
    callback.log_trial_result(2, "t", {**epochs[2], "epochs_json": json.dumps(epochs), "row_json": "{}"})
    callback.log_trial_result(3, "t", {**epochs[2], "epochs_json": json.dumps(epochs), "row_json": "{}"})
    assert steps == [("run-1", 1, 0.1), ("run-1", 2, 0.2), ("run-1", 3, 0.3)] * 2
