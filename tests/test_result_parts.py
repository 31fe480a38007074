"""Result tables in parts (issue 15, item 3): a part per finished trial, read as one
table by pandas and pyarrow, compacted back into one file, the old single-file layout
taken over, every half-done change of form finished, on local disks and URIs alike."""

from __future__ import annotations

import math
import types
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from sweep.plan import finished_hashes
from sweep.recorder import Recorder
from sweep.results import (
    EPOCHS,
    SCHEMA_PART,
    TEACHERS,
    TRIALS,
    PartedTable,
    append_rows,
    compact,
    read_table,
    remove_table,
    settle,
)
from sweep.spec import parse_spec
from workers.config import TrialConfig
from workers.io import StorageError, location
from workers.trial import unfinished_row


def trial_row(i: int, status: str = "ok", **extra) -> dict:
    """A row as wide as a real trial's, with a config hash of its own per ``i``."""
    cfg = TrialConfig(dataset="digits", classes="0-3", qubits=2, teacher="none", backend="statevector", seed=i)
    epochs = [{"epoch": 1, "test_acc": 0.5, "train_loss": 1.0, "wall_s": 0.1}]
    return {**unfinished_row(cfg, status, "" if status == "ok" else "boom", epochs), **extra}


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_one_part_per_append_read_as_one_table_whose_types_differ_by_part(tmp_path):
    path = tmp_path / TRIALS
    table = PartedTable(path, key="config_hash")
    # Columns that are None in one row and a type in another, ints then floats, a column only
    # later rows have: the cases pyarrow refuses to read when each part keeps its own types.
    table.append([{"config_hash": "a", "status": "ok", "error": None, "n": 1}])
    table.append([{"config_hash": "b", "status": "error", "error": "boom", "n": 2.5}])
    table.append([{"config_hash": "c", "status": "ok", "error": None, "n": 3, "late": True}])
    assert path.is_dir()
    assert names(path) == [SCHEMA_PART] + [f"part-{i:010d}.parquet" for i in (1, 2, 3)]  # no temporary left

    expected = pd.DataFrame({"config_hash": ["a", "b", "c"], "status": ["ok", "error", "ok"],
                             "error": [None, "boom", None], "n": [1.0, 2.5, 3.0],
                             "late": [None, None, True]})  # fmt: skip
    for got in (pd.read_parquet(path), ds.dataset(path).to_table().to_pandas(), read_table(path)):
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert ds.dataset(path).schema.field("n").type == pa.float64()

    table.compact()
    assert path.is_file() and names(tmp_path) == [TRIALS]
    pd.testing.assert_frame_equal(pd.read_parquet(path), expected, check_dtype=False)


def test_a_newer_part_replaces_rows_by_key_as_rewriting_the_file_did(tmp_path):
    """The same writes through parts and through the whole-file rewrite give the same table,
    rows in the same order, epochs of a rerun trial replacing all of its old epochs."""
    parts, whole = tmp_path / "parts", tmp_path / "whole"
    writes = [
        [trial_row(0)], [trial_row(1, "error")], [trial_row(2)],
        [trial_row(1, "ok", tune_trial_id="rerun")],  # the error retried
    ]  # fmt: skip
    epochs = [[{"config_hash": w[0]["config_hash"], "epoch": e, "test_acc": 0.1 * e} for e in (1, 2)] for w in writes]
    epochs[3] = epochs[3][:1]  # the rerun reported one epoch: the old two must not stay
    trials_out, epochs_out = PartedTable(parts / TRIALS, "config_hash"), PartedTable(parts / EPOCHS, "config_hash")
    for w, e in zip(writes, epochs, strict=True):
        epochs_out.append(e)
        trials_out.append(w)
        append_rows(whole / EPOCHS, e, key="config_hash")
        append_rows(whole / TRIALS, w, key="config_hash")

    assert finished_hashes(location(parts)) == finished_hashes(location(whole)) == {w[0]["config_hash"] for w in writes}
    for name in (TRIALS, EPOCHS):
        during = read_table(parts / name)
        pd.testing.assert_frame_equal(during, read_table(whole / name), check_dtype=False)
    # A plain read during the sweep still shows the replaced row (documented); after compaction it is gone.
    assert len(pd.read_parquet(parts / TRIALS)) == 4
    trials_out.compact()
    epochs_out.compact()
    for name in (TRIALS, EPOCHS):
        pd.testing.assert_frame_equal(pd.read_parquet(parts / name), pd.read_parquet(whole / name), check_dtype=False)
    assert len(pd.read_parquet(parts / EPOCHS)) == 2 + 2 + 1  # trials 0 and 2, and the rerun of 1


def test_an_old_single_file_is_taken_over_as_the_first_part(tmp_path):
    """A results folder the old version wrote (one file, pandas metadata, maybe an index)
    goes on in parts, and is one file again after compaction, with nothing lost."""
    path = tmp_path / TRIALS
    old = pd.DataFrame([trial_row(0), trial_row(1, "error")])
    old.index = [10, 11]  # a user's edit that pandas keeps as an __index_level_0__ column
    old.to_parquet(path)
    table = PartedTable(path, key="config_hash")
    table.append([trial_row(1, "ok", tune_trial_id="rerun")])
    assert path.is_dir() and not (tmp_path / f".{TRIALS}.base").exists()
    during = pd.read_parquet(path)
    assert "__index_level_0__" not in during.columns and len(during) == 3
    assert finished_hashes(location(tmp_path)) == set(old.config_hash)
    table.compact()
    after = pd.read_parquet(path)
    assert list(after.status) == ["ok", "ok"] and list(after.config_hash) == list(old.config_hash)
    assert after.columns.tolist() == [*old.columns, "tune_trial_id"]  # a column the new row brought, at the end


