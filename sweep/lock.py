"""One driver per results folder: a lock file with its holder and a heartbeat.

Two ``qkd-sweep sweep`` runs of one spec (on one machine, or on two nodes that
share the results storage) would interleave their rewrites of the result files.
The driver therefore holds ``<results>/<name>/.sweep.lock`` while it runs: a
small JSON file naming the holder (host, pid, when it started) and a heartbeat
the holder refreshes every :data:`HEARTBEAT_S` seconds. A second driver that
finds a live holder refuses in one line naming it. A holder is dead when its
heartbeat is older than :data:`STALE_S` (any host), or when it ran on this host
and its process is gone; a dead holder's lock is taken over, with a line saying
so. On a local disk the lock is created with ``O_EXCL``, so two drivers starting
at the same instant cannot both win; on an object store, which has no exclusive
create, the last writer's lock is read back and the loser refuses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time

from workers.io import Location, StorageError

LOCK_NAME = ".sweep.lock"
HEARTBEAT_S = 20.0
STALE_S = 120.0


class SweepBusy(StorageError):
    """The results folder is held by another driver that is still alive."""


def _now() -> float:
    return time.time()


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class SweepLock:
    """``with SweepLock(results_dir, progress):`` holds the folder for the block."""

    def __init__(self, folder: Location, progress=print, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S):
        self.path = folder / LOCK_NAME
        self.progress = progress
        self.stale_s, self.heartbeat_s = stale_s, heartbeat_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "token": os.urandom(8).hex(),
                   "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ holder
    def holder(self) -> dict | None:
        """The lock's contents, or None when there is none (or it is unreadable: a torn write)."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, OSError, ValueError):
            return None

    def dead(self, holder: dict) -> str:
        """Why ``holder`` is dead ('' when it is alive)."""
        age = _now() - float(holder.get("heartbeat", 0))
        if age > self.stale_s:
            return f"its heartbeat is {age:.0f}s old"
        if holder.get("host") == self.me["host"] and not _alive_here(int(holder.get("pid", -1))):
            return f"process {holder.get('pid')} is gone"
        return ""

    def _describe(self, holder: dict) -> str:
        return f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}"

    # ------------------------------------------------------------------ acquire / release
    def _payload(self) -> bytes:
        return json.dumps({**self.me, "heartbeat": _now()}).encode()

    def _create(self) -> bool:
        """Create the lock if there is none; False if one is there."""
        self.path.parent.mkdir()
        if self.path.is_local:
            try:
                fd = os.open(self.path.local_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(self._payload())
            return True
        if self.path.exists():
            return False
        self.path.write_bytes(self._payload())
        return (self.holder() or {}).get("token") == self.me["token"]

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                break
            holder = self.holder()
            if holder is None:  # vanished (released) or torn: look again
                time.sleep(0.2)
                if self.holder() is None:
                    self.path.delete()
                continue
            why = self.dead(holder)
            if not why:
                raise SweepBusy(
                    f"{self.path.parent}: another sweep of this spec is running ({self._describe(holder)}); "
                    f"wait for it to end, or stop it (its lock is {self.path})"
                )
            self.progress(f"taking over the results folder from a dead sweep ({self._describe(holder)}: {why})")
            self.path.delete()
        else:
            raise SweepBusy(f"{self.path}: could not take the sweep lock; another driver keeps taking it")
        self._thread = threading.Thread(target=self._beat, name="sweep-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if (self.holder() or {}).get("token") != self.me["token"]:
                return  # taken over (we were thought dead): never write over the new holder
            try:
                self.path.write_bytes(self._payload())
            except OSError:
                pass  # the next beat tries again; a lock never refreshed goes stale, which is safe

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self.holder() or {}).get("token") == self.me["token"]:
            self.path.delete()

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
