"""The checks before anything runs: the data, the cluster's nodes, the results folder.

Each failure is one line naming the field or file (a :class:`~sweep.spec_errors.SpecError`
or a :class:`~workers.io.StorageError`, exit 2) before a teacher trains or a row is
written: missing or damaged data files or too few samples (:func:`preflight`, before Ray
starts), a results root or teacher cache that cannot be made (:func:`check_creatable`,
:func:`check_caches`, before Ray starts), a task no node of the Ray can hold
(:func:`check_resources`), a results root that cannot be written (:func:`check_writable`).
"""

from __future__ import annotations

import os

from sweep.spec import Resources
from sweep.spec_errors import SpecError
from workers.config import TrialConfig
from workers.io import Location, StorageError, location


def preflight(trials: list[TrialConfig]) -> None:
    """Load every dataset and draw every split the trials need, before Ray starts:
    missing or damaged files or too few samples are one line and exit 2, not a failed trial.
    The splits come from the function the trial itself draws them with."""
    from workers.trial import trial_data  # noqa: PLC0415 (torch, only when a sweep runs)

    seen = set()
    for cfg in trials:
        r = cfg.resolved()
        key = (r.dataset, r.class_labels, r.data_root, r.samples_per_class, r.test_samples_per_class,
               r.val_samples_per_class, r.take_available, r.selection, r.normalize)  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        trial_data(cfg)


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


def check_creatable(d: Location, field: str = "paths.results") -> None:
    """What can be told without writing: a local folder (the results root, the teacher cache,
    a trial's --out; ``field`` names it) whose nearest existing folder is a file, or not
    writable, is one line before anything runs (``check_writable`` probes for real)."""
    if not d.is_local:
        return
    if "\x00" in d.path:  # Path.exists() says False, and the write would fail
        raise StorageError(f"{field}: cannot write to {d}: a path cannot hold a NUL character")
    try:
        path = d.local_path
        while not path.exists() and path != path.parent:
            path = path.parent
        if not path.is_dir():
            raise StorageError(f"{field}: cannot write to {d}: {path} is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f"{field}: cannot write to {d}: {path} is not writable")
    except (OSError, ValueError) as exc:  # a folder the system will not stat; a name it refuses
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"{field}: cannot write to {d}: {getattr(exc, 'strerror', None) or exc}") from None


def check_caches(trials: list[TrialConfig]) -> None:
    """The teacher caches the trials name (a spec's paths.cache), as :func:`check_creatable`
    checks the results root: a teacher would otherwise train for minutes, then fail to keep it."""
    for cache in sorted({cfg.cache_dir for cfg in trials if cfg.cache_dir}):
        try:
            where = location(cache)
        except StorageError as exc:  # a URI no file system takes
            raise StorageError(f"paths.cache: {exc}") from None
        check_creatable(where, "paths.cache")


def check_writable(d: Location) -> None:
    """One clear line, before anything runs, when the results root cannot be written."""
    probe = d / f".write-probe-{os.getpid()}"
    try:
        d.mkdir()
        probe.write_bytes(b"probe")
        probe.delete()
    except OSError as exc:
        raise StorageError(f"paths.results: cannot write to {d}: {exc.strerror or exc}") from None
