"""Damaged data files as one line naming the file and what is wrong, not a traceback.

A partly downloaded or damaged file is the bad input a dataset tool meets most. torchvision
parses what it is given: a truncated IDX file ends in an AssertionError or a RuntimeError
about a tensor's shape, a CIFAR10 batch that is no pickle in whatever ``pickle`` raises.
The checks here run first and raise :class:`~workers.io.DataError` (one line, exit 2 from
the command line; before Ray starts in a sweep's preflight).

* IDX files (MNIST, FashionMNIST; :func:`read_idx` for any other): the header is checked
  before torchvision parses the file (magic number and type byte, dimension count, sizes,
  the file's length against what the header says, images and labels of a split agreeing
  in count, labels in range). That reads the header and the labels, never the images'
  body, so that valid files load as fast as before.
* CIFAR10's python batches: torchvision checks each file's published MD5 before it
  unpickles it; a damaged file fails that check, or (with checksums it was told) its
  parse. Only then are the batches read here, with an unpickler that builds nothing but
  numpy arrays and plain containers (a file that failed its checksum is untrusted), to
  name the file and the problem. Checking up front would unpickle every batch twice on
  every load (0.04-0.06 s per 30 MB batch on the dev VM, about 0.3 s a load, and twice the
  memory while it lasts); a valid set pays nothing this way.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.io import DataError

#: The class labels of every dataset here (the class subsets pick from 0-9).
N_CLASSES = 10

#: IDX type byte -> (its name in the format's description, the big-endian numpy type).
IDX_TYPES = {
    0x08: ("unsigned byte", ">u1"),
    0x09: ("signed byte", ">i1"),
    0x0B: ("short", ">i2"),
    0x0C: ("int", ">i4"),
    0x0D: ("float", ">f4"),
    0x0E: ("double", ">f8"),
}
#: Dimensions an IDX file here may have: numpy 1's limit (numpy 2 takes 64; a header may claim 255).
_MAX_DIMS = 32
#: The first bytes of files that are not what they are named: what a partial or wrong download leaves.
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
)


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"data_root: {path}: {what}")


def _n(x: int) -> str:
    return f"{x:,}"


def _sniff(head: bytes) -> str | None:
    """What a file that is not the format it is named looks like (compressed, a web page)."""
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return f"{what}, not the raw file (decompress it)"
    if head.lstrip()[:1] == b"<":
        return "an HTML or XML page, not the data file (a failed download?)"
    return None


def check_places(folder: Path, files: Iterable[str]) -> None:
    """The data root and its folders must be folders, and each data file's place must not be a
    folder: otherwise a file reads as "missing" offline, and a download fails on the rename."""
    try:
        p = folder
        while not p.exists() and p != p.parent:
            p = p.parent
        if not p.is_dir():
            raise DataError(f"data_root: {p} is a file, not a folder (the data files go under {folder})")
        for name in files:
            if (folder / name).is_dir():
                raise _fail(folder / name, "a folder, where the data file should be")
    except OSError as exc:
        raise DataError(f"data_root: cannot read {folder}: {exc.strerror or exc}") from None


def _head_and_size(path: Path, n: int) -> tuple[bytes, int]:
    """The first ``n`` bytes of a file and its size; an unreadable one is one line."""
    try:
        with open(path, "rb") as f:
            return f.read(n), os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise _fail(path, "a folder, where the data file should be") from None
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX file's header says: the items' type and the array's shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def offset(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def nbytes(self) -> int:
        """The file's length, header and body, that the header says."""
        return self.offset + math.prod(self.shape) * self.dtype.itemsize


