"""A study's SQLite file opens in optuna-dashboard (issue 14, item 5).

The dashboard runs as its own process on 127.0.0.1 and a free port; the test reads
its JSON API (``GET /api/studies``, then ``GET /api/studies/<study_id>``, as
optuna_dashboard._app serves them). Only loopback traffic; no Ray.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

pytest.importorskip("optuna_dashboard")

HOST = "127.0.0.1"
N_TRIALS = 5
#: Never a proxy, whatever the environment says: every request goes to HOST.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 5.0):
    with _OPENER.open(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
        assert r.status == 200
        return json.loads(r.read())


def make_study(storage: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="dash-study", storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(lambda t: -((t.suggest_float("temperature", 1.0, 8.0, log=True) - 3.0) ** 2), n_trials=N_TRIALS)
    return study


def test_dashboard_lists_the_study_and_its_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = make_study(storage)
    port = free_port()
    exe = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [str(exe), storage, "--host", HOST, "--port", str(port), "--server", "wsgiref"]
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        listing = None
        while listing is None:
            if proc.poll() is not None:
                output = (tmp_path / "dashboard.log").read_text()
                pytest.fail(f"optuna-dashboard exited with {proc.returncode}: {output}")
            try:
                listing = get_json(port, "/api/studies", timeout=2)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer on {HOST}:{port} in 30 s")
                time.sleep(0.25)

        summaries = listing["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["dash-study"]
        (summary,) = summaries
        assert summary["directions"] == ["maximize"]

        detail = get_json(port, f"/api/studies/{summary['study_id']}")
        assert detail["name"] == "dash-study"
        assert len(detail["trials"]) == N_TRIALS
        assert sorted(t["number"] for t in detail["trials"]) == list(range(N_TRIALS))
        assert all(t["state"] == "Complete" for t in detail["trials"])
        (best,) = detail["best_trials"]
        assert best["number"] == study.best_trial.number and best["values"] == [study.best_value]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
