"""Damaged data files and unusable output folders: one line naming the file (or folder) and
what is wrong, exit 2, nothing written; never a traceback (issue 24, part 1).

Tiny valid IDX and CIFAR10 files are written in their real formats, then damaged: cut,
extended, a wrong magic number, type byte or dimension count, compressed under the raw
name, empty, a folder in the file's place, a data root that is a file, images and labels
that disagree, a label out of range; CIFAR10 batches that are no pickle, a pickle of the
wrong keys or shapes. Each goes through ``load_dataset`` (and so through torchvision as a
trial reads it); a few through ``qkd-sweep trial`` and ``qkd-sweep sweep`` too. Hypothesis
then fuzzes the IDX reader and the MNIST loader: random headers and bodies give a valid
parse or a DataError, never another exception.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_data import RAW_NAMES, write_idx_dataset

import workers.data as data
import workers.datafiles as datafiles
from sweep.cli import main
from workers.datafiles import read_idx
from workers.io import DataError

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = RAW_NAMES
CLI = Path(sys.executable).with_name("qkd-sweep")
PREFIX = "qkd-sweep: error: "


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    data._raw.cache_clear()
    yield
    data._raw.cache_clear()


def load(root: Path, name: str = "mnist"):
    return data.load_dataset(name, (0, 1), data_root=str(root), download=False)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("data_root: "), msg
    return msg


# ---------------------------------------------------------------------- IDX
@pytest.fixture
def mnist(tmp_path) -> Path:
    """A valid tiny MNIST (60 training images, 40 test) under tmp_path/data; returns its raw folder."""
    write_idx_dataset(tmp_path / "data", "MNIST", 6, 4, seed=0)
    return tmp_path / "data" / "MNIST" / "raw"


def _idx(kind: int, shape: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, kind, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + body


def test_valid_files_load_as_before(mnist):
    """The checks pass valid files, and the arrays are torchvision's (checked against the bytes written)."""
    raw = data._raw("mnist", str(mnist.parents[1]), False)
    images = np.frombuffer((mnist / TRAIN_IMAGES).read_bytes()[16:], np.uint8).reshape(60, 28, 28)
    labels = np.frombuffer((mnist / TEST_LABELS).read_bytes()[8:], np.uint8)
    np.testing.assert_array_equal(raw[0], images.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(raw[3], labels.astype(np.int64))
    np.testing.assert_array_equal(read_idx(mnist / TRAIN_IMAGES), images)


#: (file, damage, what the line says). Sizes: 60 images of 28 x 28 after a 16-byte header = 47,056 bytes.
IDX_CASES = [
    (TRAIN_IMAGES, lambda b: b[:-100], "truncated: 46,956 bytes, the header says 47,056"),
    (TRAIN_IMAGES, lambda b: b + bytes(12), "too long: 47,068 bytes, the header says 47,056"),
    (TEST_LABELS, lambda b: b[:-1], "truncated: 47 bytes, the header says 48"),
    (TRAIN_IMAGES, lambda b: b[:10], "truncated: 10 bytes, shorter than its 16-byte header"),
    (TRAIN_IMAGES, lambda b: b[:3], "truncated: 3 bytes, shorter than the 4-byte IDX magic number"),
    (TRAIN_IMAGES, lambda b: b"\x12\x34" + b[2:], "not an IDX file: magic number 0x12340803"),
    (TRAIN_IMAGES, lambda b: b[:2] + b"\x0d" + b[3:], "type byte 0x0d (float), expected 0x08 (unsigned byte)"),
    (TRAIN_LABELS, lambda b: b[:2] + b"\x0b" + b[3:], "type byte 0x0b (short), expected 0x08 (unsigned byte)"),
    (TRAIN_IMAGES, lambda b: b[:2] + b"\x07" + b[3:], "type byte 0x07 is no IDX type"),
    (TRAIN_IMAGES, lambda b: b[:3] + b"\x02" + b[4:], "the header gives 2 dimensions, expected 3 (count x rows x col"),
    (TEST_LABELS, lambda b: b[:3] + b"\x03" + b[4:], "the header gives 3 dimensions, expected 1 (count)"),
    (TRAIN_IMAGES, gzip.compress, "gzip-compressed, not the raw file (decompress it)"),
    (TEST_LABELS, gzip.compress, "gzip-compressed, not the raw file (decompress it)"),
    (TRAIN_IMAGES, lambda b: b"<!DOCTYPE html><html>Not Found</html>", "an HTML or XML page"),
    (TEST_IMAGES, lambda b: b"", "empty (0 bytes)"),
    (TRAIN_IMAGES, lambda b: _idx(8, (60, 32, 32), bytes(60 * 1024)), "images of 32 x 32 pixels, expected 28 x 28"),
    (TRAIN_IMAGES, lambda b: _idx(8, (0, 28, 28), b""), "holds no images"),
    (TRAIN_LABELS, lambda b: _idx(8, (59,), b[8:-1]), "59 labels, but train-images-idx3-ubyte holds 60 images"),
    (TEST_LABELS, lambda b: b[:8 + 7] + b"\x0c" + b[8 + 8 :], "label 12 at item 7 is out of range (0-9)"),
    (TEST_LABELS, lambda b: b[:-1] + b"\xff", "label 255 at item 39 is out of range (0-9)"),
]  # fmt: skip


@pytest.mark.parametrize("name,damage,expected", IDX_CASES, ids=[f"{c[0][:9]}-{c[2][:24]}" for c in IDX_CASES])
def test_a_damaged_idx_file_is_one_line_naming_it(mnist, name, damage, expected):
    path = mnist / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as err:
        load(mnist.parents[1])
    assert one_line(err).startswith(f"data_root: {path}: {expected}"), err.value


def test_a_big_file_cut_short_reads_with_thousands_separators(tmp_path):
    """MNIST's real training images are 47,040,016 bytes; one cut at 700,000 says so."""
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx(8, (60000, 28, 28), bytes(700_000 - 16)))
    with pytest.raises(DataError, match="truncated: 700,000 bytes, the header says 47,040,016$"):
        read_idx(path)


