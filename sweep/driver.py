"""The sweep driver: a spec in, result rows out, through Ray.

Phase 1 trains every teacher the pending trials need, once each, as Ray tasks
(members before ensembles), and caches their logits. Phase 2 runs the student
trials with ``ray.tune.Tuner``: a grid search over the trial configs, or, for a
spec with a ``search:`` section, an Optuna study (:mod:`sweep.search`). Ray
Tune owns resources, retries (``resources.max_failures``) and its experiment
state (``<results>/<name>/tune/``); this module owns the result files.

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
(``resources.teacher_start_timeout_s``, see :class:`TeacherWatch`) is one
line naming the teacher and what Ray reports, not a wait without end.

Nothing here touches circuits: a trial is :func:`workers.trial.run_trial`, a
plain function of a :class:`~workers.config.TrialConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import time
import typing
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sweep.grid import Grid, TeacherJob, expand
from sweep.lock import SweepLock
from sweep.results import EPOCHS, TEACHERS, TRIALS, PartedTable, append_rows, compact, read_table, remove_table
from sweep.spec import TRIAL_FIELDS, Resources, Spec, SpecError
from workers.config import ENSEMBLE_MEMBERS, TrialConfig, trained_as_one
from workers.data import load_dataset
from workers.io import Location, StorageError

log = logging.getLogger(__name__)

#: A trial with one of these statuses has its result; a rerun does not run it again.
FINISHED = ("ok", "nan_loss")


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


# ---------------------------------------------------------------- planning
def finished_hashes(results_dir: Location) -> set[str]:
    trials = read_table(results_dir / TRIALS)
    if trials is None or trials.empty:
        return set()
    return set(trials.loc[trials.status.isin(FINISHED), "config_hash"])


def select(trials: list[TrialConfig], only: Iterable[str] = ()) -> list[TrialConfig]:
    """Keep the trials that match every ``field=value`` filter (a field given twice matches either).

    Values compare as the field's type, so ``temperature=3`` matches a spec's ``3`` (held as 3.0).
    Filters that leave nothing are a SpecError: a typo should not look like a finished sweep.
    """
    only = list(only)
    wanted: dict[str, list] = defaultdict(list)
    for item in only:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in TRIAL_FIELDS:
            raise SpecError("--only", f"{item!r}: expected FIELD=VALUE with a trial field, e.g. dataset=mnist")
        wanted[key].append(_typed(key, text.strip(), item))
    kept = [c for c in trials if all(getattr(c, k) in v for k, v in wanted.items())]
    if only and not kept:
        raise SpecError("--only", f"no trial of the grid matches {only}")
    return kept


def _typed(key: str, text: str, item: str):
    tp = TRIAL_FIELDS[key]
    kinds = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
    try:
        if bool in kinds:
            return {"true": True, "false": False}[text.lower()]
        if int in kinds or float in kinds:
            return float(text)
    except (KeyError, ValueError):
        raise SpecError("--only", f"{item!r}: {text!r} is not a value of {key}") from None
    return text


def preflight(trials: list[TrialConfig]) -> None:
    """Load every dataset and draw every split the trials need, before Ray starts:
    missing files or too few samples are one line and exit 2, not a failed trial.
    The splits come from the function the trial itself draws them with."""
    from workers.trial import student_samples  # noqa: PLC0415

    seen = set()
    for cfg in trials:
        r = cfg.resolved()
        key = (r.dataset, r.class_labels, r.data_root, r.samples_per_class, r.test_samples_per_class,
               r.val_samples_per_class, r.take_available, r.selection, r.normalize)  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        student_samples(load_dataset(r.dataset, r.class_labels, r.data_root, r.download, r.normalize), cfg)


def plan(spec: Spec, only: Iterable[str] = (), fresh: bool = False) -> tuple[Grid, list[TrialConfig]]:
    """The expanded grid and the trials still to run (all of them with ``fresh``)."""
    grid = expand(spec)
    trials = select(grid.trials, only)
    if spec.search is None and not fresh:
        done = finished_hashes(spec.results_dir)
        trials = [c for c in trials if c.config_hash() not in done]
    return grid, trials


# ------------------------------------------------------------------- Ray
def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start a local Ray on loopback.

    A local Ray is kept on 127.0.0.1: Ray on Linux resolves "127.0.0.1" to the
    machine's outward address and listens there unless told that this is a
    single-machine cluster, which is what RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    says (to this process, read at call time, and to the Ray processes it
    starts); a cluster address on loopback gets the same treatment. A local
    Ray is always a new one (``address="local"``), never a cluster that
    someone else started on this machine.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _quiet_ray_notices()
    # Tune's classic reporter: its columns can be chosen (the new one would print every row's JSON).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not address:
        loopback_only()
    elif address.rpartition(":")[0] in ("127.0.0.1", "localhost", "[::1]", "::1"):
        loopback_only(keep_address=True)
    import ray  # noqa: PLC0415

    if address:
        _check_address(address)  # even in a process that already has a Ray: --address must answer
    if ray.is_initialized():
        return
    runtime_env = {"worker_process_setup_hook": "workers.runtime.prepare_process"}
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        return
    # The Ray processes (and the workers they start) share this home: Ray keeps the
    # cluster's auth token under ~/.ray, so a worker with another home could not connect.
    real_home = os.environ.get("HOME", "")
    os.environ["HOME"] = _quiet_home()
    try:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 num_cpus=num_cpus, log_to_driver=True, runtime_env=runtime_env)  # fmt: skip
    finally:
        os.environ["HOME"] = real_home


def _quiet_home() -> str:
    """A home folder for the Ray head processes holding a ``ray_bootstrap_config.yaml``.

    Without that file a Ray head asks the cloud metadata services
    (169.254.169.254, metadata.google.internal) which cloud it runs on, usage
    statistics off or not; with it, it reads the provider from the file and
    sends nothing. Measured with strace on this machine (Ray 2.60).
    """
    import tempfile  # noqa: PLC0415

    home = os.path.join(tempfile.gettempdir(), f"qkd-sweep-ray-home-{os.getuid()}")
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "ray_bootstrap_config.yaml")
    if not os.path.exists(config):
        with open(config, "w") as f:
            f.write("# Read by Ray's usage library instead of asking cloud metadata services.\n")
            f.write("provider: {type: local}\n")
    return home


def _check_address(address: str, timeout: float = 5.0) -> None:
    """Fail in bounded time, with one line, when nothing listens at the cluster address
    (``ray.init`` would otherwise retry for a long while)."""
    import socket  # noqa: PLC0415

    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except ValueError:
        raise SpecError("--address", f"{address!r}: expected HOST:PORT, e.g. 127.0.0.1:6379") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError("--address", f"no Ray cluster answers at {address} ({reason}, {timeout:g}s)") from None


def loopback_only(keep_address: bool = False) -> None:
    """Make Ray started from this process (and its children) listen on 127.0.0.1 only."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if not keep_address:
        os.environ.pop("RAY_ADDRESS", None)
    import sys  # noqa: PLC0415

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported before the variable was set
        constants.ENABLE_RAY_CLUSTER = False


