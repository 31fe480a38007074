"""The sweep driver: a spec in, result rows out, through Ray.

Phase 1 trains every teacher the pending trials need, once each, as Ray tasks
(members before ensembles), and caches their logits. Phase 2 runs the student
trials with ``ray.tune.Tuner``: a grid search over the trial configs, or, for a
spec with a ``search:`` section, an Optuna study (:mod:`sweep.search`). Ray
Tune owns resources, retries (``resources.max_failures``) and its experiment
state (``<results>/<name>/tune/``); the driver owns the result files.

Results are written by the driver as each trial ends, never by the workers:
``trials.parquet`` (one row per trial), ``epochs.parquet`` and
``teachers.parquet`` under ``<results root>/<spec name>/``. While phase 2
runs, each finished trial adds one part to ``trials.parquet`` and
``epochs.parquet`` (then Parquet dataset folders; :mod:`sweep.results`), so
a write costs the same at the thousandth trial as at the first; when the
sweep ends (and when it starts on a folder a killed driver left in parts)
they are compacted back into one file each. Every part is whole or absent,
and a trial's row is written after its epoch rows, so a trial with a row is
a finished trial. Running a spec again resumes: trials whose row says ``ok``
or ``nan_loss`` (a result, if not a good one) are not run again; trials
recorded as ``error`` are.

Phase 1's wait is bounded: a teacher task that Ray does not start
(``resources.teacher_start_timeout_s``, see :class:`sweep.teachers_phase.TeacherWatch`)
is one line naming the teacher and what Ray reports, not a wait without end.

This module is the order of things (:func:`run_sweep`); each job has a module of
its own, from which other code (and the tests) import its names:

* :mod:`sweep.plan`: which trials run (the grid, ``--only``, what is finished);
* :mod:`sweep.preflight`: the checks before anything runs (data, nodes, disk);
* :mod:`sweep.ray_env`: joining a cluster or starting a loopback-only Ray;
* :mod:`sweep.teachers_phase`: phase 1, with its bounded wait;
* :mod:`sweep.students_phase`: phase 2 under Ray Tune;
* :mod:`sweep.recorder`: the writer of each trial's rows as it ends.

Nothing here touches circuits: a trial is :func:`workers.trial.run_trial`, a
plain function of a :class:`~workers.config.TrialConfig`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from sweep.grid import TeacherJob
from sweep.lock import SweepLock
from sweep.plan import finished_hashes, plan, select
from sweep.preflight import check_caches, check_creatable, check_resources, check_writable, preflight
from sweep.progress import teacher_outlook
from sweep.ray_env import connect
from sweep.results import EPOCHS, TEACHERS, TRIALS, append_rows, compact, remove_table
from sweep.search import write_best
from sweep.spec import Spec
from sweep.students_phase import run_students, tracking_callbacks
from sweep.teachers_phase import train_teachers
from workers.config import TrialConfig
from workers.io import Location

__all__ = ["Summary", "run_sweep"]


@dataclass
class Summary:
    spec: str
    results_dir: Location
    planned: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    pruned: int = 0
    nan_loss: int = 0
    teachers: int = 0
    wall_s: float = 0.0
    #: Wall time of phase 2 alone (Ray Tune's fit).
    phase2_s: float = 0.0
    messages: list[str] = field(default_factory=list)
    #: For a study: its best trial, in a line.
    best: str = ""

    def lines(self) -> list[str]:
        return [
            f"sweep {self.spec}: {self.planned} trials planned, {self.skipped} already finished (not rerun), "
            f"{self.finished} finished now ({self.nan_loss} with non-finite loss), {self.pruned} stopped early "
            f"by the scheduler, {self.failed} failed; {self.teachers} teachers; wall {self.wall_s:.1f}s",
            f"results in {self.results_dir}/ ({TRIALS}, {EPOCHS}, {TEACHERS})",
        ]


def run_sweep(
    spec: Spec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    fresh: bool = False,
    only: Iterable[str] = (),
    progress=print,
    verbose: int = 1,
    objects: Mapping[str, Callable] | None = None,
) -> Summary:
    """Plan, check, then run both phases; returns what happened. ``objects``: the user's
    objects registered in this process that the trials name, for the workers
    (:func:`sweep.ray_env.connect`; the Python API, :mod:`qkd_sweep`, passes them)."""
    t0 = time.perf_counter()
    results_dir = spec.results_dir
    grid, pending = plan(spec, only, fresh=fresh)
    planned = len(select(grid.trials, only)) if spec.search is None else spec.search.num_samples
    skipped = planned - len(pending) if spec.search is None else 0
    summary = Summary(spec.name, results_dir, planned=planned, skipped=skipped)
    summary.messages = list(grid.dropped)
    for line in grid.dropped:
        progress(line)
    if not pending:
        progress(f"sweep {spec.name}: all {planned} trials already finished; nothing to run (--fresh starts over)")
        summary.wall_s = time.perf_counter() - t0
        return summary
    preflight(pending)
    check_creatable(results_dir)  # before Ray starts; check_writable below probes for real
    check_caches(pending)  # after the results root: the cache is under it unless paths.cache says otherwise
    tracking_callbacks(spec)  # a missing extra is one line before anything runs
    local = not (address or os.environ.get("RAY_ADDRESS"))
    jobs = grid.teacher_jobs(pending)
    # The first line, before Ray's start (seconds): what will run.
    where = "on 127.0.0.1" if local else f"at {address or os.environ.get('RAY_ADDRESS')}"
    outlook = teacher_outlook(jobs, spec.cache_dir) if jobs else ""
    progress(f"sweep {spec.name}: {len(jobs)} teacher(s) to train or find cached"
             f"{f' ({outlook})' if outlook else ''}, then "
             f"{spec.search.num_samples if spec.search else len(pending)} student trials "
             f"({skipped} already finished); starting Ray {where}")  # fmt: skip
    # A cluster address that does not answer fails here, in bounded time.
    connect(address, num_cpus, _needs_qiskit(spec, pending), objects)
    check_resources(spec.resources, bool(jobs), local, progress)
    check_writable(results_dir)
    # One driver per results folder (sweep.lock): a second one refuses, naming the holder.
    with SweepLock(results_dir, progress):
        if spec.search is None and not fresh:  # a driver that held the folder before may have added rows
            done = finished_hashes(results_dir)
            pending = [c for c in pending if c.config_hash() not in done]
            summary.skipped = planned - len(pending)
        if pending:
            _run_phases(spec, summary, pending, jobs, fresh, progress, verbose)
        else:
            progress(f"sweep {spec.name}: the driver that held this folder before finished the rest")
    summary.wall_s = time.perf_counter() - t0
    return summary


def _needs_qiskit(spec: Spec, pending: list[TrialConfig]) -> bool:
    """Whether a trial the sweep can run builds circuits for Qiskit: one of a grid's pending
    trials, or a study's base config with any value one of its choice parameters takes
    (a range parameter is a number, and no number puts a trial on Qiskit)."""
    if any(c.uses_qiskit for c in pending):
        return True
    params = [p for p in spec.search.params if p.choices] if spec.search is not None else []
    return any(replace(c, **{p.name: v}).uses_qiskit for c in pending for p in params for v in p.choices)


def _run_phases(spec: Spec, summary: Summary, pending: list[TrialConfig], jobs: list[TeacherJob], fresh: bool,
                progress, verbose: int) -> None:  # fmt: skip
    """Both phases, with the results folder held; fills in ``summary``."""
    results_dir = spec.results_dir
    if fresh:  # only once the spec, the filters, the data, the cluster and the disk have been checked
        _clear(spec)
    else:  # a killed driver's parts, and any change of form it left half done, into one file each
        key = "config_hash" if spec.search is None else "trial_id"
        for name in (TRIALS, EPOCHS):
            compact(results_dir / name, key)
    progress(f"sweep {spec.name}: phase 1: {len(jobs)} teachers; phase 2: "
             f"{spec.search.num_samples if spec.search else len(pending)} student trials "
             f"({summary.skipped} already finished)")  # fmt: skip
    teacher_rows = train_teachers(spec, jobs, progress, verbose=bool(verbose))
    if teacher_rows:
        append_rows(results_dir / TEACHERS, teacher_rows, key="teacher_key")
    summary.teachers = len(jobs)
    t2 = time.perf_counter()
    counts = run_students(spec, pending, progress, verbose)
    summary.phase2_s = time.perf_counter() - t2
    summary.finished = counts.get("finished", 0) + counts.get("nan_loss", 0)
    summary.nan_loss = counts.get("nan_loss", 0)
    summary.pruned = counts.get("pruned", 0)
    summary.failed = counts.get("failed", 0)
    if spec.search is not None:
        summary.best = write_best(spec)


def _clear(spec: Spec) -> None:
    """``--fresh``: this spec's results, Tune state and default study go; the shared teacher cache stays."""
    d = spec.results_dir
    for name in (TRIALS, EPOCHS, TEACHERS):
        remove_table(d / name)
    for name in ("best_params.json", "optuna.db", "tune"):
        if name == "optuna.db" and spec.search and spec.search.storage:
            continue
        (d / name).delete()