def test_fashionmnist_is_checked_the_same(tmp_path):
    write_idx_dataset(tmp_path, "FashionMNIST", 2, 2, seed=0)
    path = tmp_path / "FashionMNIST" / "raw" / TRAIN_LABELS
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError) as err:
        load(tmp_path, "fashionmnist")
    assert one_line(err) == f"data_root: {path}: truncated: 25 bytes, the header says 28"


@pytest.mark.parametrize("name", RAW_NAMES)
def test_a_folder_in_place_of_a_file(mnist, name):
    (mnist / name).unlink()
    (mnist / name).mkdir()
    for download in (False, True):  # named before a download is tried, too (it would fail on the folder)
        with pytest.raises(DataError) as err:
            data.load_dataset("mnist", (0, 1), data_root=str(mnist.parents[1]), download=download)
        assert one_line(err) == f"data_root: {mnist / name}: a folder, where the data file should be"


@pytest.mark.parametrize("where", ["root", "dataset-folder", "raw-folder"])
def test_a_data_root_that_is_a_file(tmp_path, where):
    root = tmp_path / "data"
    file = {"root": root, "dataset-folder": root / "MNIST", "raw-folder": root / "MNIST" / "raw"}[where]
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"not a folder")
    for download in (False, True):
        with pytest.raises(DataError) as err:
            data.load_dataset("mnist", (0, 1), data_root=str(root), download=download)
        assert one_line(err).startswith(f"data_root: {file} is a file, not a folder"), err.value


def test_an_unreadable_file(mnist, monkeypatch):
    """(Root reads any file, so the refusal is simulated where the checks open the file.)"""
    path = mnist / TRAIN_LABELS

    def refuse(p, *a, **k):
        if Path(p) == path:
            raise PermissionError(13, "Permission denied", str(p))
        return open(p, *a, **k)

    monkeypatch.setattr(datafiles, "open", refuse, raising=False)
    with pytest.raises(DataError) as err:
        load(mnist.parents[1])
    assert one_line(err) == f"data_root: {path}: cannot read (Permission denied)"


