"""Phase 1: every teacher the pending trials need, trained (or found cached) once, as Ray tasks.

Members go before the ensembles assembled from them; each task runs
:func:`workers.teachers.task.prepare_teacher` and returns its ``teachers.parquet`` row.
The wait is bounded: a teacher task that Ray does not start
(``resources.teacher_start_timeout_s``) or that stops reporting
(``resources.teacher_progress_timeout_s``) is one line naming the teacher and what
Ray reports (:class:`TeacherError`), not a wait without end. :class:`TeacherWatch`
decides from what the driver observes; :class:`_Watchdog` observes, beside the
driver's ``ray.get``, the heartbeats each task sends (:class:`_Heartbeat`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import ray
import torch
from ray import exceptions
from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_put

from sweep.grid import TeacherJob
from sweep.progress import TeacherProgress, interactive
from sweep.spec import Resources, Spec
from sweep.spec_errors import SpecError
from workers.kinds import members_of, trained_as_one
from workers.teachers.task import prepare_teacher

log = logging.getLogger(__name__)

#: Ray's GCS key-value store (the one Tune's registry uses) carries the teachers' heartbeats.
_BEAT_NAMESPACE = "qkd_sweep"


def _beat_key(task_id: str) -> str:
    return f"teacher-beat/{task_id}"


class _Heartbeat:
    """A teacher task's side of the start/progress bound: a value under its task id that
    changes when the task starts and with each progress line (the driver compares values,
    never clocks, so the nodes' clocks need not agree). A heartbeat that cannot be sent
    never fails the teacher."""

    def __init__(self):
        ctx = ray.get_runtime_context()
        self.key = _beat_key(ctx.get_task_id() or "")
        self.value = {"attempt": uuid.uuid4().hex[:12], "node": ctx.get_node_id(), "n": 0, "line": ""}

    def send(self, line: str) -> None:
        self.value.update(n=self.value["n"] + 1, line=line[:200])
        try:
            _internal_kv_put(self.key, json.dumps(self.value), overwrite=True, namespace=_BEAT_NAMESPACE)
        except Exception as exc:  # noqa: BLE001 - a heartbeat is never worth a teacher
            log.debug("teacher heartbeat not sent: %s", exc)

    def close(self) -> None:
        try:
            _internal_kv_del(self.key, namespace=_BEAT_NAMESPACE)
        except Exception as exc:  # noqa: BLE001
            log.debug("teacher heartbeat not removed: %s", exc)


def _teacher_task(job: TeacherJob, cache_dir: str, data_root: str, download: bool, threads: int, verbose: bool,
                  *_members, checkpoint_every_s: float = 0.0):  # fmt: skip
    """Phase 1, on a Ray worker: one teacher (the ``_members`` refs make an ensemble wait for its members).
    Its progress goes to the driver as heartbeats (drawn there, :mod:`sweep.progress`); with
    ``verbose`` it prints every line too, which Ray forwards to the driver's output."""
    beat = _Heartbeat()
    beat.send("started")
    try:
        torch.set_num_threads(threads)

        def progress(line: str) -> None:
            if verbose:  # Ray forwards a task's stdout to the driver as it is printed
                print(f"teacher {job.label}: {line}", flush=True)
            beat.send(line)

        return prepare_teacher(job.dataset, job.classes, job.arch, job.settings, cache_dir, data_root, download,
                               progress, checkpoint_every_s)  # fmt: skip
    finally:
        beat.close()


class TeacherError(SpecError):
    """Phase 1 gave up on a teacher: Ray did not start its task within
    ``resources.teacher_start_timeout_s`` (or it stopped reporting for
    ``resources.teacher_progress_timeout_s``), or Ray reports that it cannot run it.
    One line naming the teacher; nothing of the sweep's results is written."""

    def __init__(self, message: str):
        super().__init__("phase 1", message)


@dataclass
class TeacherWatch:
    """The bound on phase 1's wait, as a function of what the driver observes (no Ray here).

    The start clock runs while a teacher is due (its members have finished) and not
    started, and none of this sweep's teachers is running; it starts over whenever a
    teacher starts, reports progress, or finishes. So a teacher queued behind others on a
    busy cluster waits as long as they train, and the bound is "this long with nothing of
    phase 1 moving". A teacher whose node died counts as not started again (Ray retries it
    elsewhere, or cannot). With ``progress_s``, a running teacher that reports nothing for
    that long (a progress line per epoch) is given up on too.
    """

    start_s: float | None
    progress_s: float | None = None
    #: Per teacher: the indices of the teachers it waits for (an ensemble's members).
    members: list[list[int]] = field(default_factory=list)
    #: Seconds with a teacher due, none running, and nothing happening.
    idle: float = 0.0
    beats: dict[int, dict] = field(default_factory=dict)
    beat_at: dict[int, float] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    #: Teachers whose node died after they had started: the node's id, and the beat it last sent.
    lost: dict[int, str] = field(default_factory=dict)
    stale: dict[int, dict] = field(default_factory=dict)
    last: float | None = None

    def observe(self, now: float, done: set[int], beats: dict[int, dict | None], dead_nodes: set[str]
                ) -> tuple[int, str] | None:  # fmt: skip
        """One look: ``done`` the teachers finished (or failed), ``beats`` their heartbeats.
        Returns ``(teacher, "start" | "progress")`` for a teacher to give up on, or None."""
        dt = 0.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        moved = not done <= self.done
        self.done |= done
        for i, beat in beats.items():
            if beat and beat != self.beats.get(i) and beat != self.stale.get(i):
                self.beats[i], self.beat_at[i] = beat, now
                self.lost.pop(i, None)
                moved = True
        running = []
        for i in sorted(self.beats):
            if i in self.done:
                continue
            if self.beats[i].get("node") in dead_nodes:  # started, then lost with its node
                self.stale[i] = self.beats.pop(i)  # its last beat stays in Ray's store: no news
                self.lost[i] = self.stale[i].get("node", "?")
                moved = True
                continue
            running.append(i)
        if moved:
            self.idle = 0.0
        for i in running:
            if self.progress_s and now - self.beat_at[i] >= self.progress_s:
                return i, "progress"
        due = [i for i in range(len(self.members)) if i not in self.done and i not in running
               and all(m in self.done for m in self.members[i])]  # fmt: skip
        if due and not running and not moved:
            self.idle += dt
            if self.start_s and self.idle >= self.start_s:
                return due[0], "start"
        return None


class _Watchdog:
    """Phase 1's watch beside the driver's ``ray.get``: a thread that looks every
    ``interval`` seconds, and when :class:`TeacherWatch` gives up on a teacher, notes
    why and cancels every unfinished teacher task (which ends the driver's ``ray.get``)."""

    def __init__(self, jobs: list[TeacherJob], refs: list, watch: TeacherWatch, res: Resources,
                 shown: TeacherProgress | None = None):  # fmt: skip
        self.jobs, self.refs, self.watch, self.res, self.shown = jobs, refs, watch, res, shown
        bounds = [b for b in (watch.start_s, watch.progress_s) if b]
        # Every 2 s at most: the progress shown is drawn from the same look.
        self.interval = min(2.0, max(0.2, min(bounds) / 10)) if bounds else 2.0
        self.message: str | None = None
        self.polled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qkd-teacher-watch", daemon=True)
        self._warned = False

    def __enter__(self) -> _Watchdog:
        if self.interval is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.polled:  # a teacher killed mid-run cannot remove its heartbeat itself
            for ref in self.refs:
                with contextlib.suppress(Exception):  # best effort: the values are a few bytes
                    _internal_kv_del(_beat_key(ref.task_id().hex()), namespace=_BEAT_NAMESPACE)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - the watch must never break phase 1 itself
                if not self._warned:
                    log.warning("phase 1: the teacher watch could not look at Ray (%s); waiting without it", exc)
                    self._warned = True

    def _poll(self) -> None:
        self.polled = True
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0, fetch_local=False)
        ready = set(ready)
        done = {i for i, ref in enumerate(self.refs) if ref in ready}
        beats: dict[int, dict | None] = {}
        for i, ref in enumerate(self.refs):
            if i not in done:
                raw = _internal_kv_get(_beat_key(ref.task_id().hex()), namespace=_BEAT_NAMESPACE)
                beats[i] = json.loads(raw) if raw else None
                if beats[i] and self.shown is not None:
                    self.shown.beat(i, beats[i].get("line", ""))
        nodes = ray.nodes()
        dead = {n["NodeID"] for n in nodes if not n.get("Alive")}
        verdict = self.watch.observe(time.monotonic(), done, beats, dead)
        if verdict is None or self._stop.is_set():
            return
        i, kind = verdict
        self.message = self._explain(i, kind, nodes, len(self.refs) - len(done))
        self._stop.set()
        for j, ref in enumerate(self.refs):
            if j not in done:
                ray.cancel(ref)

    def _explain(self, i: int, kind: str, nodes: list[dict], unfinished: int) -> str:
        """The line: which teacher, what bound, and what Ray reports about its request."""

        job, res, watch = self.jobs[i], self.res, self.watch
        gave_up = f"gave up on {unfinished} unfinished teacher task(s); nothing written"
        if kind == "progress":
            beat = watch.beats.get(i, {})
            return (f"teacher {job.label} started on node {beat.get('node', '?')[:12]} but reported nothing for "
                    f"{watch.progress_s:g}s (resources.teacher_progress_timeout_s; last: {beat.get('line', '')!r}); "
                    f"{gave_up}")  # fmt: skip
        alive = [n for n in nodes if n.get("Alive")]
        free = ray.available_resources()
        wants = [("CPU", res.cpus_per_teacher)] + ([("GPU", res.gpus_per_teacher)] if res.gpus_per_teacher else [])
        asks = ", ".join(f"{v:g} {k}" for k, v in wants)
        have = "; ".join(f"{free.get(k, 0):g} of {sum(n['Resources'].get(k, 0) for n in alive):g} {k} free"
                         for k, _ in wants)  # fmt: skip
        fits = [k for k, v in wants if not any(n["Resources"].get(k, 0) >= v for n in alive)]
        why = f"; no live node has {' and '.join(fits)} enough for it" if fits else ""
        lost = f"; it had started on node {watch.lost[i][:12]}, which died" if i in watch.lost else ""
        dead = len(nodes) - len(alive)
        return (f"teacher {job.label} was not started by Ray within {watch.start_s:g}s "
                f"(resources.teacher_start_timeout_s): it asks for {asks}; Ray reports {have} on {len(alive)} live "
                f"node(s){f' ({dead} dead)' if dead else ''}{why}{lost}; {gave_up}")  # fmt: skip


