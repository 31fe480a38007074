"""Phase 1 with one class subset spelled two ways (issue 15, item 5).

``0-5`` for a LeNet trial and ``0,1,2,3,4,5`` for an ensemble trial are the same
six classes: Grid.teacher_jobs makes one LeNet job of them, and the phase-1 code
that trains teachers must find that job as the ensemble's member (it used to look
members up by the classes string and crash with a KeyError).
"""

from __future__ import annotations

import types

import pytest
import yaml

from sweep import teachers_phase
from sweep.grid import expand
from sweep.spec import load_spec
from sweep.teachers_phase import train_teachers

TWO_SPELLINGS = {
    "name": "two-spellings",
    "grid": {"dataset": "digits", "qubits": 3, "temperature": 3, "lam": 0.9, "seed": 0},
    "subgrids": [
        {"classes": ["0-5"], "teacher": ["lenet"]},
        {"classes": ["0,1,2,3,4,5"], "teacher": ["ensemble"]},
    ],
    "trial": {"backend": "statevector", "epochs": 1, "samples_per_class": 4, "test_samples_per_class": 4},
    "teacher": {"epochs": 1},
    "resources": {"cpus_per_trial": 1, "cpus_per_teacher": 1, "max_failures": 0},
}


def two_spellings_spec(tmp_path):
    raw = {**TWO_SPELLINGS, "paths": {"results": str(tmp_path / "results")}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


class FakeRay(types.ModuleType):
    """Just enough of ``ray`` for train_teachers: records each task submission, runs nothing."""

    def __init__(self):
        super().__init__("ray")
        self.submitted: list[tuple] = []  # (job, member refs)
        self.checkpoint_every_s: list[float] = []

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, **_kw):
                return self

            def remote(self, job, cache_dir, data_root, download, threads, verbose, *members, checkpoint_every_s):
                ref = f"ref{len(fake.submitted)}:{job.arch}"
                fake.submitted.append((job, members))
                fake.checkpoint_every_s.append(checkpoint_every_s)
                return ref

        return Task()

    def get(self, ref):
        return {"test_acc": 0.5, "train_seconds": 0.0, "ref": ref}, False


def quiet(_line: str) -> None:
    pass


def test_teacher_jobs_key_on_parsed_labels(tmp_path):
    jobs = expand(two_spellings_spec(tmp_path)).teacher_jobs()
    assert sorted(j.arch for j in jobs) == ["alexnet", "ensemble", "lenet"]  # one LeNet, not one per spelling
    assert jobs[-1].arch == "ensemble"
    assert len({j.key for j in jobs}) == 3
    assert all(j.key[1] == (0, 1, 2, 3, 4, 5) for j in jobs)
    ensemble = jobs[-1]
    assert {ensemble.key_for(m) for m in ("lenet", "alexnet")} == {j.key for j in jobs[:-1]}


def test_phase1_finds_members_under_either_spelling(tmp_path, monkeypatch):
    spec = two_spellings_spec(tmp_path)
    jobs = expand(spec).teacher_jobs()
    fake = FakeRay()
    monkeypatch.setattr(teachers_phase, "ray", fake)

    rows = train_teachers(spec, jobs, progress=quiet)  # was: KeyError ('digits', '0,1,2,3,4,5', 'lenet', ...)

    assert len(rows) == len(jobs) == 3
    refs = {job.arch: f"ref{i}:{job.arch}" for i, (job, _) in enumerate(fake.submitted)}
    (ensemble, members), *_ = [s for s in fake.submitted if s[0].arch == "ensemble"]
    assert members == (refs["lenet"], refs["alexnet"])  # waits on the members actually submitted
    assert [r["ref"] for r in rows] == [f"ref{i}:{j.arch}" for i, j in enumerate(jobs)]  # rows in job order
    assert fake.checkpoint_every_s == [0.0] * 3  # resources.teacher_checkpoint_every_s, default: every epoch


@pytest.mark.slow
def test_phase1_on_local_ray_shares_the_lenet_member(tmp_path):
    """The same, on a real local Ray (127.0.0.1): one epoch per teacher on digits."""
    ray = pytest.importorskip("ray")
    from sweep.ray_env import connect

    spec = two_spellings_spec(tmp_path)
    jobs = expand(spec).teacher_jobs()
    connect(num_cpus=1)
    try:
        rows = train_teachers(spec, jobs, progress=quiet)
    finally:
        ray.shutdown()
    assert sorted(r["teacher"] for r in rows) == ["alexnet", "ensemble", "lenet"]
    assert all(0 <= r["test_acc"] <= 1 for r in rows)
    assert len({r["teacher_key"] for r in rows}) == 3