def test_read_idx_reads_every_type_big_endian(tmp_path):
    """Each IDX type, written big-endian, reads back as its values (native byte order)."""
    for kind, (_, code) in datafiles.IDX_TYPES.items():
        values = np.arange(-3, 9).reshape(3, 2, 2).astype(code)
        path = tmp_path / f"t{kind}"
        path.write_bytes(_idx(kind, values.shape, values.tobytes()))
        got = read_idx(path)
        assert got.dtype == np.dtype(code).newbyteorder("=") and got.dtype.isnative
        np.testing.assert_array_equal(got, values)


def test_read_idx_rejects_sizes_no_array_holds(tmp_path):
    path = tmp_path / "zero"
    path.write_bytes(_idx(8, (0, 2**32 - 1, 2**32 - 1), b""))
    with pytest.raises(DataError, match=r"sizes 0 x 4,294,967,295 x 4,294,967,295: more than an array can hold"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 40]) + bytes(160))
    with pytest.raises(DataError, match="40 dimensions, more than the 32"):
        read_idx(path)


# ------------------------------------------------------------------ CIFAR10
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _batch(n: int, rng: np.random.Generator) -> dict:
    labels = [int(c) for c in rng.integers(0, 10, n)]
    return {"batch_label": "generated", "labels": labels, "filenames": ["x.png"] * n,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}  # fmt: skip