def check_resources(res: Resources, teachers: bool, local: bool, progress=print) -> None:
    """Every task must fit on one node of the cluster: Ray holds a task that fits on none
    (a teacher asking for 2 CPUs of a 1-CPU Ray) forever, without an error.

    A Ray this process started is all there is, so a request larger than it is
    bad input (one line naming the field). A joined cluster may still grow (an
    autoscaler adds nodes), so there it is a warning line and the run waits.
    """
    import ray  # noqa: PLC0415

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    wants = [("cpus_per_trial", res.cpus_per_trial, "CPU"), ("gpus_per_trial", res.gpus_per_trial, "GPU")]
    if teachers:
        wants += [("cpus_per_teacher", res.cpus_per_teacher, "CPU"), ("gpus_per_teacher", res.gpus_per_teacher, "GPU")]
    for name, want, kind in wants:
        have = max((float(n.get(kind, 0)) for n in nodes), default=0.0)
        if want <= have:
            continue
        what = f"{want:g} {kind}(s) per task, but the largest node of this Ray has {have:g}"
        if local:
            hint = " (lower it, or give --num-cpus)" if kind == "CPU" else " (lower it)"
            if kind == "GPU" and not have:
                hint = " (Ray sees no GPU on this machine; set it to 0)"
            raise SpecError(f"resources.{name}", what + hint)
        wait = "those tasks wait until a node that large joins"
        if name.endswith("_teacher") and res.teacher_start_timeout_s:
            wait += f" (phase 1 gives up after {res.teacher_start_timeout_s:g}s: resources.teacher_start_timeout_s)"
        progress(f"warning: resources.{name}: {what}; {wait}")


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
        import uuid  # noqa: PLC0415

        import ray  # noqa: PLC0415

        ctx = ray.get_runtime_context()
        self.key = _beat_key(ctx.get_task_id() or "")
        self.value = {"attempt": uuid.uuid4().hex[:12], "node": ctx.get_node_id(), "n": 0, "line": ""}

    def send(self, line: str) -> None:
        from ray.experimental.internal_kv import _internal_kv_put  # noqa: PLC0415

        self.value.update(n=self.value["n"] + 1, line=line[:200])
        try:
            _internal_kv_put(self.key, json.dumps(self.value), overwrite=True, namespace=_BEAT_NAMESPACE)
        except Exception as exc:  # noqa: BLE001 - a heartbeat is never worth a teacher
            log.debug("teacher heartbeat not sent: %s", exc)

    def close(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_del  # noqa: PLC0415

        try:
            _internal_kv_del(self.key, namespace=_BEAT_NAMESPACE)
        except Exception as exc:  # noqa: BLE001
            log.debug("teacher heartbeat not removed: %s", exc)


def _teacher_task(job: TeacherJob, cache_dir: str, data_root: str, download: bool, threads: int, *_members):
    """Phase 1, on a Ray worker: one teacher (the ``_members`` refs make an ensemble wait for its members)."""
    beat = _Heartbeat()
    beat.send("started")
    try:
        import torch  # noqa: PLC0415

        from workers.teachers import prepare_teacher  # noqa: PLC0415

        torch.set_num_threads(threads)

        def progress(line: str) -> None:  # Ray forwards a task's stdout to the driver as it is printed
            print(f"teacher {job.label}: {line}", flush=True)
            beat.send(line)

        return prepare_teacher(job.dataset, job.classes, job.arch, job.settings, cache_dir, data_root, download,
                               progress)  # fmt: skip
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

    def __init__(self, jobs: list[TeacherJob], refs: list, watch: TeacherWatch, res: Resources):
        import threading  # noqa: PLC0415

        self.jobs, self.refs, self.watch, self.res = jobs, refs, watch, res
        bounds = [b for b in (watch.start_s, watch.progress_s) if b]
        self.interval = min(2.0, max(0.2, min(bounds) / 10)) if bounds else None
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
            from ray.experimental.internal_kv import _internal_kv_del  # noqa: PLC0415

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
        import ray  # noqa: PLC0415
        from ray.experimental.internal_kv import _internal_kv_get  # noqa: PLC0415

        self.polled = True
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0, fetch_local=False)
        ready = set(ready)
        done = {i for i, ref in enumerate(self.refs) if ref in ready}
        beats: dict[int, dict | None] = {}
        for i, ref in enumerate(self.refs):
            if i not in done:
                raw = _internal_kv_get(_beat_key(ref.task_id().hex()), namespace=_BEAT_NAMESPACE)
                beats[i] = json.loads(raw) if raw else None
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
        import ray  # noqa: PLC0415

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
    from ray import exceptions  # noqa: PLC0415

    if not isinstance(exc, exceptions.RayError) or isinstance(exc, exceptions.RayTaskError):
        return None
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return TeacherError(f"teacher {job.label}: Ray could not run it: {type(exc).__name__}: {text[:300]}")