def idx_header(path: Path, head: bytes, size: int, kind: int | None = None, dims: tuple[str, ...] = ()) -> IdxHeader:
    """The header of the IDX file ``path`` (``head``: its first bytes, at least 1,024 of them
    or all; ``size``: its length), checked against the file's length. ``kind`` (a type byte)
    and ``dims`` (one name per dimension) are what the caller reads; they are checked before
    the length, so that a flipped type byte or dimension count is named as such, not as a
    file of the wrong length."""
    if size == 0:
        raise _fail(path, "empty (0 bytes)")
    if size < 4 or head[:2] != b"\x00\x00":
        found = _sniff(head)
        if found:
            raise _fail(path, found)
        if size < 4:
            raise _fail(path, f"truncated: {_n(size)} bytes, shorter than the 4-byte IDX magic number")
        raise _fail(path, f"not an IDX file: magic number 0x{head[:4].hex()} (an IDX file starts with two zero "
                          "bytes, a type byte and a dimension count)")  # fmt: skip
    got, nd = head[2], head[3]
    if got not in IDX_TYPES:
        raise _fail(path, f"type byte 0x{got:02x} is no IDX type (0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e)")
    if kind is not None and got != kind:
        raise _fail(path, f"type byte 0x{got:02x} ({IDX_TYPES[got][0]}), expected 0x{kind:02x} ({IDX_TYPES[kind][0]})")
    if dims and nd != len(dims):
        raise _fail(path, f"the header gives {nd} dimensions, expected {len(dims)} ({' x '.join(dims)})")
    if nd == 0:
        raise _fail(path, "the header gives 0 dimensions")
    if nd > _MAX_DIMS:
        raise _fail(path, f"the header gives {nd} dimensions, more than the {_MAX_DIMS} an array can have")
    offset = 4 + 4 * nd
    if size < offset:
        raise _fail(path, f"truncated: {_n(size)} bytes, shorter than its {_n(offset)}-byte header")
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    header = IdxHeader(np.dtype(IDX_TYPES[got][1]), shape)
    if size < header.nbytes:
        raise _fail(path, f"truncated: {_n(size)} bytes, the header says {_n(header.nbytes)}")
    if size > header.nbytes:
        raise _fail(path, f"too long: {_n(size)} bytes, the header says {_n(header.nbytes)}")
    if math.prod(max(d, 1) for d in shape) * header.dtype.itemsize > np.iinfo(np.intp).max:  # a 0 among huge sizes
        raise _fail(path, f"sizes {' x '.join(map(_n, shape))}: more than an array can hold")
    return header


def _header_of(path: Path, kind: int | None = None, dims: tuple[str, ...] = ()) -> IdxHeader:
    head, size = _head_and_size(path, 4 + 4 * 255)
    return idx_header(path, head, size, kind, dims)


def read_idx(path: str | Path, kind: int | None = None, dims: tuple[str, ...] = ()) -> np.ndarray:
    """Any IDX file as an array of its shape (native byte order), or one line saying what is
    wrong (``kind`` and ``dims`` as :func:`idx_header` takes them)."""
    path = Path(path)
    header = _header_of(path, kind, dims)
    try:
        with open(path, "rb") as f:
            body = f.read()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if len(body) != header.nbytes:  # changed since its header was read
        raise _fail(path, f"changed while read: {_n(len(body))} bytes, the header says {_n(header.nbytes)}")
    items = np.frombuffer(body, dtype=header.dtype, offset=header.offset)
    return items.reshape(header.shape).astype(header.dtype.newbyteorder("="))


def check_idx_split(images: Path, labels: Path, image_hw: tuple[int, int], n_classes: int = N_CLASSES) -> None:
    """One split's images and labels as torchvision's MNIST reads them: unsigned bytes,
    ``count x rows x columns`` images of ``image_hw``, ``count`` labels below ``n_classes``
    (the labels are read, 60 kB for MNIST's training split; the images' body is not)."""
    hi = _header_of(images, 0x08, ("count", "rows", "columns"))
    hl = _header_of(labels, 0x08, ("count",))
    if hi.shape[1:] != tuple(image_hw):
        raise _fail(images, f"images of {hi.shape[1]} x {hi.shape[2]} pixels, expected {image_hw[0]} x {image_hw[1]}")
    if hi.shape[0] == 0:
        raise _fail(images, "holds no images")
    if hl.shape[0] != hi.shape[0]:
        raise _fail(labels, f"{_n(hl.shape[0])} labels, but {images.name} holds {_n(hi.shape[0])} images")
    values = read_idx(labels, 0x08, ("count",))
    bad = np.flatnonzero(values >= n_classes)
    if len(bad):
        raise _fail(labels, f"label {values[bad[0]]} at item {_n(int(bad[0]))} is out of range (0-{n_classes - 1})")


# ------------------------------------------------------------------- CIFAR10
#: What a CIFAR10 batch may build while it is unpickled: numpy arrays (as numpy 1 and 2,
#: and Python 2's cPickle, wrote them) and bytes; anything else is refused, not called.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_CIFAR_PIXELS = 3 * 32 * 32


class _Refused(pickle.UnpicklingError):
    """A pickle that names a function a CIFAR10 batch never calls."""