@pytest.fixture
def cifar(tmp_path) -> Path:
    """CIFAR10's python batches in their real form (pickled dicts, 4 images a batch); returns the folder."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in CIFAR_BATCHES:
        (folder / name).write_bytes(pickle.dumps(_batch(4, rng), protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    return folder


def tell_checksums(monkeypatch, folder: Path) -> None:
    """torchvision told the files' own MD5s (as if they were the published ones), so that its
    checksum passes and its parse meets the damage."""
    from torchvision.datasets import CIFAR10

    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in folder.iterdir() if f.is_file()}
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})


def test_valid_cifar_loads_and_differs_from_the_published_checksums_only(cifar, monkeypatch):
    """Generated files are not the published ones: torchvision's checksum fails, and the line
    names every file; told their checksums, they load as written."""
    with pytest.raises(DataError) as err:
        load(cifar.parent, "cifar10-rgb")
    msg = str(err.value)
    assert msg.startswith(f"data_root: CIFAR10 under {cifar}: data_batch_1, data_batch_2") and "\n" not in msg
    assert "batches.meta corrupted: the MD5 differs from the published one" in msg
    tell_checksums(monkeypatch, cifar)
    x = data._raw("cifar10-rgb", str(cifar.parent), False)
    test = pickle.loads((cifar / "test_batch").read_bytes(), encoding="latin1")
    np.testing.assert_array_equal(x[2], test["data"].reshape(-1, 3, 32, 32) / np.float32(255.0))
    np.testing.assert_array_equal(x[3], test["labels"])


class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote CIFAR10's batches: bytes as BINSTRING (a str of
    Python 2), numpy's functions under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_python2_batches_pass_the_checks(cifar, monkeypatch):
    """The real batches are Python 2 pickles: they pass the arrays-only unpickler's checks
    (and torchvision reads them to the same arrays)."""
    rng = np.random.default_rng(1)
    for name in CIFAR_BATCHES:
        (cifar / name).write_bytes(py2_pickle(_batch(5, rng)))
    raw = (cifar / "test_batch").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    assert datafiles.check_cifar_batch(cifar / "test_batch") == 5
    tell_checksums(monkeypatch, cifar)
    x = data._raw("cifar10-rgb", str(cifar.parent), False)
    test = pickle.loads(raw, encoding="latin1")
    np.testing.assert_array_equal(x[2], test["data"].reshape(-1, 3, 32, 32) / np.float32(255.0))
    (cifar / "data_batch_2").write_bytes(py2_pickle({**_batch(5, rng), "labels": [1] * 4}))
    data._raw.cache_clear()
    with pytest.raises(DataError, match=r"data_batch_2: 4 labels for 5 images$"):
        load(cifar.parent, "cifar10")


class _Called(Exception):
    pass


def _tripwire():
    raise _Called("a damaged batch's pickle ran code")


class _Evil:
    def __reduce__(self):
        return (_tripwire, ())


def _with(**changes):
    def damage(raw: bytes) -> bytes:
        batch = pickle.loads(raw, encoding="latin1")
        batch.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del batch[key]
        return pickle.dumps(batch, protocol=2)

    return damage


def _data_as(f):
    return lambda raw: _with(data=f(pickle.loads(raw, encoding="latin1")["data"]))(raw)


#: (damage, what the line says, whether to try it with torchvision told the checksums too: not the
#: pickle that calls a function, which torchvision would call, as it trusts a file it has the checksum of)
CIFAR_CASES = [
    (lambda b: b[: len(b) // 2], "not a readable pickle (", True),
    (lambda b: os.urandom(64), "not a readable pickle (", True),
    (lambda b: b"", "empty (0 bytes)", True),
    (gzip.compress, "gzip-compressed, not the raw file (decompress it)", True),
    (lambda b: pickle.dumps([1, 2, 3]), "a pickled list, expected a dict with 'data' and 'labels'", True),
    (_with(labels=None), "no 'labels' in the batch (its keys: 'batch_label', 'filenames', 'data')", True),
    (_with(data=None, labels=None), "no 'data' or 'labels' in the batch", True),
    (_data_as(lambda d: d[:, :3000]), "'data' is an array of uint8 of shape 4 x 3000, expected N x 3072", True),
    (_data_as(lambda d: d.reshape(4, 3, 32, 32)), "'data' is an array of uint8 of shape 4 x 3 x 32 x 32", True),
    (_data_as(lambda d: d.astype(np.int64)), "'data' is an array of int64 of shape 4 x 3072", True),
    (_with(data=[[0] * 3072] * 4), "'data' is a list, expected N x 3072 unsigned bytes", True),
    (_with(labels=[0, 1, 2]), "3 labels for 4 images", True),
    (_with(labels=[0, 1, 2, 10]), "label 10 at item 3 is out of range (0-9)", True),
    (_with(labels=["a", "b", "c", "d"]), "'labels' is not a list of integers", True),
    (_data_as(lambda d: d[:0]), "holds no images", True),
    (lambda b: pickle.dumps({"data": _Evil()}), "a pickle that refers to test_damaged_data._tripwire", False),
]  # fmt: skip


@pytest.mark.parametrize(
    "damage,expected,told",
    [pytest.param(damage, expected, told, id=f"{expected[:30]}-{'told' if told else 'published'}-checksums")
     for damage, expected, also_told in CIFAR_CASES for told in (False, True) if also_told or not told],
)  # fmt: skip
def test_a_damaged_cifar_batch_is_one_line_naming_it(cifar, monkeypatch, damage, expected, told):
    """With the published checksums (real use) the damaged file fails its MD5 and is then read
    with the arrays-only unpickler; told its checksum, torchvision parses it and fails, or reads
    images and labels that disagree. Either way the line names the file and the damage, and
    nothing the pickle names is called (a file that failed its checksum is untrusted)."""
    path = cifar / "data_batch_3"
    path.write_bytes(damage(path.read_bytes()))
    if told:
        tell_checksums(monkeypatch, cifar)
    with pytest.raises(DataError) as err:
        load(cifar.parent, "cifar10")
    assert one_line(err).startswith(f"data_root: {path}: {expected}"), err.value


def test_damaged_cifar_meta_and_folders(cifar):
    (cifar / "batches.meta").write_bytes(pickle.dumps({"names": []}, protocol=2))
    with pytest.raises(DataError) as err:
        load(cifar.parent, "cifar10")
    assert one_line(err) == (f"data_root: {cifar / 'batches.meta'}: expected a dict whose 'label_names' "
                             "lists the 10 class names")  # fmt: skip
    (cifar / "test_batch").unlink()
    (cifar / "test_batch").mkdir()
    with pytest.raises(DataError) as err:
        load(cifar.parent, "cifar10")
    assert one_line(err) == f"data_root: {cifar / 'test_batch'}: a folder, where the data file should be"
    root = cifar.parents[1] / "root-file"
    root.write_text("x")
    with pytest.raises(DataError) as err:
        load(root, "cifar10")
    assert one_line(err).startswith(f"data_root: {root} is a file, not a folder")


# ------------------------------------------------------------ the command line
def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    return lines[0].removeprefix(PREFIX)


def files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


TRIAL = ["trial", "--teacher", "lenet", "--epochs", "1", "--backend", "statevector", "--samples-per-class", "2",
         "--test-samples-per-class", "2", "--quiet", "--no-download"]  # fmt: skip


@pytest.mark.parametrize("case", [0, 5, 11, 18], ids=lambda i: IDX_CASES[i][2][:24])
def test_trial_on_damaged_mnist_exits_2_with_one_line_and_writes_nothing(mnist, tmp_path, case):
    name, damage, expected = IDX_CASES[case]
    path = mnist / name
    path.write_bytes(damage(path.read_bytes()))
    before = files(tmp_path)
    code, out, err = run_main([*TRIAL, "--dataset", "mnist", "--data-root", str(mnist.parents[1]),
                               "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and out == ""
    assert error_line(err).startswith(f"data_root: {path}: {expected}")
    assert files(tmp_path) == before  # no --out, no teacher cache


def test_trial_on_damaged_cifar_exits_2(cifar, tmp_path):
    (cifar / "test_batch").write_bytes(b"\x80\x02}q\x00(")  # a pickle cut after its first bytes
    code, _, err = run_main([*TRIAL, "--dataset", "cifar10", "--data-root", str(cifar.parent),
                             "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and error_line(err).startswith(f"data_root: {cifar / 'test_batch'}: not a readable pickle")
    assert not (tmp_path / "out").exists()


def test_the_real_command_on_a_truncated_file(mnist, tmp_path):
    """The installed command, as a user runs it: exit 2, one line on stderr, no traceback."""
    path = mnist / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:20_000])
    proc = subprocess.run([str(CLI), *TRIAL, "--dataset", "mnist", "--data-root", str(mnist.parents[1]),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"{PREFIX}data_root: {path}: truncated: 20,000 bytes, the header says 47,056\n"
    assert proc.stdout == "" and not (tmp_path / "out").exists()


@pytest.fixture
def afile(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("a file, not a folder")
    return path


DIGITS = ["trial", "--dataset", "digits", "--teacher", "none", "--epochs", "1", "--backend", "statevector",
          "--samples-per-class", "2", "--test-samples-per-class", "2", "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    "flags,expected",
    [(["--out", "{f}"], "--out: cannot write to {f}: {f} is not a folder"),
     (["--out", "{f}/sub/dir"], "--out: cannot write to {f}/sub/dir: {f} is not a folder"),
     (["--out", "{d}/out", "--cache-dir", "{f}"], "cache_dir: cannot write to {f}: {f} is not a folder"),
     (["--out", "{d}/out", "--cache-dir", "{f}/cache"], "cache_dir: cannot write to {f}/cache: {f} is not a folder"),
     (["--out", "{d}/out", "--cache-dir", "bogus://x"], "cache_dir: bogus://x: no file system for this URI"),
     (["--out", "{d}/a\x00b"], "--out: cannot write to {d}/a\x00b: a path cannot hold a NUL character")],
    ids=["out-is-a-file", "out-under-a-file", "cache-is-a-file", "cache-under-a-file", "cache-bogus-uri", "out-nul"],
)  # fmt: skip
def test_trial_outputs_that_cannot_be_folders_are_one_line_before_it_runs(afile, tmp_path, monkeypatch, flags,
                                                                          expected):  # fmt: skip
    import sweep.commands.trial

    monkeypatch.setattr(sweep.commands.trial, "run_trial", lambda *a, **k: pytest.fail("the trial ran"))
    fill = {"f": str(afile), "d": str(tmp_path)}
    before = files(tmp_path)
    code, _, err = run_main([*DIGITS, *(f.format(**fill) for f in flags)])
    assert code == 2
    line = error_line(err)
    assert line.startswith(expected.format(**fill)), line
    assert files(tmp_path) == before


def test_trial_out_not_writable(tmp_path, monkeypatch):
    """(Root writes anywhere, so the refusal is simulated at the permission check.)"""
    import sweep.commands.trial

    monkeypatch.setattr(sweep.commands.trial, "run_trial", lambda *a, **k: pytest.fail("the trial ran"))
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real(p, mode, **k))
    code, _, err = run_main([*DIGITS, "--out", str(locked / "out")])
    assert code == 2
    assert error_line(err) == f"--out: cannot write to {locked / 'out'}: {locked} is not writable"
    code, _, err = run_main([*DIGITS, "--out", str(tmp_path / "out"), "--cache-dir", str(locked / "c")])
    assert code == 2 and error_line(err) == f"cache_dir: cannot write to {locked / 'c'}: {locked} is not writable"
    assert files(tmp_path) == {"locked"}


SPEC = """name: damaged
grid:
  dataset: [{dataset}]
  classes: [0-1]
  teacher: [none, lenet]
  seed: [0]
