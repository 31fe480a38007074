"""Files written whole or not at all, on a local disk or any file system pyarrow knows.

A :class:`Location` is a path on a file system: a plain path is the local
disk; a URI (``s3://bucket/cache``, ``gs://...``, ``file:///...``, or any
scheme fsspec knows, such as ``memory://``) is resolved by
:func:`pyarrow.fs.FileSystem.from_uri`, falling back to fsspec. Every node of a
cluster that is given the same URI reads and writes the same files.

Writes never show a reader half a file: on a local disk (and other file
systems that can rename) the bytes go to a temporary name in the same folder
and are renamed onto the target; on an object store (S3, GCS) an object only
becomes visible when its upload completes, so it is written in place. Two
writers of the same file leave one whole file, the last one's.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

#: File systems whose objects appear whole when their upload completes (and cannot be renamed cheaply).
_OBJECT_STORES = ("s3", "gcs")


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file (mkstemp's 0600 would hide results
    from the other users and containers that share a results volume)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class StorageError(OSError):
    """A storage location that cannot be used (unknown scheme, not writable, full)."""


class DataError(RuntimeError):
    """Data that cannot be had: missing files offline, too few samples in a class (raised by
    :mod:`workers.data`; defined here so that catching it imports no torch)."""


def _is_uri(text: str) -> bool:
    return "://" in text


@dataclass(frozen=True, eq=False)
class Location:
    """A file or folder on a file system; ``uri`` is how the user wrote it (for messages)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def _id(self) -> tuple:
        return (self.fs.type_name, self.path.rstrip("/"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and self._id() == other._id() and self.fs.equals(other.fs)

    def __hash__(self) -> int:
        return hash(self._id())

    def __truediv__(self, name: str) -> Location:
        sep = "" if self.uri.endswith("/") else "/"
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.uri}{sep}{name}")

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        path, uri = self.path.rstrip("/"), self.uri.rstrip("/")
        return Location(self.fs, path.rsplit("/", 1)[0], uri.rsplit("/", 1)[0])

    def __fspath__(self) -> str:
        """Local locations pass wherever a path does (pandas, safetensors, open)."""
        return str(self.local_path)

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri} is not on the local disk")
        return Path(self.path)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def files(self) -> list[Location]:
        """The files directly in this folder, by name (none when it is not a folder)."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
        return [self / name for name in names]

    def move(self, to: Location) -> None:
        """Rename this file or folder to ``to`` (one rename on a local disk; an object store
        copies and deletes)."""
        self.fs.move(self.path, to.path)

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def delete(self) -> None:
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_file(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_parquet(self) -> pa.Table:
        return pq.read_table(self.path, filesystem=self.fs)

    def write_bytes(self, data: bytes) -> None:
        """Write ``data`` whole or not at all (see the module docstring)."""
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        if self.fs.type_name in _OBJECT_STORES:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        self.fs.create_dir(parent, recursive=True)
        if self.is_local:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".tmp", dir=parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, _file_mode())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        tmp = f"{parent}/.{self.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise


def location(where: str | Path | Location) -> Location:
    """A plain path (local disk) or a URI, as a :class:`Location`."""
    if isinstance(where, Location):
        return where
    text = str(where)
    if not _is_uri(text):
        return Location(pafs.LocalFileSystem(), str(Path(text).absolute()), text)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        try:
            import fsspec  # noqa: PLC0415

            protocol = text.split("://", 1)[0]
            fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(protocol)))
            path = text.split("://", 1)[1]
        except (ImportError, ValueError) as exc2:
            raise StorageError(f"{text}: no file system for this URI ({exc}; fsspec: {exc2})") from None
    return Location(fs, path, text)


def atomic_write(path: str | Path | Location, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a local temporary file and put the result at ``path`` whole."""
    loc = location(path)
    if loc.is_local:
        local = loc.local_path
        local.parent.mkdir(parents=True, exist_ok=True)
        # The writer's host and pid in the name: a killed writer's leftover is recognisably
        # stale (remove_stale_temporaries), a live one's is left alone.
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}~{_HOST}~{os.getpid()}~", suffix=".tmp", dir=local.parent)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, _file_mode())
            os.replace(tmp, local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, loc.name)
        write(tmp)
        loc.write_bytes(Path(tmp).read_bytes())


_HOST = socket.gethostname().replace("~", "-")
_TEMPORARY = re.compile(r"^\.(?P<name>.+)~(?P<host>[^~]+)~(?P<pid>\d+)~[^~]*\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temporaries(folder: str | Path | Location) -> list[str]:
    """Delete the temporaries :func:`atomic_write` left in ``folder`` when its process was
    killed mid-write: those written on this host by a process that no longer runs. A live
    writer's, or another host's, are left alone. Returns the names removed."""
    loc = location(folder)
    if not loc.is_local or not loc.local_path.is_dir():
        return []
    removed = []
    for p in sorted(loc.local_path.glob(".*.tmp")):
        m = _TEMPORARY.match(p.name)
        if m and m["host"] == _HOST and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def write_parquet(table: pa.Table, path: str | Path | Location) -> None:
    loc = location(path)
    if loc.is_local:
        atomic_write(loc, lambda tmp: pq.write_table(table, tmp))
        return
    buf = io.BytesIO()
    pq.write_table(table, buf)
    loc.write_bytes(buf.getvalue())


def write_json(obj, path: str | Path | Location) -> None:
    location(path).write_bytes(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