def train_teachers(spec: Spec, jobs: list[TeacherJob], progress=print) -> list[dict]:
    """Phase 1: every teacher once, in parallel where the cluster allows; their rows.

    The wait is bounded (:class:`TeacherWatch`): a teacher task that Ray does not start
    (no node it fits on, a broken runtime environment, its node died) is a
    :class:`TeacherError` after ``resources.teacher_start_timeout_s``, not a phase 1 that
    waits forever.
    """
    import ray  # noqa: PLC0415

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
            keys = [job.key_for(m) for m in ENSEMBLE_MEMBERS]
        members.append([index[k] for k in keys])
        refs[job.key] = task.remote(
            job, spec.cache_dir, spec.data_root, spec.download, max(1, int(res.cpus_per_teacher)),
            *[refs[k] for k in keys],
        )  # fmt: skip
    rows = []
    t0 = time.perf_counter()
    watch = TeacherWatch(res.teacher_start_timeout_s, res.teacher_progress_timeout_s, members)
    with _Watchdog(jobs, list(refs.values()), watch, res) as watchdog:
        for job, ref in zip(jobs, refs.values(), strict=True):
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
            how = "cached" if cached else f"trained in {row['train_seconds']:.1f}s"
            progress(f"  teacher {job.label}: test acc {row['test_acc']:.4f} ({how})")
    progress(f"phase 1: {len(jobs)} teachers ready in {time.perf_counter() - t0:.1f}s")
    return rows