trial:
  backend: statevector
  epochs: 1
  samples_per_class: 2
  test_samples_per_class: 2
paths:
  data_root: {data}
  download: false
  results: {results}
  cache: {cache}
"""


@pytest.fixture
def sweep_stub(monkeypatch):
    """No Ray: a sweep that passed its checks would connect here."""
    import sweep.driver

    def connect(*a, **k):
        raise AssertionError("the sweep got past its checks")

    monkeypatch.setattr(sweep.driver, "connect", connect)


def _sweep(tmp_path: Path, **paths) -> tuple[int, str]:
    values = {"dataset": "mnist", "data": str(tmp_path / "data"), "results": str(tmp_path / "results"),
              "cache": str(tmp_path / "cache"), **paths}  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(**values))
    before = files(tmp_path)
    code, _, err = run_main(["sweep", str(spec)])
    assert files(tmp_path) == before, sorted(files(tmp_path) - before)
    return code, err


def test_sweep_preflight_on_damaged_mnist_exits_2(mnist, tmp_path, sweep_stub):
    path = mnist / TRAIN_LABELS
    path.write_bytes(gzip.compress(path.read_bytes()))
    code, err = _sweep(tmp_path)
    assert code == 2 and error_line(err) == f"data_root: {path}: gzip-compressed, not the raw file (decompress it)"


@pytest.mark.parametrize("key", ["results", "cache"])
@pytest.mark.parametrize("under", [False, True], ids=["is-a-file", "under-a-file"])
def test_sweep_results_or_cache_that_cannot_be_folders(tmp_path, afile, sweep_stub, key, under):
    where = afile / "x" if under else afile
    code, err = _sweep(tmp_path, dataset="digits", **{key: str(where)})
    assert code == 2
    assert error_line(err).startswith(f"paths.{key}: cannot write to {where}"), err
    assert err.rstrip().endswith(f"{afile} is not a folder")


def test_sweep_cache_not_writable_or_bogus(tmp_path, monkeypatch, sweep_stub):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real(p, mode, **k))
    code, err = _sweep(tmp_path, dataset="digits", cache=str(locked / "cache"))
    assert code == 2 and error_line(err) == f"paths.cache: cannot write to {locked / 'cache'}: {locked} is not writable"
    code, err = _sweep(tmp_path, dataset="digits", cache="bogus://x")
    assert code == 2 and error_line(err).startswith("paths.cache: bogus://x: no file system for this URI")


# ------------------------------------------------------------------ fuzzing
FUZZ = settings(deadline=None, database=None, max_examples=300,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def kind_of(message: str) -> str:
    """A rejection's kind, for hypothesis's statistics: its words without the path and numbers."""
    return re.sub(r"0x[0-9a-f]+|\d[\d,]*", "N", message.split(": ", 2)[-1])[:32]


@st.composite
def idx_files(draw) -> bytes:
    """IDX-like bytes: mostly a header of a known type with small sizes and a body near the
    length it says; sometimes random bytes, a bad magic, odd types and dimension counts."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    magic = draw(st.sampled_from([b"\x00\x00"] * 6 + [b"\x1f\x8b", b"\x00\x01", b"\xff\xff"]))
    kind = draw(st.sampled_from([*datafiles.IDX_TYPES] * 3 + [0, 7, 0x0A, 0x0F, 0xFF]))
    nd = draw(st.sampled_from([1, 2, 3] * 3 + [0, 4, 32, 33, 64, 65, 255]))
    if nd > 4:  # many dimensions: sizes of 0, 1 or 2 throughout (a list of 255 drawn sizes would overrun)
        dims = [draw(st.integers(0, 2))] * nd
    else:
        sizes = st.sampled_from([*range(7)] * 2 + [2**32 - 1, 2**31])  # now and then one no file reaches
        dims = draw(st.lists(sizes, min_size=nd, max_size=nd))
    header = magic + bytes([kind, nd]) + b"".join(struct.pack(">I", d) for d in dims)
    itemsize = np.dtype(datafiles.IDX_TYPES[kind][1]).itemsize if kind in datafiles.IDX_TYPES else 1
    want = itemsize * int(np.prod(dims, dtype=object)) if dims else 0
    length = min(want, 4096) if draw(st.integers(0, 3)) else draw(st.integers(0, 300))  # mostly what it says
    out = header + draw(st.binary(min_size=min(length, 300), max_size=min(length, 300))) + bytes(max(0, length - 300))
    return out[: draw(st.integers(0, len(out)))] if draw(st.integers(0, 5)) == 0 else out