def _encode(text, encoding="latin1", *rest):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: a latin-1 string, nothing else."""
    if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("a pickle that encodes something other than bytes (refused)")
    return text.encode("latin1")


def _bytes(*args):
    """``bytes`` as protocol-2 pickles use it (``bytes()`` for b""); not ``bytes(n)``, which
    would fill n zero bytes of memory."""
    if args and not (len(args) <= 2 and isinstance(args[0], str)):
        raise _Refused("a pickle that makes bytes of something other than a string (refused)")
    return _encode(*args) if args else b""


_BYTES = {("_codecs", "encode"): _encode, ("__builtin__", "bytes"): _bytes, ("builtins", "bytes"): _bytes}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _BYTES:
            return _BYTES[module, name]
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"a pickle that refers to {module}.{name}, which no CIFAR10 batch does (refused, not called)")


def _unpickle(path: Path):
    head, size = _head_and_size(path, 16)
    if size == 0:
        raise _fail(path, "empty (0 bytes)")
    found = _sniff(head)
    if found:
        raise _fail(path, found)
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    except _Refused as exc:
        raise _fail(path, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 (a damaged pickle raises anything from EOFError to MemoryError)
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise _fail(path, f"not a readable pickle ({type(exc).__name__}{': ' + text if text else ''})") from None


def check_cifar_batch(path: Path) -> int:
    """One python batch as torchvision's CIFAR10 reads it: a dict whose 'data' is an
    N x 3072 array of unsigned bytes and whose 'labels' are N integers 0-9; returns N."""
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise _fail(path, f"a pickled {type(batch).__name__}, expected a dict with 'data' and 'labels'")
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        keys = ", ".join(repr(k) for k in list(batch)[:8])
        raise _fail(path, f"no {' or '.join(repr(k) for k in missing)} in the batch (its keys: {keys or 'none'})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        shown = f"a {type(data).__name__}"
        if isinstance(data, np.ndarray):
            shown = f"an array of {data.dtype} of shape {' x '.join(map(str, data.shape)) or '()'}"
        raise _fail(path, f"'data' is {shown}, expected N x {_CIFAR_PIXELS} unsigned bytes (3 x 32 x 32 per image)")
    labels = batch["labels"]
    try:
        values = np.asarray(labels)
        ok = values.ndim == 1 and (values.size == 0 or values.dtype.kind in "iu")
    except Exception:  # noqa: BLE001 (ragged or odd objects: not a list of integers either way)
        ok = False
    if not ok:
        raise _fail(path, "'labels' is not a list of integers")
    if len(data) == 0:
        raise _fail(path, "holds no images")
    if len(values) != len(data):
        raise _fail(path, f"{_n(len(values))} labels for {_n(len(data))} images")
    bad = np.flatnonzero((values < 0) | (values >= N_CLASSES))
    if len(bad):
        raise _fail(path, f"label {values[bad[0]]} at item {_n(int(bad[0]))} is out of range (0-{N_CLASSES - 1})")
    return len(data)


def check_cifar_meta(path: Path, key: str = "label_names") -> None:
    meta = _unpickle(path)
    if not isinstance(meta, dict) or not isinstance(meta.get(key), list) or len(meta[key]) != N_CLASSES:
        raise _fail(path, f"expected a dict whose {key!r} lists the {N_CLASSES} class names")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cifar_problem(folder: Path, cls, exc: BaseException | None) -> DataError:
    """Why torchvision's CIFAR10 (``cls``, with the checksums it holds) failed or read
    something inconsistent: the first damaged file, else the files whose MD5 differs from
    the published one, else torchvision's own words."""
    for name, _ in [*cls.train_list, *cls.test_list]:
        check_cifar_batch(folder / name)
    check_cifar_meta(folder / cls.meta["filename"], cls.meta["key"])
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    differ = [name for name, md5 in files if _md5(folder / name) != md5]
    if differ:
        return DataError(f"data_root: CIFAR10 under {folder}: {', '.join(differ)} corrupted: the MD5 differs from "
                         "the published one (download the files again)")  # fmt: skip
    if exc is None:
        return DataError(f"data_root: CIFAR10 under {folder}: torchvision read images and labels that disagree")
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return DataError(f"data_root: CIFAR10 under {folder}: {text}")


def read_cifar(cls, root: str, train: bool, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split through torchvision's ``cls`` (CIFAR10): its images (N x 32 x 32 x 3 bytes)
    and labels, or the one line :func:`cifar_problem` gives when that fails or reads
    images and labels that disagree."""
    try:
        ds = cls(root, train=train, download=False)
        x, y = np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
        ok = x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(x) == len(y) > 0
        ok = ok and 0 <= y.min() and y.max() < N_CLASSES
        exc = None
    except Exception as err:  # noqa: BLE001 (whatever a damaged batch makes torchvision raise)
        ok, exc = False, err
    if not ok:
        raise cifar_problem(folder, cls, exc)
    return x, y
