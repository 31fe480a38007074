"""One driver per results folder: a second real driver refuses, naming the holder; a dead
holder's lock is taken over; the lock logic itself, without Ray."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
from test_faults import QKD, SLOW, kill_tree, rows, wait_for, write_spec

from sweep.lock import LOCK_NAME, SweepBusy, SweepLock
from workers.io import location


def test_a_live_holder_is_refused_a_dead_one_taken_over(tmp_path):
    folder = location(tmp_path / "r")
    lines = []
    with SweepLock(folder, lines.append) as first:
        held = json.loads((tmp_path / "r" / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(SweepBusy) as info:
            SweepLock(folder, lines.append).acquire()
        msg = str(info.value)
        assert "\n" not in msg and f"pid {os.getpid()}" in msg and socket.gethostname() in msg and "since" in msg
        assert first.holder()["token"] == held["token"]
    assert not (tmp_path / "r" / LOCK_NAME).exists()  # released

    # a holder on this host whose process is gone
    gone = _dead_pid()
    here = {"host": socket.gethostname(), "pid": gone, "since": "then", "token": "x", "heartbeat": time.time()}
    (tmp_path / "r" / LOCK_NAME).write_text(json.dumps(here))
    with SweepLock(folder, lines.append):
        pass
    assert any("taking over" in line and f"process {gone} is gone" in line for line in lines)

    # a holder on another host whose heartbeat stopped, and one whose heartbeat is fresh
    (tmp_path / "r" / LOCK_NAME).write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "since": "then", "token": "y", "heartbeat": time.time() - 600}))  # fmt: skip
    with SweepLock(folder, lines.append):
        pass
    assert "heartbeat is 600s old" in lines[-1]
    (tmp_path / "r" / LOCK_NAME).write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "since": "then", "token": "z", "heartbeat": time.time()}))  # fmt: skip
    with pytest.raises(SweepBusy, match="host elsewhere, pid 1"):
        SweepLock(folder, lines.append).acquire()


def test_the_heartbeat_keeps_a_lock_fresh_and_never_overwrites_a_new_holder(tmp_path):
    folder = location(tmp_path / "r")
    lock = SweepLock(folder, print, heartbeat_s=0.1)
    lock.acquire()
    try:
        first = lock.holder()["heartbeat"]
        wait_for(lambda: lock.holder()["heartbeat"] > first, 5, "a heartbeat")
        # another driver took the folder over (it thought us dead): we must not write over it
        (tmp_path / "r" / LOCK_NAME).write_text(json.dumps({"token": "theirs", "heartbeat": time.time()}))
        time.sleep(0.5)
        assert lock.holder()["token"] == "theirs"
    finally:
        lock.release()
    assert lock.holder()["token"] == "theirs"  # release leaves another holder's lock alone


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.slow
def test_two_real_drivers_on_one_results_folder(tmp_path):
    path = write_spec(tmp_path, SLOW, "twodrivers")
    lock = tmp_path / "results" / "twodrivers" / LOCK_NAME
    cmd = [QKD, "sweep", str(path), "--quiet", "--no-tables", "--num-cpus", "2"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        holder = wait_for(lambda: lock.exists() and json.loads(lock.read_text()), 120, "the first driver's lock")
        assert holder["pid"] == first.pid
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        err = second.stderr.strip().splitlines()
        print("second driver:", second.returncode, err[-1:] if err else err)
        assert second.returncode == 2
        assert [line for line in err if "another sweep" in line] == err[-1:]
        assert f"pid {first.pid}" in err[-1] and "since" in err[-1]
        # the first driver is killed outright: its lock stays behind, naming a dead process
        wait_for(lambda: len(rows(tmp_path, "twodrivers")) >= 1, 240, "a first row")
        kill_tree(first)
        before = rows(tmp_path, "twodrivers")
        assert lock.exists() and json.loads(lock.read_text())["pid"] == first.pid
        third = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        print(third.stdout[-2000:])
        assert third.returncode == 0, third.stderr[-2000:]
        assert "taking over the results folder from a dead sweep" in third.stdout
        after = rows(tmp_path, "twodrivers")
        assert len(after) == 4 and after.config_hash.is_unique and (after.status == "ok").all()
        kept = after.set_index("config_hash").loc[before.config_hash, "trial_id"]
        assert list(kept) == list(before.trial_id)  # the finished rows were kept, not rerun
        assert not lock.exists()
    finally:
        kill_tree(first)
