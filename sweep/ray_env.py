"""The Ray environment: joining a cluster, or starting a local Ray that listens on loopback only.

Also what Ray prints that a user of this tool cannot act on (a notice dropped, not the
setting behind it), and the home folder that keeps a local Ray head from asking cloud
metadata services where it runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping

import ray
from ray import cloudpickle

from sweep.spec_errors import SpecError
from workers import refs
from workers.refs import RefError, last_line
from workers.runtime import HOOKS

#: (job id, worker set-up hook, the user's objects pickled by reference) of the Ray this
#: process last started or joined.
_started: tuple[str, str, dict[str, bytes]] | None = None


def connect(address: str | None = None, num_cpus: int | None = None, qiskit: bool = True,
            objects: Mapping[str, Callable] | None = None) -> None:  # fmt: skip
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start a local Ray on loopback.

    ``qiskit``: whether the workers will build circuits for Qiskit, which decides their
    set-up hook (:data:`workers.runtime.HOOKS`); a Ray this process started without the
    Qiskit hook is restarted for a sweep that needs it.

    ``objects``: the user's objects registered in this process (:data:`workers.refs.REGISTERED`,
    a notebook's circuit), by reference, that the sweep's trials name. They go to every worker
    process in its set-up hook (:class:`WorkerSetup`, pickled by value with cloudpickle), so a
    worker resolves the reference to the same object. The hook is fixed when Ray starts, so a
    Ray this process started without one of them (or with another object under its reference)
    is restarted with all it had and the new ones; a Ray started elsewhere cannot take them,
    which is one line (:class:`~sweep.spec_errors.SpecError`) instead of trials failing on the workers.

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

    if address:
        _check_address(address)  # even in a process that already has a Ray: --address must answer
    hook = HOOKS[bool(qiskit)]
    shipped = pickled(objects or {})
    if ray.is_initialized():
        mine = _started is not None and _started[0] == ray.get_runtime_context().get_job_id()
        if not mine:
            if shipped:
                raise SpecError("ray", f"this process's Ray was started outside qkd-sweep, so {', '.join(shipped)} "
                                "(defined here) cannot reach its workers; call ray.shutdown() first")  # fmt: skip
            return
        _, started_hook, started_objects = _started
        new_objects = {k: v for k, v in shipped.items() if started_objects.get(k) != v}
        if not (qiskit and started_hook == HOOKS[False]) and not new_objects:
            return
        ray.shutdown()  # this process's own Ray, started without Qiskit or without these objects
        hook = HOOKS[bool(qiskit) or started_hook == HOOKS[True]]
        shipped = {**started_objects, **shipped}
    runtime_env = {"worker_process_setup_hook": WorkerSetup(hook, shipped) if shipped else hook}
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        _remember(hook, shipped)
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
    _remember(hook, shipped)


def _remember(hook: str, shipped: dict[str, bytes]) -> None:
    global _started
    _started = (ray.get_runtime_context().get_job_id(), hook, shipped)


def pickled(objects: Mapping[str, Callable]) -> dict[str, bytes]:
    """Each object pickled by value where it must be (a function of ``__main__``, or defined
    inside another) by cloudpickle, by reference where it imports; one line if it cannot be."""
    if not objects:
        return {}

    out = {}
    for ref, obj in sorted(objects.items()):
        try:
            out[ref] = cloudpickle.dumps(obj)
        except Exception as exc:  # noqa: BLE001 - whatever the user's object holds (a lock, a file)
            raise SpecError(ref, f"cannot be sent to the Ray workers: {last_line(exc)}") from None
    return out


class WorkerSetup:
    """A Ray worker's set-up hook that also installs the user's objects: the named hook
    (:data:`workers.runtime.HOOKS`, Qiskit first, on the main thread), then each object into
    :data:`workers.refs.REGISTERED`. Ray pickles this instance with the job's runtime env and
    runs it as each of the job's worker processes starts. An object that does not unpickle
    there (its module missing on that node) is registered as a callable that raises that in
    one line, so the trial that names it fails with a row saying why."""

    #: Ray names the hook by its function's name.
    __name__ = "qkd_sweep_worker_setup"

    def __init__(self, hook: str, objects: dict[str, bytes]):
        self.hook, self.objects = hook, dict(objects)

    def __call__(self) -> None:
        module, _, name = self.hook.rpartition(".")
        getattr(importlib.import_module(module), name)()
        for ref, blob in self.objects.items():
            try:
                refs.REGISTERED[ref] = cloudpickle.loads(blob)
            except Exception as exc:  # noqa: BLE001 - the user's object, on another machine
                refs.REGISTERED[ref] = _Unloadable(ref, last_line(exc))


class _Unloadable:
    """What a worker registers for an object it could not unpickle."""

    def __init__(self, ref: str, reason: str):
        self.ref, self.reason = ref, reason

    def __call__(self, *args, **kwargs):
        raise RefError(f"{self.ref!r} could not be loaded on this Ray worker: {self.reason}")


def _quiet_home() -> str:
    """A home folder for the Ray head processes holding a ``ray_bootstrap_config.yaml``.

    Without that file a Ray head asks the cloud metadata services
    (169.254.169.254, metadata.google.internal) which cloud it runs on, usage
    statistics off or not; with it, it reads the provider from the file and
    sends nothing. Measured with strace on this machine (Ray 2.60).
    """

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

    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()  # a probe, nothing sent
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

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported before the variable was set
        constants.ENABLE_RAY_CLUSTER = False


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