@FUZZ
@given(content=idx_files())
def test_fuzz_read_idx_parses_or_says_why(tmp_path, content):
    """Random headers and bodies: an array of the shape the header gives (torchvision's parse
    of it agrees), or one line of DataError naming the file; nothing else."""
    path = tmp_path / "f-idx-ubyte"
    path.write_bytes(content)
    try:
        got = read_idx(path)
    except DataError as exc:
        assert str(exc).startswith(f"data_root: {path}: ") and "\n" not in str(exc)
        event(f"rejected: {kind_of(str(exc))}")
        return
    event("parsed")
    nd = content[3]
    shape = tuple(struct.unpack(f">{nd}I", content[4 : 4 + 4 * nd]))
    assert got.shape == shape and got.dtype.isnative
    assert got.nbytes == len(content) - 4 - 4 * nd
    if 1 <= nd <= 3 and got.size:
        from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

        np.testing.assert_array_equal(read_sn3_pascalvincent_tensor(str(path)).numpy(), got)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-mnist")
    write_idx_dataset(root, "MNIST", 1, 1, seed=0)
    return root


@FUZZ
@given(name=st.sampled_from(RAW_NAMES), kind=st.sampled_from(["header", "cut", "extend", "replace", "byte"]),
       draw=st.data())  # fmt: skip
