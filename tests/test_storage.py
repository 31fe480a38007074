"""Storage locations: local paths and URIs through pyarrow (and fsspec) file systems,
written whole or not at all; the teacher cache and result tables on a non-local store."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sweep.results import append_rows, read_table
from workers.data import load_dataset
from workers.io import StorageError, location, write_json, write_parquet
from workers.teacher_settings import TeacherSettings
from workers.teachers.logits import get_teacher


@pytest.fixture
def memory_root():
    """A fresh folder on fsspec's in-memory file system: not local, no shared disk."""
    pytest.importorskip("fsspec")
    return f"memory://qkd-test-{uuid.uuid4().hex[:8]}"


def test_local_paths_and_file_uris_are_the_same_files(tmp_path):
    plain = location(tmp_path / "a" / "t.parquet")
    uri = location(f"file://{tmp_path}/a/t.parquet")
    assert plain.is_local and uri.is_local
    write_parquet(pa.table({"x": [1, 2]}), uri)
    assert plain.exists() and plain.is_file()
    assert plain.read_parquet().column("x").to_pylist() == [1, 2]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["t.parquet"]  # no temporary file left


def test_written_files_get_the_usual_permissions_not_mkstemps(tmp_path):
    old = os.umask(0o022)
    try:
        write_parquet(pa.table({"x": [1]}), tmp_path / "t.parquet")
        write_json({"a": 1}, tmp_path / "m.json")
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {oct(0o644)}


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pa.table({"x": [1]}), target)
    before = target.read_bytes()

    with pytest.raises(AttributeError):  # not a table: the writer fails after the temporary file exists
        write_parquet("not a table", target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_result_tables_on_a_non_local_store(memory_root):
    path = f"{memory_root}/results/trials.parquet"
    assert read_table(path) is None
    append_rows(path, [{"config_hash": "a", "acc": 0.5}, {"config_hash": "b", "acc": 0.6}], key="config_hash")
    table = append_rows(path, [{"config_hash": "a", "acc": 0.9}], key="config_hash")
    back = read_table(path)
    pd.testing.assert_frame_equal(back, table)
    assert dict(zip(back.config_hash, back.acc, strict=True)) == {"a": 0.9, "b": 0.6}
    loc = location(path)
    assert not loc.is_local and loc.exists()
    leftovers = [i.path for i in loc.fs.get_file_info(_selector(loc.parent.path)) if i.path.endswith(".tmp")]
    assert leftovers == []
    write_json({"k": 1}, loc.parent / "meta.json")
    assert (loc.parent / "meta.json").read_text().strip().startswith("{")


def _selector(path: str):
    import pyarrow.fs as pafs

    return pafs.FileSelector(path, recursive=True)


def test_teacher_cache_on_a_non_local_store(memory_root, monkeypatch):
    ds = load_dataset("digits", (0, 1))
    settings = TeacherSettings(epochs=1)
    first = get_teacher(ds, "lenet", settings, memory_root)
    assert not first.cached and not first.path.is_local
    assert (first.path / "logits.parquet").exists() and (first.path / "weights.safetensors").exists()
    again = get_teacher(ds, "lenet", settings, memory_root)
    assert again.cached and (again.test_logits == first.test_logits).all()
    # Logits lost but weights kept: rebuilt from the stored weights, not retrained.
    (first.path / "logits.parquet").delete()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the weights were stored")

    monkeypatch.setattr("workers.teachers.logits.train_teacher", no_training)
    rebuilt = get_teacher(ds, "lenet", settings, memory_root)
    assert not rebuilt.cached and (rebuilt.test_logits == first.test_logits).all()
    assert (first.path / "logits.parquet").exists()


def test_an_unknown_uri_scheme_is_one_clear_error():
    with pytest.raises(StorageError, match="nosuchscheme://x/y: no file system"):
        location("nosuchscheme://x/y")


def _train(cache: str, out: str) -> None:
    ds = load_dataset("digits", (0, 1))
    t = get_teacher(ds, "lenet", TeacherSettings(epochs=2), cache)
    Path(out).write_text(str(t.test_acc))


def test_two_processes_training_the_same_teacher_leave_one_whole_entry(tmp_path):
    """Two workers that miss the same teacher at once: both train, one write wins, whole."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_train, args=(str(tmp_path / "cache"), str(tmp_path / f"acc{i}"))) for i in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    ds = load_dataset("digits", (0, 1))
    cached = get_teacher(ds, "lenet", TeacherSettings(epochs=2), tmp_path / "cache")
    assert cached.cached  # the entry reads back whole, its schema checked
    folder = Path(cached.path)
    assert sorted(p.name for p in folder.iterdir()) == ["logits.parquet", "meta.json", "weights.safetensors"]
    accs = {float((tmp_path / f"acc{i}").read_text()) for i in (0, 1)}
    assert cached.test_acc in accs