#: A grid trial reports to Tune at most this often (its epochs are buffered in between and
#: sent with the next report; the last report carries the whole row). Every report is a
#: round trip through Tune's controller (~0.5 s on a busy 2-core machine), which would
#: dominate trials of a second or two; a study reports every epoch, for its scheduler.
REPORT_EVERY_S = 5.0


def _student(config: dict, configs: dict[str, dict] | None = None, base: dict | None = None,
             groups: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """Phase 2, in a Ray Tune trial: one student (or, for a grid with
    ``resources.trials_per_task`` > 1, several in turn), reported to Tune as it trains.

    Each config's last report carries its whole result row (``row_json``), which the
    driver writes at once; epochs reach Tune every epoch for a study (so that its
    scheduler sees one iteration per epoch) and at most every ``report_every_s`` for a
    grid, buffered in between (``epochs_json`` of the report), and flushed before a
    trial that raises gives up.
    """
    import ray  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from workers.trial import run_trial  # noqa: PLC0415

    if configs is not None:
        members = [_from_dict(configs[label]) for label in (groups or {}).get(config["trial"], [config["trial"]])]
    else:  # a study: the base config with the sampled values
        members = [_sampled(base, config)]
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    every = float(config.get("report_every_s", 0.0))
    node = ray.get_runtime_context().get_node_id()
    for cfg in members:
        reports = _Reports(tune.report, every, cfg.epochs)
        try:
            result = run_trial(cfg, reports.epoch)
        except BaseException:
            reports.flush()  # the epochs it did finish go into its error row
            raise
        row = {**result.row, "node_id": node}
        last = result.epochs[-1] if result.epochs else {}
        metrics = {k: math.nan for k in ("val_acc", "val_loss", "test_acc", "train_loss")}
        metrics.update({k: v for k, v in last.items() if k != "trial_id"})
        tune.report({**metrics, "status": row["status"], "row_json": json.dumps(row),
                     "epochs_json": json.dumps(result.epochs),
                     "teacher_json": json.dumps(result.teacher) if result.teacher else ""})  # fmt: skip


class _Reports:
    """One config's epochs on their way to Tune: buffered, sent at most every ``every`` seconds
    (0: each epoch), the last epoch kept for the report that carries the row."""

    def __init__(self, send, every: float, epochs: int):
        self.send, self.every, self.epochs = send, every, epochs
        self.pending: list[dict] = []
        self.sent = time.monotonic()

    def epoch(self, r: dict) -> None:
        if r["epoch"] >= self.epochs:
            return
        self.pending.append({k: v for k, v in r.items() if k != "trial_id"})
        if time.monotonic() - self.sent >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send({**self.pending[-1], "epochs_json": json.dumps(self.pending)})
            self.pending = []
        self.sent = time.monotonic()


def _sampled(base: dict, config: dict) -> TrialConfig:
    """A study's trial: the base config with the values the searcher drew."""
    drawn = {k: v for k, v in config.items() if k not in ("trial", "threads")}
    return dataclasses.replace(_from_dict(base), **drawn).validate()


def _to_dict(cfg: TrialConfig) -> dict:
    return dataclasses.asdict(cfg)


def _from_dict(d: dict) -> TrialConfig:
    from workers.config import TeacherSettings  # noqa: PLC0415

    return TrialConfig(**{**d, "teacher_settings": TeacherSettings(**d["teacher_settings"])})


#: Ray's notices that tell a user of this tool nothing they can act on (the local Ray's
#: token authentication stays on; only the line announcing it is dropped).
_RAY_NOTICES = {"ray._private.authentication.authentication_token_setup": "Token authentication is enabled"}


def _quiet_ray_notices() -> None:
    for name, text in _RAY_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(getattr(f, "qkd_notice", False) for f in logger.filters):
            drop = _DropNotice(text)
            logger.addFilter(drop)


class _DropNotice(logging.Filter):
    qkd_notice = True

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class Recorder:
    """Writes each trial's rows as it ends (a Tune callback; the driver is the only writer),
    and says so in one status line per trial: done, running, left and an ETA."""

    def __init__(self, spec: Spec, key: str, configs: dict[str, dict] | None, base: dict | None,
                 total: int = 0, progress=None, groups: dict[str, list[str]] | None = None):  # fmt: skip
        self.spec, self.key, self.configs, self.base, self.groups = spec, key, configs, base, groups
        #: Tune trial id -> config hashes whose rows were written (a task of several configs).
        self.written: dict[str, set[str]] = defaultdict(set)
        self.dir = spec.results_dir
        #: One part per finished trial (sweep.results): the cost of a write does not grow with the table.
        self.trials_out = PartedTable(self.dir / TRIALS, key)
        self.epochs_out = PartedTable(self.dir / EPOCHS, key)
        #: teacher_key -> the row last written to teachers.parquet (a small file rewritten whole).
        self.teachers_written: dict[str, str] = {}
        self.epochs: dict[str, dict[int, dict]] = defaultdict(dict)
        self.counts: dict[str, int] = defaultdict(int)
        self.total, self.progress = total, progress
        #: Trials Tune says are running, besides the one just ended (set by the callback).
        self.running = 0
        self.done = 0
        self.t0 = time.perf_counter()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; the printer stays with the driver.
        return {**self.__dict__, "progress": None}

    def status_line(self, row: dict) -> str:
        """``[done/total] what it was: status, accuracy, time; running, left, ETA`` (the ETA from
        this sweep's own pace so far: elapsed / done x left)."""
        left = max(0, self.total - self.done)
        elapsed = time.perf_counter() - self.t0
        eta = dt.timedelta(seconds=round(elapsed / self.done * left)) if self.done else "?"
        teacher = row.get("teacher", "?")
        teacher = "baseline" if teacher == "none" else teacher
        what = (f"{row.get('dataset', '?')} {row.get('classes', '?')} {row.get('qubits', '?')}q "
                f"{row.get('student', '')} {teacher} seed {row.get('seed', '?')}")  # fmt: skip
        acc = row.get("test_acc", math.nan)
        result = f"test_acc {acc:.4f}" if isinstance(acc, float) and not math.isnan(acc) else "no test_acc"
        return (f"[{self.done}/{self.total}] {what}: {row.get('status', '?')}, {result}, "
                f"{row.get('wall_s', math.nan):.0f}s; running {self.running}, left {left}, ETA {eta}")  # fmt: skip

    def members(self, trial) -> list[str]:
        """The config labels a grid trial runs, in order (one, unless trials_per_task > 1)."""
        label = trial.config["trial"]
        return (self.groups or {}).get(label, [label])

    def config_of(self, trial, label: str | None = None) -> TrialConfig:
        config = trial.config
        if self.configs is not None:
            return _from_dict(self.configs[label or self.members(trial)[0]])
        return _sampled(self.base, config)

    _EPOCH_KEYS = ("epoch", "train_loss", "train_ce", "train_kl", "train_acc", "test_loss", "test_acc",
                   "val_loss", "val_acc", "head_scale", "circuit_executions", "wall_s")  # fmt: skip

    def on_result(self, trial, result: dict) -> None:
        if result.get("row_json"):  # a config finished: its rows now, whatever its task runs next
            row = json.loads(result["row_json"])
            epochs = json.loads(result["epochs_json"])
            teacher = json.loads(result["teacher_json"]) if result.get("teacher_json") else None
            self.counts["nan_loss" if row["status"] == "nan_loss" else "finished"] += 1
            self.written[trial.trial_id].add(row["config_hash"])
            self.epochs[trial.trial_id].clear()
            self.write(trial, row, epochs, teacher)
            return
        if "epoch" in result and not _isnan(result.get("epoch")):
            reported = json.loads(result["epochs_json"]) if result.get("epochs_json") else [result]
            for r in reported:
                epoch = int(r["epoch"])
                if epoch == 1:  # a retried trial (or the next config of its task) starts over
                    self.epochs[trial.trial_id].clear()
                self.epochs[trial.trial_id][epoch] = {k: r[k] for k in self._EPOCH_KEYS if k in r}

    def on_complete(self, trial) -> None:
        result = trial.last_result or {}
        if result.get("row_json"):
            return  # written as it was reported
        scheduler = self.spec.search.scheduler if self.spec.search else ""
        row, epochs = self.unfinished(trial, "pruned", f"stopped by the {scheduler} scheduler after epoch {{n}}")
        self.counts["pruned"] += 1
        self.write(trial, row, epochs, None)

    def unfinished(self, trial, status: str, reason: str, label: str | None = None) -> tuple[dict, list[dict]]:
        """The row of a trial that did not reach its last epoch, and the epochs it reported
        (``{n}`` in ``reason`` becomes their number)."""
        from workers.trial import unfinished_row  # noqa: PLC0415

        epochs = [self.epochs[trial.trial_id][e] for e in sorted(self.epochs[trial.trial_id])]
        self.epochs[trial.trial_id].clear()
        row = unfinished_row(self.config_of(trial, label), status, reason.format(n=len(epochs)), epochs)
        return row, [{**e, "trial_id": row["trial_id"]} for e in epochs]

    def on_error(self, trial) -> None:
        text: list[str] = []
        if trial.error_file and os.path.exists(trial.error_file):  # the driver's own copy, written first
            with open(trial.error_file) as f:
                text = f.read().strip().splitlines()
        elif trial.get_error():
            text = str(trial.get_error()).strip().splitlines()
        reason = next((ln for ln in reversed(text) if ln.strip()), "trial failed").strip()[:500]
        # Braces in an exception's text are not format fields.
        safe = reason.replace("{", "{{").replace("}", "}}")
        # Every config of the task without a row: the one that failed (with the epochs it
        # reported), and any after it that it never reached; a rerun retries them all.
        done = self.written.pop(trial.trial_id, set())
        labels = self.members(trial) if self.configs is not None else [None]
        failed = ""
        for label in labels:
            if label is not None and _from_dict(self.configs[label]).config_hash() in done:
                continue
            why = (f"not reached: {failed}, before it in its task, failed {trial.num_failures} time(s): {safe}"
                   if failed else f"failed {trial.num_failures} time(s): {safe}")  # fmt: skip
            row, epochs = self.unfinished(trial, "error", why, label)
            failed = failed or (label or "")
            self.counts["failed"] += 1
            self.write(trial, row, epochs, None)

    def write(self, trial, row: dict, epochs: list[dict], teacher: dict | None) -> None:
        row = {**row, "spec_name": self.spec.name, "spec_hash": self.spec.spec_hash,
               "tune_trial_id": trial.trial_id}  # fmt: skip
        row.setdefault("node_id", "")
        epochs = [{**e, "config_hash": row["config_hash"]} for e in epochs]
        # Epochs first, the trial row last: a row is the mark of a finished trial.
        if epochs:
            self.epochs_out.append(epochs)
        if teacher:
            text = json.dumps(teacher, sort_keys=True, default=str)
            if self.teachers_written.get(teacher.get("teacher_key")) != text:  # most trials share a teacher
                append_rows(self.dir / TEACHERS, [teacher], key="teacher_key")
                self.teachers_written[teacher.get("teacher_key")] = text
        self.trials_out.append([row])
        self.done += 1
        if self.progress is not None:
            self.progress(self.status_line(row))

    def close(self) -> None:
        """The sweep's parts compacted into one file per table (the form at rest)."""
        self.epochs_out.compact()
        self.trials_out.compact()


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _callback(recorder: Recorder):
    from ray import tune  # noqa: PLC0415

    def running(trials, trial) -> int:
        return sum(1 for t in trials if t is not trial and t.status == "RUNNING")

    class _Callback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.on_result(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            recorder.running = running(trials, trial)
            recorder.on_complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            recorder.running = running(trials, trial)
            recorder.on_error(trial)

    return _Callback()


def tracking_callbacks(spec: Spec) -> list:
    """Ray Tune's loggers for the spec's ``tracking:`` section (an MLflow run per Tune trial)."""
    if not spec.tracking.mlflow:
        return []
    try:
        import mlflow  # noqa: F401, PLC0415
        from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: PLC0415
    except ImportError:
        raise SpecError("tracking.mlflow", "needs MLflow: pip install -e '.[mlflow]' (or mlflow-skinny)") from None
    uri = spec.tracking.mlflow
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: as Ray's workers see it
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])

    class EpochsToMLflow(MLflowLoggerCallback):
        """An MLflow step per epoch: a report's buffered epochs (``epochs_json``) logged one by one."""

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            epochs = json.loads(result["epochs_json"]) if result.get("epochs_json") else [result]
            for e in epochs:
                metrics = {k: v for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)}
                step = int(e.get("epoch") or result.get("training_iteration") or 0)
                self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)

    return [EpochsToMLflow(tracking_uri=uri, experiment_name=spec.tracking.experiment or spec.name,
                           save_artifact=False)]  # fmt: skip