def _ray_failure(job: TeacherJob, exc: BaseException) -> TeacherError | None:
    """A teacher Ray could not run (its runtime environment, its worker or node died past its
    retries), as one line; None for an exception of the teacher's own code (its traceback says more)."""

    if not isinstance(exc, exceptions.RayError) or isinstance(exc, exceptions.RayTaskError):
        return None
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return TeacherError(f"teacher {job.label}: Ray could not run it: {type(exc).__name__}: {text[:300]}")


def train_teachers(spec: Spec, jobs: list[TeacherJob], progress=print, verbose: bool = False,
                   live: bool | None = None) -> list[dict]:  # fmt: skip
    """Phase 1: every teacher once, in parallel where the cluster allows; their rows.

    The wait is bounded (:class:`TeacherWatch`): a teacher task that Ray does not start
    (no node it fits on, a broken runtime environment, its node died) is a
    :class:`TeacherError` after ``resources.teacher_start_timeout_s``, not a phase 1 that
    waits forever.

    Progress: a live bar per teacher on a terminal (``live``; default: stderr is one and no
    CI runner says otherwise), else plain lines at most every tenth of a teacher's epochs;
    ``verbose`` adds every line the tasks print.
    """

    if not jobs:
        return []
    res = spec.resources
    task = ray.remote(_teacher_task).options(
        num_cpus=res.cpus_per_teacher, num_gpus=res.gpus_per_teacher, max_retries=res.max_failures
    )
    # Keyed on TeacherJob.key (the parsed class labels, as Grid.teacher_jobs keys them), so that an
    # ensemble on "0,1,2,3,4,5" finds the LeNet member a "0-5" trial brought in.
    refs: dict[tuple, object] = {}
    index = {job.key: i for i, job in enumerate(jobs)}
    members: list[list[int]] = []
    for job in jobs:  # members come first (Grid.teacher_jobs sorts them so)
        keys = []
        if not trained_as_one(job.arch, job.settings.recipe):  # an ensemble of trained members
            keys = [job.key_for(m) for m in members_of(job.arch)]
        members.append([index[k] for k in keys])
        refs[job.key] = task.remote(
            job, spec.cache_dir, spec.data_root, spec.download, max(1, int(res.cpus_per_teacher)), verbose,
            *[refs[k] for k in keys], checkpoint_every_s=res.teacher_checkpoint_every_s,
        )  # fmt: skip
    rows = []
    t0 = time.perf_counter()
    watch = TeacherWatch(res.teacher_start_timeout_s, res.teacher_progress_timeout_s, members)
    if live is None:
        live = interactive()
    shown = TeacherProgress([job.label for job in jobs], live, progress)
    with _Watchdog(jobs, list(refs.values()), watch, res, shown) as watchdog:
        for i, (job, ref) in enumerate(zip(jobs, refs.values(), strict=True)):
            try:
                row, cached = ray.get(ref)
            except Exception as exc:
                if watchdog.message:
                    raise TeacherError(watchdog.message) from None
                failure = _ray_failure(job, exc)
                if failure is None:
                    raise
                for other in refs.values():  # nothing of phase 1 goes on without the driver
                    ray.cancel(other)
                raise failure from None
            rows.append(row)
            shown.finished(i)
            how = "cached" if cached else f"trained in {row['train_seconds']:.1f}s"
            progress(f"  teacher {job.label}: test acc {row['test_acc']:.4f} ({how})")
    shown.close()
    progress(f"phase 1: {len(jobs)} teachers ready in {time.perf_counter() - t0:.1f}s")
    return rows