def test_fuzz_mnist_loads_or_says_why(fuzz_root, name, kind, draw):
    """Damaged copies of a valid tiny MNIST's files through load_dataset, torchvision and all:
    it loads, or raises one line naming the file; torchvision never meets a file it chokes on."""
    path = fuzz_root / "MNIST" / "raw" / name
    original = path.read_bytes()
    content = bytearray(original)
    hdr = 16 if "images" in name else 8
    if kind == "header":  # one to three header bytes set at random
        for _ in range(draw.draw(st.integers(1, 3))):
            content[draw.draw(st.integers(0, hdr - 1))] = draw.draw(st.integers(0, 255))
    elif kind == "cut":
        content = content[: draw.draw(st.integers(0, len(content) - 1))]
    elif kind == "extend":
        content += draw.draw(st.binary(min_size=1, max_size=40))
    elif kind == "replace":
        content = bytearray(draw.draw(idx_files()))
    else:  # a body byte (a label, or a pixel) set at random
        content[draw.draw(st.integers(hdr, len(content) - 1))] = draw.draw(st.integers(0, 255))
    data._raw.cache_clear()
    try:
        path.write_bytes(bytes(content))
        try:
            ds = data.load_dataset("mnist", tuple(range(10)), data_root=str(fuzz_root), download=False)
        except DataError as exc:
            assert str(exc).startswith("data_root: ") and "\n" not in str(exc)
            assert str(fuzz_root / "MNIST" / "raw") in str(exc)
            event(f"rejected: {kind_of(str(exc))}")
            return
        event("loaded")
        assert len(ds.train) == len(ds.train.labels) and ds.train.images.shape[1:] == (1, 28, 28)
    finally:
        path.write_bytes(original)
        data._raw.cache_clear()