def _reporter(spec: Spec, verbose: int):
    """A trial table every half minute: the trial, its epoch and its accuracies (not the row JSON)."""
    from ray import tune  # noqa: PLC0415

    metrics = {"epoch": "epoch", "train_loss": "train loss", "test_acc": "test acc"}
    if spec.search is not None:
        metrics["val_acc"] = "val acc"
    params = ["trial"] if spec.search is None else [p.name for p in spec.search.params]
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30,
                            print_intermediate_tables=verbose > 0, max_column_length=48)  # fmt: skip


def _groups(labels: list[str], per_task: int) -> dict[str, list[str]] | None:
    """Configs run ``per_task`` to a Tune trial, in order (None: one each, labelled as themselves).

    A Tune trial costs about a second of dispatch whatever it runs; for trials of a second
    or two, several per task make that cost a fraction (docs/performance.md)."""
    if per_task <= 1:
        return None
    chunks = [labels[i : i + per_task] for i in range(0, len(labels), per_task)]
    return {f"task{i:04d}-{chunk[0]}+{len(chunk) - 1}": chunk for i, chunk in enumerate(chunks)}


def _label(cfg: TrialConfig) -> str:
    distill = f"-T{cfg.temperature:g}-lam{cfg.lam:g}" if cfg.distills else ""
    return f"{cfg.dataset}-{cfg.classes}-q{cfg.qubits}-{cfg.teacher}{distill}-s{cfg.seed}-{cfg.config_hash()[:6]}"


