"""Phase 1's bounded wait (issue 15, item 4): a teacher task that Ray never starts is one
line naming the teacher and what Ray reports, exit 2, nothing written, instead of a wait
without end; a teacher queued behind running ones is not given up on."""

from __future__ import annotations

import logging
import time

import pytest
import yaml

from sweep.grid import TeacherJob
from sweep.teachers_phase import TeacherError, TeacherWatch, _beat_key, _Heartbeat, _ray_failure
from workers.teacher_settings import TeacherSettings

ray = pytest.importorskip("ray")


def beat(n: int, node: str = "node-a") -> dict:
    return {"attempt": "x", "node": node, "n": n, "line": f"epoch {n}"}


# ------------------------------------------------------------ the bound's logic (no Ray)
def test_a_teacher_queued_behind_a_running_one_waits_as_long_as_it_trains():
    watch = TeacherWatch(start_s=10, members=[[], []])
    assert watch.observe(0, set(), {0: beat(1), 1: None}, set()) is None
    for t in range(1, 1000, 5):  # teacher 0 trains for 1000s without a progress line: 1 waits
        assert watch.observe(t, set(), {0: beat(1), 1: None}, set()) is None
    assert watch.observe(1000, {0}, {1: None}, set()) is None  # 0 finished: the clock starts over
    assert watch.observe(1009, {0}, {1: None}, set()) is None
    assert watch.observe(1010.5, {0}, {1: None}, set()) == (1, "start")


def test_nothing_running_and_nothing_moving_is_given_up_on_after_the_bound():
    watch = TeacherWatch(start_s=5, members=[[]])
    assert watch.observe(0, set(), {0: None}, set()) is None
    assert watch.observe(4.9, set(), {0: None}, set()) is None
    assert watch.observe(5.1, set(), {0: None}, set()) == (0, "start")
    assert TeacherWatch(start_s=None, members=[[]]).observe(1e9, set(), {0: None}, set()) is None


def test_an_ensemble_is_not_due_before_its_members_and_each_start_restarts_the_clock():
    watch = TeacherWatch(start_s=5, members=[[], [], [0, 1]])
    assert watch.observe(0, set(), {0: None, 1: None, 2: None}, set()) is None
    assert watch.observe(4, set(), {0: beat(1), 1: None, 2: None}, set()) is None  # 0 starts at 4
    assert watch.observe(6, {0}, {1: None, 2: None}, set()) is None  # done at 6: 1 is due
    assert watch.observe(10, {0}, {1: None, 2: None}, set()) is None
    assert watch.observe(11.5, {0}, {1: None, 2: None}, set()) == (1, "start")  # not the ensemble


def test_a_teacher_whose_node_died_counts_as_not_started_again():
    watch = TeacherWatch(start_s=5, members=[[]])
    assert watch.observe(0, set(), {0: beat(1, "n1")}, set()) is None
    assert watch.observe(100, set(), {0: beat(1, "n1")}, set()) is None  # running
    assert watch.observe(101, set(), {0: beat(1, "n1")}, {"n1"}) is None  # its node is gone
    assert watch.lost == {0: "n1"}
    assert watch.observe(106.5, set(), {0: beat(1, "n1")}, {"n1"}) == (0, "start")
    # Ray retried it on another node in time: running again, nothing given up on.
    watch = TeacherWatch(start_s=5, members=[[]])
    watch.observe(0, set(), {0: beat(1, "n1")}, set())
    watch.observe(1, set(), {0: beat(1, "n1")}, {"n1"})
    assert watch.observe(3, set(), {0: beat(1, "n2")}, {"n1"}) is None
    assert watch.observe(50, set(), {0: beat(1, "n2")}, {"n1"}) is None and not watch.lost


def test_the_progress_bound_is_on_silence_not_on_training_time():
    watch = TeacherWatch(start_s=None, progress_s=60, members=[[]])
    for t in range(0, 600, 30):  # a line every 30s: ten minutes of training is fine
        assert watch.observe(t, set(), {0: beat(t)}, set()) is None
    assert watch.observe(625, set(), {0: beat(570)}, set()) is None  # 55s since its last line
    assert watch.observe(631, set(), {0: beat(570)}, set()) == (0, "progress")