def test_a_damaged_part_is_refused_by_name_never_read_as_empty(tmp_path):
    path = tmp_path / TRIALS
    table = PartedTable(path, key="config_hash")
    table.append([trial_row(0)])
    table.append([trial_row(1)])
    part = path / "part-0000000002.parquet"
    part.write_bytes(part.read_bytes()[:40])
    with pytest.raises(StorageError, match=r"trials\.parquet/part-0000000002\.parquet: not a readable Parquet file"):
        read_table(path)
    with pytest.raises(StorageError, match="not a readable Parquet file"):
        compact(path)
    assert path.is_dir() and (path / "part-0000000001.parquet").is_file()  # refused, nothing moved


@pytest.mark.parametrize("stage", ["file moved aside", "schema part written", "compacted written",
                                   "parts retired", "compacted in place"])  # fmt: skip
def test_a_change_of_form_cut_short_reads_whole_and_is_finished(tmp_path, stage):
    """Each point a killed driver can leave a change of form at: the driver's own reads see
    the whole table, and the next writer finishes the change (nothing lost, nothing twice)."""
    results = tmp_path / "results"
    path = results / TRIALS
    rows = [trial_row(i) for i in range(3)]
    append_rows(path, rows[:2], key="config_hash")
    base, compacted, retired = (results / f".{TRIALS}.{t}" for t in ("base", "compacted", "retired"))
    if stage in ("file moved aside", "schema part written"):
        path.rename(base)
        if stage == "schema part written":
            path.mkdir()
            PartedTable(tmp_path / "other", "config_hash").append(rows[:1])
            (tmp_path / "other" / SCHEMA_PART).rename(path / SCHEMA_PART)
        expected = rows[:2]
    else:
        table = PartedTable(path, "config_hash")
        table.append(rows[2:])
        append_rows(compacted, rows, key="config_hash")  # the whole table, as compaction writes it
        if stage in ("parts retired", "compacted in place"):
            path.rename(retired)
        if stage == "compacted in place":
            compacted.rename(path)
        expected = rows
    got = read_table(path)
    assert sorted(got.config_hash) == sorted(r["config_hash"] for r in expected)

    settle(path, "config_hash")
    assert not base.exists() and not compacted.exists() and not retired.exists()
    PartedTable(path, "config_hash").append([trial_row(9)])
    compact(path, "config_hash")
    assert names(results) == [TRIALS]
    final = pd.read_parquet(path)
    assert sorted(final.config_hash) == sorted({r["config_hash"] for r in expected} | {trial_row(9)["config_hash"]})
    assert final.config_hash.is_unique


def test_parts_on_a_non_local_store(tmp_path):
    pytest.importorskip("fsspec")
    root = location(f"memory://qkd-parts-{uuid.uuid4().hex[:8]}/results")
    append_rows(root / TRIALS, [trial_row(0)], key="config_hash")  # an at-rest file to take over
    table = PartedTable(root / TRIALS, "config_hash")
    table.append([trial_row(1, "error")])
    table.append([trial_row(1)])
    assert (root / TRIALS).is_dir()
    during = read_table(root / TRIALS)
    assert len(during) == 2 and (during.status == "ok").all()
    table.compact()
    assert (root / TRIALS).is_file()
    back = read_table(root / TRIALS)
    assert sorted(back.config_hash) == sorted({trial_row(0)["config_hash"], trial_row(1)["config_hash"]})
    import pyarrow.fs as pafs

    left = [i.path for i in root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True))]
    assert [p.rsplit("/", 1)[-1] for p in left] == [TRIALS]
    remove_table(root / TRIALS)
    assert read_table(root / TRIALS) is None


def test_the_recorder_writes_parts_as_trials_end_and_compacts_on_close(tmp_path):
    spec = parse_spec({"name": "rec", "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2},
                       "paths": {"results": str(tmp_path)}}, "<test>")  # fmt: skip
    recorder = Recorder(spec, "config_hash", None, None)
    teacher = {"teacher_key": "lenet-x", "test_acc": 0.9}
    for i in range(4):
        row = trial_row(i)
        epochs = [{"trial_id": row["trial_id"], "epoch": e, "test_acc": 0.5, "head_scale": math.nan} for e in (1, 2)]
        recorder.write(types.SimpleNamespace(trial_id=f"t{i}"), row, epochs, teacher)
    out = tmp_path / "rec"
    assert (out / TRIALS).is_dir() and len(list((out / TRIALS).glob("part-*"))) == 1 + 4
    live = pd.read_parquet(out / TRIALS)  # what a reader sees during the sweep
    assert len(live) == 4 and (live.spec_name == "rec").all()
    assert live.tune_trial_id.tolist() == ["t0", "t1", "t2", "t3"]
    assert len(pd.read_parquet(out / EPOCHS)) == 8
    assert (out / TEACHERS).is_file() and len(pd.read_parquet(out / TEACHERS)) == 1  # a small file, as before
    recorder.close()
    assert names(out) == [EPOCHS, TEACHERS, TRIALS] and (out / TRIALS).is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(out / TRIALS), live, check_dtype=False)


def test_write_cost_reports_a_time_per_trial_for_each_size():
    from bench.writes import write_cost

    got = write_cost((5, 20), writes=3, compare=True)
    for n in (5, 20):
        assert 0 < got[f"write_ms_per_trial_at_{n}"] < 1000
        assert 0 < got[f"rewrite_ms_per_trial_at_{n}"] < 5000
