"""Faults a sweep must survive without losing or duplicating a finished result:
a killed worker, a killed driver, a trial that raises or diverges, unreadable
result files, a results root that cannot be written."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pytest
import yaml

from sweep.cli import main
from sweep.driver import run_sweep
from sweep.results import append_rows
from sweep.spec import load_spec
from workers.config import TrialConfig
from workers.io import Location, write_parquet
from workers.trial import run_trial

ray = pytest.importorskip("ray")
QKD = str(Path(sys.executable).parent / "qkd-sweep")

#: Aer trials long enough (a few seconds each) to be killed in the middle.
SLOW = {
    "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "seed": [0, 1, 2, 3]},
    "trial": {"backend": "aer", "shots": 2000, "epochs": 12, "samples_per_class": 40, "test_samples_per_class": 20},
    "resources": {"cpus_per_trial": 1, "max_failures": 2},
}


def write_spec(tmp_path: Path, spec: dict, name: str) -> Path:
    spec = {"name": name, **spec, "paths": {"results": str(tmp_path / "results")}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rows(tmp_path: Path, name: str) -> pd.DataFrame:
    f = tmp_path / "results" / name / "trials.parquet"
    return pd.read_parquet(f) if f.exists() else pd.DataFrame({"config_hash": [], "trial_id": []})


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_tree(proc: subprocess.Popen) -> None:
    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def trial_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The Ray worker processes running student trials under the driver ``proc``."""
    out = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            title = " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::") and ("ImplicitFunc" in title or "_student" in title):
            out.append(p)
    return out


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_retried_and_every_row_lands_once(tmp_path):
    path = write_spec(tmp_path, SLOW, "killworker")
    proc = subprocess.Popen([QKD, "sweep", str(path), "--quiet", "--no-tables", "--num-cpus", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        victim = wait_for(lambda: trial_workers(proc), 120, "a trial worker")[0]
        time.sleep(1.5)  # into its trial
        victim.send_signal(signal.SIGKILL)
        print(f"killed trial worker pid {victim.pid} with {len(rows(tmp_path, 'killworker'))} of 4 rows written")
        out, _ = proc.communicate(timeout=240)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, out
    t = rows(tmp_path, "killworker")
    expected = {c.config_hash() for c in _grid(path)}
    print(f"sweep finished: {len(t)} rows, {t.config_hash.nunique()} distinct")
    assert sorted(t.config_hash) == sorted(expected)  # every row, once
    assert (t.status == "ok").all()
    assert "0 failed" in out
    # Tune saw the death (one trial's error file says so) and ran that trial again.
    errors = list((tmp_path / "results" / "killworker" / "tune").glob("*/*/error.txt"))
    assert len(errors) == 1 and "died" in errors[0].read_text().lower()


def _grid(path: Path) -> list[TrialConfig]:
    from sweep.grid import expand

    return expand(load_spec(path)).trials


@pytest.mark.slow
def test_a_killed_driver_resumes_without_rerunning_or_duplicating(tmp_path):
    path = write_spec(tmp_path, SLOW, "killdriver")
    proc = subprocess.Popen([QKD, "sweep", str(path), "--quiet", "--no-tables", "--num-cpus", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: len(rows(tmp_path, "killdriver")) >= 1, 180, "a first finished trial")
        before = rows(tmp_path, "killdriver")
        kill_tree(proc)  # the driver and the Ray it started, at once
        print(f"killed driver: {len(before)} of 4 rows before the kill")
    finally:
        kill_tree(proc)
    assert 1 <= len(before) < 4

    assert main(["sweep", str(path), "--quiet", "--no-tables", "--num-cpus", "2"]) == 0
    after = rows(tmp_path, "killdriver")
    print(f"after the rerun: {len(after)} rows, {after.config_hash.nunique()} distinct")
    assert after.config_hash.is_unique and len(after) == 4 and (after.status == "ok").all()
    # The trials that had finished before the kill were not run again.
    kept = after.set_index("config_hash").loc[before.config_hash, "trial_id"]
    assert list(kept) == list(before.trial_id)
    epochs = pd.read_parquet(tmp_path / "results" / "killdriver" / "epochs.parquet")
    assert set(epochs.trial_id) == set(after.trial_id) and len(epochs) == 4 * 12


def test_a_trial_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path, local_ray):
    spec = {
        "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "lr": [0.001, 1e300]},
        "trial": {"backend": "statevector", "epochs": 2, "samples_per_class": 12, "test_samples_per_class": 10},
        "resources": {"max_failures": 1},
    }
    path = write_spec(tmp_path, spec, "raises")
    summary = run_sweep(load_spec(path), num_cpus=2, progress=lambda _: None, verbose=0)
    assert (summary.finished, summary.failed) == (1, 1)
    t = rows(tmp_path, "raises").set_index("lr")
    assert t.loc[0.001, "status"] == "ok"
    assert t.loc[1e300, "status"] == "error"
    assert "failed 2 time(s)" in t.loc[1e300, "error"] and "overflow" in t.loc[1e300, "error"]
    # A rerun retries the error (it fails again) and leaves the finished trial alone.
    again = run_sweep(load_spec(path), num_cpus=2, progress=lambda _: None, verbose=0)
    assert (again.skipped, again.failed) == (1, 1)
    t2 = rows(tmp_path, "raises")
    assert len(t2) == 2 and t2.config_hash.is_unique
    assert t2.loc[t2.lr == 0.001, "trial_id"].item() == t.loc[0.001, "trial_id"]


def test_nan_loss_is_a_finished_result_with_its_reason(monkeypatch):
    import workers.trial as trial

    real = trial.distillation_loss
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), parts

    monkeypatch.setattr(trial, "distillation_loss", diverging)
    cfg = TrialConfig(dataset="digits", classes="0-3", qubits=2, teacher="none", backend="statevector",
                      epochs=3, samples_per_class=12, test_samples_per_class=10, batch_size=16)  # fmt: skip
    res = run_trial(cfg)
    assert res.row["status"] == "nan_loss"
    assert res.row["error"] == "non-finite loss in epoch 1, batch 2"
    assert res.epochs == []  # the epoch it broke in is not reported as if it had finished

    from sweep.plan import FINISHED

    assert "nan_loss" in FINISHED  # a rerun does not run it again: it is a result, if a bad one


def test_a_corrupt_results_file_is_refused_not_read(tmp_path, capsys):
    spec = {"grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "seed": 0}}
    path = write_spec(tmp_path, spec, "corrupt")
    results = tmp_path / "results" / "corrupt"
    cfg = _grid(path)[0]
    append_rows(results / "trials.parquet", [{"config_hash": cfg.config_hash(), "status": "ok"}])
    good = (results / "trials.parquet").read_bytes()
    truncated = good[: len(good) // 2]
    (results / "trials.parquet").write_bytes(truncated)
    for command in ("validate", "sweep"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "trials.parquet" in err[0] and "not a readable Parquet file" in err[0]
    assert (results / "trials.parquet").read_bytes() == truncated  # refused, not overwritten
    assert sorted(p.name for p in results.iterdir()) == ["trials.parquet"]


def test_an_unwritable_results_root_is_one_clear_error(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the results folder should go")
    spec = {"grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "seed": 0},
            "trial": {"backend": "statevector", "epochs": 1}}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", **spec, "paths": {"results": str(blocker / "results")}}))
    import sweep.driver

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started: the results root should have been refused before")

    monkeypatch.setattr(sweep.driver, "connect", no_ray)
    for command in (["validate", str(path)], ["sweep", str(path), "--num-cpus", "1"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "paths.results: cannot write to" in err[0] and f"{blocker} is not a folder" in err[0]
    assert blocker.read_text().startswith("a file")


def test_a_full_disk_leaves_every_written_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "trials.parquet"
    append_rows(target, [{"config_hash": "a", "status": "ok"}], key="config_hash")
    before = target.read_bytes()

    import pyarrow.parquet as pq

    real = pq.write_table

    def full_disk(table, where, **kw):
        real(table.slice(0, 0), where, **kw)  # some bytes land, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        append_rows(target, [{"config_hash": "b", "status": "ok"}], key="config_hash")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.parquet"]

    # And the driver's own check says so in one line before a sweep starts.
    def no_space(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Location, "write_bytes", no_space)
    from sweep.preflight import check_writable
    from workers.io import StorageError, location

    with pytest.raises(StorageError, match=r"paths.results: cannot write to .*No space left on device"):
        check_writable(location(tmp_path / "results"))


def test_write_parquet_is_whole_or_nothing_on_failure(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pa.table({"x": [1]}), target)
    with pytest.raises(AttributeError):
        write_parquet(None, target)
    assert pd.read_parquet(target).x.tolist() == [1]


def test_a_cluster_address_that_does_not_answer_is_one_line_in_bounded_time(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = {"grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2, "seed": 0}}
    path = write_spec(tmp_path, spec, "noaddress")
    t0 = time.monotonic()
    assert main(["sweep", str(path), "--address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--address: no Ray cluster answers at 127.0.0.1:{port}" in err[0]
    assert not (tmp_path / "results").exists()