def run_students(spec: Spec, trials: list[TrialConfig], progress=print, verbose: int = 1) -> dict[str, int]:
    """Phase 2: the trials under Ray Tune (a grid, or a study when the spec has ``search:``)."""
    from ray import tune  # noqa: PLC0415

    res = spec.resources
    threads = max(1, int(res.cpus_per_trial))
    storage = spec.results_dir / "tune"  # Tune takes a local path or a URI alike
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if spec.search is None:
        configs = {_label(c): _to_dict(c) for c in trials}
        groups = _groups(list(configs), res.trials_per_task)
        recorder = Recorder(spec, "config_hash", configs, None, total=len(configs), progress=progress,
                            groups=groups)  # fmt: skip
        trainable = tune.with_parameters(_student, configs=configs, groups=groups)
        param_space = {"trial": tune.grid_search(list(groups or configs)), "threads": threads,
                       "report_every_s": REPORT_EVERY_S}  # fmt: skip
        tune_kwargs: dict = {}
        name = f"grid-{stamp}"
    else:
        from sweep.search import study_setup  # noqa: PLC0415

        base = _to_dict(trials[0])
        recorder = Recorder(spec, "trial_id", None, base, total=spec.search.num_samples, progress=progress)
        trainable = tune.with_parameters(_student, base=base)
        param_space, tune_kwargs = study_setup(spec, trials[0])
        param_space["threads"] = threads
        name = f"study-{stamp}"
    trainable = tune.with_resources(trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            **tune_kwargs,
            max_concurrent_trials=res.max_concurrent_trials,
            # One worker process per CPU slot for the whole sweep: importing torch and
            # Qiskit costs seconds, paid once per worker instead of once per trial.
            reuse_actors=True,
            trial_dirname_creator=lambda t: t.trial_id,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=res.max_failures),
            callbacks=[_callback(recorder), *tracking_callbacks(spec)],
            verbose=verbose,
            progress_reporter=_reporter(spec, verbose),
        ),
    )
    try:
        tuner.fit()
    finally:  # a sweep stopped by Ctrl-C leaves its files at rest too (a killed one: the next run does it)
        recorder.close()
    return dict(recorder.counts)


def run_sweep(
    spec: Spec,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    fresh: bool = False,
    only: Iterable[str] = (),
    progress=print,
    verbose: int = 1,
) -> Summary:
    """Plan, check, then run both phases; returns what happened."""
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
    tracking_callbacks(spec)  # a missing extra is one line before anything runs
    local = not (address or os.environ.get("RAY_ADDRESS"))
    connect(address, num_cpus)  # a cluster address that does not answer fails here, in bounded time
    jobs = grid.teacher_jobs(pending)
    check_resources(spec.resources, bool(jobs), local, progress)
    _check_writable(results_dir)
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
    teacher_rows = train_teachers(spec, jobs, progress)
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
        from sweep.search import write_best  # noqa: PLC0415

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


def _check_writable(d: Location) -> None:
    """One clear line, before anything runs, when the results root cannot be written."""
    probe = d / f".write-probe-{os.getpid()}"
    try:
        d.mkdir()
        probe.write_bytes(b"probe")
        probe.delete()
    except OSError as exc:
        raise StorageError(f"paths.results: cannot write to {d}: {exc.strerror or exc}") from None