def test_what_ray_cannot_run_is_one_line_and_the_teachers_own_errors_keep_their_traceback():
    job = TeacherJob("digits", "0-3", "lenet", TeacherSettings(epochs=1))
    err = _ray_failure(job, ray.exceptions.RuntimeEnvSetupError("Failed to set up runtime environment.\nmore"))
    assert isinstance(err, TeacherError)
    assert str(err) == ("phase 1: teacher lenet on digits 0-3 (seed 0): Ray could not run it: "
                        "RuntimeEnvSetupError: Failed to set up runtime environment.")  # fmt: skip
    assert _ray_failure(job, ray.exceptions.RayTaskError("f", "Traceback ...", ValueError("x"))) is None
    assert _ray_failure(job, ValueError("not Ray's")) is None


# ------------------------------------------------------------------ on a real Ray
@pytest.fixture
def local_ray(local_ray):
    """The process's shared Ray (conftest), started here if no test has started it yet."""
    from sweep.ray_env import connect

    connect(num_cpus=2)  # loopback only, as every Ray these tests start
    return local_ray


def test_a_teachers_heartbeat_reaches_the_driver_under_its_task_id(local_ray):
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get

    from sweep.teachers_phase import _BEAT_NAMESPACE

    @ray.remote(num_cpus=0)
    def task():
        hb = _Heartbeat()
        hb.send("started")
        hb.send("epoch 1/3")
        return ray.get_runtime_context().get_node_id()

    ref = task.remote()
    node = ray.get(ref)
    key = _beat_key(ref.task_id().hex())
    raw = _internal_kv_get(key, namespace=_BEAT_NAMESPACE)
    assert raw is not None
    import json

    value = json.loads(raw)
    assert value["node"] == node and value["n"] == 2 and value["line"] == "epoch 1/3"
    _internal_kv_del(key, namespace=_BEAT_NAMESPACE)


def test_a_teacher_task_ray_never_starts_is_one_line_exit_2_and_nothing_written(tmp_path, local_ray, capsys, caplog):
    from sweep.cli import main

    # Every CPU of this Ray is taken, so the teacher task (1 CPU, which a node has) is never scheduled:
    # what a full cluster, a node that died, or a worker that cannot start looks like from the driver.
    cpus = ray.cluster_resources()["CPU"]
    blocker = ray.remote(num_cpus=cpus)(type("Blocker", (), {"ping": lambda self: 1})).remote()
    ray.get(blocker.ping.remote())
    spec = {
        "name": "nostart",
        "grid": {"dataset": "digits", "classes": "0-3", "teacher": "lenet", "qubits": 2, "seed": 0},
        "trial": {"backend": "statevector", "epochs": 1, "samples_per_class": 12, "test_samples_per_class": 10},
        "teacher": {"epochs": 1},
        "resources": {"cpus_per_trial": 1, "cpus_per_teacher": 1, "teacher_start_timeout_s": 3},
        "paths": {"results": str(tmp_path / "results")},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="sweep.teachers_phase"):
            code = main(["sweep", str(path), "--quiet", "--no-tables"])
    finally:
        ray.kill(blocker)
    took = time.monotonic() - t0
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qkd-sweep")]
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("qkd-sweep: error: phase 1: teacher lenet on digits 0-3 (seed 0) was not started by Ray "
                           "within 3s (resources.teacher_start_timeout_s): it asks for 1 CPU; Ray reports 0 of "
                           f"{cpus:g} CPU free on 1 live node(s)"), line  # fmt: skip
    assert line.endswith("gave up on 1 unfinished teacher task(s); nothing written")
    assert took < 60  # 3s of waiting, plus the start of the sweep
    assert not [r for r in caplog.records if "teacher watch" in r.getMessage()]  # the watch itself worked
    results = tmp_path / "results"
    written = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert written == [], written  # no result table, no Tune state, no teacher in the cache, no lock left
