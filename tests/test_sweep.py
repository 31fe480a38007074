"""The sweep driver end to end, on a local Ray bound to 127.0.0.1: both phases, the
result files, resuming, --fresh, and an Optuna study that a rerun extends."""

from __future__ import annotations

import ipaddress
import json

import optuna
import pandas as pd
import psutil
import pytest
import yaml

from sweep.cli import main
from sweep.driver import run_sweep
from sweep.grid import expand
from sweep.spec import load_spec

ray = pytest.importorskip("ray")

TINY = {
    "name": "tiny",
    "grid": {
        "dataset": "digits",
        "classes": "0-3",
        "teacher": ["none", "lenet", "ensemble"],
        "qubits": 2,
        "temperature": [2, 4],
        "lam": 0.9,
        "seed": [0, 1],
    },
    "trial": {"backend": "statevector", "epochs": 2, "samples_per_class": 12, "test_samples_per_class": 10},
    "teacher": {"epochs": 1},
    "resources": {"cpus_per_trial": 1, "max_failures": 1},
}


def write_spec(tmp_path, spec: dict, name: str = "spec.yaml"):
    spec = {**spec, "paths": {"results": str(tmp_path / "results"), **spec.get("paths", {})}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def quiet(_line: str) -> None:
    pass


def test_grid_sweep_writes_every_row_once_and_resumes(tmp_path, local_ray):
    path = write_spec(tmp_path, TINY)
    spec = load_spec(path)
    expected = {c.config_hash() for c in expand(spec).trials}
    assert len(expected) == 2 + 2 * 2 * 2  # baselines do not vary T

    first = run_sweep(spec, num_cpus=2, progress=quiet, verbose=0)
    assert (first.planned, first.skipped, first.finished, first.failed) == (10, 0, 10, 0)
    assert first.teachers == 3  # lenet, alexnet (an ensemble member) and the ensemble, once each

    out = tmp_path / "results" / "tiny"
    trials = pd.read_parquet(out / "trials.parquet")
    epochs = pd.read_parquet(out / "epochs.parquet")
    teachers = pd.read_parquet(out / "teachers.parquet")
    assert set(trials.config_hash) == expected and trials.config_hash.is_unique
    # TensorBoard event files (tensorboardX, an install dependency), one per trial, under tune/
    assert len(list((out / "tune").rglob("events.out.tfevents.*"))) == 10
    assert (trials.status == "ok").all() and trials.test_acc.between(0, 1).all()
    assert (trials.spec_name == "tiny").all() and trials.node_id.str.len().gt(0).all()
    # Every trial has its epochs, under its own trial_id, and nothing else is there.
    assert len(epochs) == 10 * 2 and set(epochs.trial_id) == set(trials.trial_id)
    assert all(sorted(e) == [1, 2] for _, e in epochs.groupby("trial_id").epoch)
    assert sorted(teachers.teacher) == ["alexnet", "ensemble", "lenet"] and teachers.teacher_key.is_unique
    distilled = trials[trials.teacher != "none"]
    assert set(distilled.teacher_key) <= set(teachers.teacher_key)
    # The query the README promises: one groupby.
    acc = trials.groupby(["teacher", "qubits"]).test_acc.mean()
    assert set(acc.index.get_level_values("teacher")) == {"none", "lenet", "ensemble"}

    second = run_sweep(load_spec(path), num_cpus=2, progress=quiet, verbose=0)
    assert (second.skipped, second.finished) == (10, 0)
    again = pd.read_parquet(out / "trials.parquet")
    pd.testing.assert_frame_equal(again, trials)  # nothing rerun, nothing duplicated

    # A row recorded as an error is run again; the finished ones are not.
    broken = trials.copy()
    broken.loc[0, "status"] = "error"
    broken.to_parquet(out / "trials.parquet")
    third = run_sweep(load_spec(path), num_cpus=2, progress=quiet, verbose=0)
    assert (third.skipped, third.finished) == (9, 1)
    after = pd.read_parquet(out / "trials.parquet")
    assert len(after) == 10 and after.config_hash.is_unique and (after.status == "ok").all()
    assert after.loc[after.config_hash == trials.config_hash[0], "trial_id"].item() != trials.trial_id[0]
    assert set(after.trial_id) - {after.trial_id[after.config_hash == trials.config_hash[0]].item()} == set(
        trials.trial_id[1:]
    )
    ep = pd.read_parquet(out / "epochs.parquet")
    assert len(ep) == 20 and set(ep.trial_id) == set(after.trial_id)  # the old run's epochs went with it


def test_fresh_reruns_everything_and_cli_prints_tables(tmp_path, local_ray, capsys):
    spec = dict(TINY, grid={**TINY["grid"], "teacher": ["none", "lenet"], "temperature": 3, "seed": [0]})
    path = write_spec(tmp_path, spec)
    assert main(["sweep", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 trials planned, 0 already finished" in out
    # one status line per finished trial: done / total, what, how, running, left and an ETA
    status = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in status] == ["[1/2", "[2/2"], status
    assert all(": ok, test_acc " in line and "ETA " in line for line in status)
    assert "left 0, ETA 0:00:00" in status[-1]
    assert "| Student" in out and "Teacher: LeNet, Student: Quantum, 2 qubit" in out and "Digits 0-3" in out
    results = tmp_path / "results" / "tiny"
    for name in ("tables.md", "tables.tex", "tables.csv", "figures/loss_curves.png", "figures/accuracy_bars.png"):
        assert (results / name).stat().st_size > 0
    ids = set(pd.read_parquet(results / "trials.parquet").trial_id)

    assert main(["sweep", str(path), "--quiet", "--no-tables"]) == 0
    assert "2 already finished (not rerun), 0 finished now" in capsys.readouterr().out

    assert main(["sweep", str(path), "--quiet", "--no-tables", "--fresh"]) == 0
    rows = pd.read_parquet(results / "trials.parquet")
    assert len(rows) == 2 and not set(rows.trial_id) & ids
    # The teachers stayed cached across --fresh: the shared cache is not a spec's result.
    assert rows.loc[rows.teacher == "lenet", "teacher_cached"].item()


def test_study_is_stored_loadable_and_extended_by_a_rerun(tmp_path, local_ray):
    spec = {
        "name": "study",
        "grid": {"dataset": "digits", "classes": "0-3", "teacher": "lenet", "qubits": 2, "seed": 0},
        "trial": {
            "backend": "statevector",
            "epochs": 3,
            "samples_per_class": 12,
            "val_samples_per_class": 8,
            "test_samples_per_class": 10,
        },  # fmt: skip
        "teacher": {"epochs": 1},
        "search": {
            "num_samples": 4,
            "scheduler": "asha",
            "grace_period": 1,
            "params": {
                "temperature": {"low": 1.0, "high": 8.0, "log": True},
                "lam": {"low": 0.1, "high": 1.0},
                "lr": {"low": 1e-3, "high": 3e-2, "log": True},
            },  # fmt: skip
        },
    }
    path = write_spec(tmp_path, spec)
    first = run_sweep(load_spec(path), num_cpus=2, progress=quiet, verbose=0)
    assert first.finished + first.pruned == 4 and first.failed == 0
    results = tmp_path / "results" / "study"
    storage = f"sqlite:///{results / 'optuna.db'}"
    study = optuna.load_study(study_name="study", storage=storage)
    assert len(study.trials) == 4
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(0 <= t.value <= 1 for t in complete)
    assert all(1.0 <= t.params["temperature"] <= 8.0 and 0.1 <= t.params["lam"] <= 1.0 for t in study.trials)

    best = json.loads((results / "best_params.json").read_text())
    assert best["objective"] == {"metric": "val_acc", "mode": "max", "split": "validation"}
    assert best["best_value"] == study.best_value and best["best_params"] == study.best_params
    trials = pd.read_parquet(results / "trials.parquet")
    assert len(trials) == 4 and trials.trial_id.is_unique
    assert set(trials.status) <= {"ok", "pruned"}
    assert (trials.loc[trials.status == "ok", "n_val"] == 4 * 8).all()
    # Each stored trial ran with the values Optuna drew for it.
    for t in complete:
        match = trials[(trials.temperature == t.params["temperature"]) & (trials.lr == t.params["lr"])]
        assert len(match) == 1 and match.val_acc.item() == pytest.approx(t.value)

    run_sweep(load_spec(path), num_cpus=2, progress=quiet, verbose=0)
    study = optuna.load_study(study_name="study", storage=storage)
    assert len(study.trials) == 8  # the rerun added its trials to the same study
    assert len(pd.read_parquet(results / "trials.parquet")) == 8


def _sweep_cli(path, *args, timeout=180):
    """``qkd-sweep sweep`` in its own process: a hang fails the test instead of stalling it."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).with_name("qkd-sweep")
    return subprocess.run([str(cli), "sweep", str(path), *args], capture_output=True, text=True, timeout=timeout)


def test_a_task_larger_than_every_node_is_one_line_not_a_hang(tmp_path):

    # Ray would hold a 4-CPU teacher task on a 2-CPU Ray forever; the sweep says so instead.
    spec = {**TINY, "resources": {"cpus_per_trial": 1, "cpus_per_teacher": 4}}
    path = write_spec(tmp_path, spec)
    proc = _sweep_cli(path, "--num-cpus", "2")
    err = [line for line in proc.stderr.splitlines() if line.startswith("qkd-sweep")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(err) == 1 and "resources.cpus_per_teacher" in err[0] and "largest node of this Ray has 2" in err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()

    # A trial larger than every node: the same, from Tune's side.
    baselines = {**spec, "grid": {**TINY["grid"], "teacher": "none"}, "resources": {"cpus_per_trial": 3}}
    proc = _sweep_cli(write_spec(tmp_path, baselines, "big.yaml"), "--num-cpus", "2")
    assert proc.returncode == 2 and "resources.cpus_per_trial" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()


def test_resource_check_counts_teachers_only_when_there_are_some_and_warns_on_a_joined_cluster(local_ray):
    from sweep.preflight import check_resources
    from sweep.ray_env import connect
    from sweep.spec import Resources

    connect(num_cpus=2)
    big_teacher = Resources(cpus_per_trial=1, cpus_per_teacher=64)
    check_resources(big_teacher, teachers=False, local=True)  # no teacher to schedule: fine
    lines = []
    check_resources(big_teacher, teachers=True, local=False, progress=lines.append)  # a cluster may grow
    assert len(lines) == 1 and lines[0].startswith("warning: resources.cpus_per_teacher: 64 CPU(s) per task")
    with pytest.raises(Exception, match=r"resources\.gpus_per_trial: 1 GPU\(s\) per task"):
        check_resources(Resources(gpus_per_trial=1), teachers=False, local=True)


def test_local_ray_listens_on_loopback_only(local_ray):
    """Every node of the local cluster is 127.0.0.1 (no other address is announced)."""
    from sweep.ray_env import connect

    connect(num_cpus=2)
    addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    assert addresses == {"127.0.0.1"}

    # And every socket a Ray process listens on is bound to loopback.
    # The processes of the Ray this test session started (not any other Ray on the machine).
    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c for c in psutil.net_connections(kind="tcp") if c.status == "LISTEN" and c.pid in ray_pids]
    assert listening, "found no Ray sockets to check"
    for c in listening:
        ip = ipaddress.ip_address(c.laddr.ip)
        ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
        assert ip.is_loopback, f"pid {c.pid} listens on {c.laddr}"
