"""Short trials cheap to dispatch: several grid configs per Ray Tune trial, and epochs
reported to Tune in batches, with every row, resume and failure behaving as before."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from sweep.driver import run_sweep
from sweep.spec import load_spec, parse_spec
from sweep.spec_errors import SpecError
from sweep.students_phase import _groups, _Reports

ray = pytest.importorskip("ray")

GROUPED = {
    "name": "grouped",
    "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2,
             "lr": [0.001, 1e300, 0.002], "seed": [0, 1]},
    "trial": {"backend": "statevector", "shots": 200, "epochs": 3, "samples_per_class": 12,
              "test_samples_per_class": 10},
    "resources": {"cpus_per_trial": 1, "max_failures": 0, "trials_per_task": 4},
}  # fmt: skip


def _write(tmp_path, spec: dict):
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump({**spec, "paths": {"results": str(tmp_path / "results")}}))
    return path


def test_configs_grouped_per_task_keep_every_row_and_a_failure_to_its_configs(tmp_path, local_ray):
    path = _write(tmp_path, GROUPED)
    summary = run_sweep(load_spec(path), num_cpus=2, progress=lambda _: None, verbose=0)
    out = tmp_path / "results" / "grouped"
    t, e = pd.read_parquet(out / "trials.parquet"), pd.read_parquet(out / "epochs.parquet")
    assert len(t) == 6 and t.config_hash.is_unique
    # 6 configs, 4 to a task: two Tune trials ran them
    assert t.tune_trial_id.nunique() == 2
    ok, bad = t[t.status == "ok"], t[t.status == "error"]
    assert len(ok) + len(bad) == 6 and set(bad.lr) == {1e300} and len(bad) >= 2
    assert all("overflow" in err for err in bad.error)
    # the config that failed says so; a config after it in its task says it was never reached
    assert sum(err.startswith("failed") for err in bad.error) == len(bad) // 2
    assert all(err.startswith("failed") or err.startswith("not reached") for err in bad.error)
    # every finished config has all of its epochs, under its own trial id
    assert set(e.trial_id) >= set(ok.trial_id)
    assert all(len(e[e.trial_id == tid]) == 3 for tid in ok.trial_id)
    assert (summary.finished, summary.failed) == (len(ok), len(bad))
    # a rerun retries the failed configs only, and adds no row
    again = run_sweep(load_spec(path), num_cpus=2, progress=lambda _: None, verbose=0)
    assert again.skipped == len(ok) and again.failed >= 2
    t2 = pd.read_parquet(out / "trials.parquet")
    assert len(t2) == 6 and t2.config_hash.is_unique
    assert set(t2[t2.status == "ok"].trial_id) == set(ok.trial_id)


def test_grouped_and_single_dispatch_give_the_same_numbers(tmp_path, local_ray):
    spec = {**GROUPED, "name": "single", "grid": {**GROUPED["grid"], "lr": [0.001]}}
    single = {**spec, "resources": {**spec["resources"], "trials_per_task": 1}}
    grouped = {**spec, "name": "many"}
    for s in (single, grouped):
        run_sweep(load_spec(_write(tmp_path, s)), num_cpus=1, progress=lambda _: None, verbose=0)
    a = pd.read_parquet(tmp_path / "results" / "single" / "trials.parquet").set_index("config_hash")
    b = pd.read_parquet(tmp_path / "results" / "many" / "trials.parquet").set_index("config_hash")
    assert sorted(a.index) == sorted(b.index)
    assert a.test_acc.sort_index().tolist() == b.test_acc.sort_index().tolist()
    assert a.tune_trial_id.nunique() == 2 and b.tune_trial_id.nunique() == 1


def test_groups_cover_every_config_in_order():
    labels = [f"c{i}" for i in range(7)]
    assert _groups(labels, 1) is None
    groups = _groups(labels, 3)
    assert [m for g in groups.values() for m in g] == labels and [len(g) for g in groups.values()] == [3, 3, 1]
    assert len(set(groups)) == 3


def test_epochs_go_to_tune_in_batches_and_the_last_stays_for_the_row():
    sent: list[dict] = []
    reports = _Reports(sent.append, every=3600.0, epochs=4)
    for epoch in range(1, 5):
        reports.epoch({"trial_id": "x", "epoch": epoch, "test_acc": epoch / 10})
    assert sent == []  # buffered: none due yet, and the last epoch goes with the row
    reports.flush()
    assert len(sent) == 1 and [r["epoch"] for r in json.loads(sent[0]["epochs_json"])] == [1, 2, 3]
    every = _Reports(sent.append, every=0.0, epochs=4)  # a study: each epoch, for its scheduler
    for epoch in range(1, 5):
        every.epoch({"epoch": epoch})
    assert [r["epoch"] for r in sent[1:]] == [1, 2, 3]


def test_trials_per_task_is_checked_at_the_edge():
    base = {"name": "x", "grid": {"dataset": "digits", "teacher": "none"}}
    with pytest.raises(SpecError, match="resources.trials_per_task: must be >= 1"):
        parse_spec({**base, "resources": {"trials_per_task": 0}})
    search = {"params": {"lr": {"low": 1e-4, "high": 1e-2}}}
    study = {**base, "trial": {"val_samples_per_class": 2}, "search": search, "resources": {"trials_per_task": 2}}
    with pytest.raises(SpecError, match="resources.trials_per_task: a study runs one config"):
        parse_spec(study)
