"""Resumable teachers: a training killed with SIGKILL after epoch k resumes from its
checkpoint, and the entry it writes is bit-identical to an uninterrupted run's on the same
thread count; a damaged checkpoint is discarded with one warning and training starts over."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import workers.teachers.train as train
from workers.data import load_dataset
from workers.io import location
from workers.teacher_settings import TeacherSettings
from workers.teachers.cache import _logits_schema, _read_logits, _read_meta
from workers.teachers.checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, _load_checkpoint
from workers.teachers.logits import get_teacher

EPOCHS = 4
#: The notebooks' recipe (every epoch scored, the best epoch's bookkeeping) keeping the best
#: test epoch, so that the best weights travel through the checkpoint too.
SETTINGS = dict(epochs=EPOCHS, recipe="paper-code", keep="best_test", batch_size=64, seed=3)

#: One teacher training in a process of its own, on one thread. The notebooks' LeNet is
#: swapped for a small CNN with dropout, so that the random state dropout draws from must
#: travel through the checkpoint too (AlexNet's would, at 60 times the cost).
SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    import torch
    from torch import nn
    from workers.teacher_settings import TeacherSettings
    from workers.data import load_dataset
    from workers.teachers.logits import get_teacher
    from workers.teachers.models import MODELS

    torch.set_num_threads(1)

    def small(n_classes, shape):
        return nn.Sequential(
            nn.Conv2d(shape[0], 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
            nn.Linear(4 * 12 * 12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, n_classes),
        )

    MODELS["paper-code"]["lenet"] = small
    ds = load_dataset("digits", (1, 4, 7))
    settings = TeacherSettings(**{settings!r})
    kill_after = sys.argv[2] if len(sys.argv) > 2 else None

    def progress(line):
        print(line, flush=True)
        if kill_after and line.startswith("epoch " + kill_after + "/"):
            time.sleep(3600)  # the checkpoint of that epoch is on disk: wait here for the SIGKILL

    get_teacher(ds, "lenet", settings, sys.argv[1], progress)
    print("done", flush=True)
    """
)


def _run(cache: Path, kill_after: int | None = None) -> list[str]:
    """The script's output lines; with ``kill_after``, SIGKILL once that epoch's line is out."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    code = SCRIPT.format(settings=SETTINGS)
    args = [str(cache)] + ([str(kill_after)] if kill_after is not None else [])
    # The child stops after printing epoch ``kill_after``'s line, so the kill lands at that
    # point however late this process reads the line (under load it could land anywhere).
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if kill_after is not None and line.startswith(f"epoch {kill_after}/{EPOCHS}"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    if kill_after is None:
        assert proc.returncode == 0, "\n".join(lines)
    else:
        assert proc.returncode == -signal.SIGKILL
    return lines


def _entry(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "teachers" / "digits" / "1-4-7").iterdir()]
    return folder


def _same_entry(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "weights.safetensors"), load_file(b / "weights.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    la, lb = pq.read_table(a / "logits.parquet"), pq.read_table(b / "logits.parquet")
    assert la.equals(lb)
    ma, mb = (json.loads((p / "meta.json").read_text()) for p in (a, b))
    assert ma["epoch_test_accs"] == mb["epoch_test_accs"] and len(ma["epoch_test_accs"]) == EPOCHS
    assert (ma["best_test_acc"], ma["best_epoch"]) == (mb["best_test_acc"], mb["best_epoch"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("whole")
    lines = _run(cache)
    assert not any("resuming" in ln for ln in lines)
    return _entry(cache)


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkilled_teacher_resumes_bit_identical(uninterrupted, tmp_path, kill_after):
    cache = tmp_path / "cache"
    _run(cache, kill_after=kill_after)
    folder = _entry(cache)
    assert (folder / CHECKPOINT).exists()
    assert not (folder / "logits.parquet").exists() and not (folder / "meta.json").exists()
    state = torch.load(folder / CHECKPOINT, weights_only=True)
    assert state["epoch"] == kill_after and len(state["test_accs"]) == kill_after

    lines = _run(cache)
    assert f"resuming lenet from epoch {kill_after}/{EPOCHS}" in lines
    # Only the epochs after the checkpoint ran again.
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == [
        f"{e}/{EPOCHS}" for e in range(kill_after + 1, EPOCHS + 1)
    ]
    assert not (folder / CHECKPOINT).exists(), "a complete entry keeps no checkpoint"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    _same_entry(folder, uninterrupted)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["train_seconds"] > 0


@pytest.fixture(scope="module")
def killed_after_one(tmp_path_factory) -> Path:
    """A cache whose training was SIGKILLed after epoch 1 (each damage test damages a copy)."""
    cache = tmp_path_factory.mktemp("killed")
    _run(cache, kill_after=1)
    return cache


def _checkpoint_after_one_epoch(killed: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(killed, cache)
    return cache, _entry(cache) / CHECKPOINT


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_bytes(b"\x00garbage" * 64),
        lambda p: torch.save({"format": CHECKPOINT_FORMAT, "key_hash": "someone-else"}, p),
        lambda p: torch.save({**torch.load(p, weights_only=True), "epoch": EPOCHS + 5}, p),
    ],
    ids=["empty", "truncated", "garbage", "other-key", "impossible-epoch"],
)
def test_damaged_checkpoint_is_discarded_with_one_warning(uninterrupted, killed_after_one, tmp_path, damage):
    cache, ckpt = _checkpoint_after_one_epoch(killed_after_one, tmp_path)
    damage(ckpt)
    lines = _run(cache)
    warned = [ln for ln in lines if "checkpoint" in ln and "damaged" in ln]
    assert len(warned) == 1, lines
    assert str(ckpt) in warned[0] and "training from epoch 0" in warned[0]
    assert not any(ln.startswith("resuming") for ln in lines)
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == [f"{e}/{EPOCHS}" for e in range(1, 5)]
    _same_entry(ckpt.parent, uninterrupted)  # started over from the seed: the same teacher


def test_checkpoint_loader_keeps_a_good_file_and_names_a_bad_one(tmp_path):
    """In process: the loader returns a sound checkpoint's state and removes a bad one."""
    good = tmp_path / "good" / CHECKPOINT
    good.parent.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "key_hash": "abc", "epoch": 2, "test_accs": [0.5, 0.6],
                "model": {}, "optimizer": {}, "rng": {}, "seconds": 1.0, "best_state": {}}, good)  # fmt: skip
    assert _load_checkpoint(location(good), "abc", 4)["epoch"] == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _load_checkpoint(location(good), "abd", 4) is None
    assert len(caught) == 1 and "belongs to teacher key 'abc'" in str(caught[0].message)
    assert not good.exists()


def test_in_process_training_writes_and_clears_checkpoints(tmp_path, monkeypatch):
    """get_teacher passes its entry's checkpoint to the training and removes it once the entry
    is complete; a resumed training's seconds include the earlier process's."""
    ds = load_dataset("digits", (0, 1))
    settings = TeacherSettings(epochs=2, batch_size=128, seed=0)
    seen = []
    real_save = train._save_checkpoint

    def save(path, state):
        seen.append((path.name, state["epoch"], sorted(state["rng"])))
        real_save(path, state)

    monkeypatch.setattr(train, "_save_checkpoint", save)
    got = get_teacher(ds, "lenet", settings, tmp_path)
    assert seen == [(CHECKPOINT, 1, ["cuda", "numpy", "order", "python", "torch"])]
    assert not (Path(got.path) / CHECKPOINT).exists()
    assert np.isfinite(got.train_logits).all()


def test_checkpoints_closer_than_the_interval_are_skipped_and_the_result_is_the_same(tmp_path, monkeypatch):
    """``checkpoint_every_s``: an epoch that ends sooner than that after the last checkpoint
    (or the start) writes none; the weights and logits do not depend on it."""
    ds = load_dataset("digits", (0, 1))
    settings = TeacherSettings(epochs=3, batch_size=128, seed=0)
    clock = iter(range(0, 1000, 10))  # every reading of the clock 10 s after the last
    monkeypatch.setattr(train.time, "perf_counter", lambda: float(next(clock)))
    saved = []
    monkeypatch.setattr(train, "_save_checkpoint", lambda path, state: saved.append(state["epoch"]))
    every = train.train_teacher(ds, "lenet", settings, checkpoint=location(tmp_path) / CHECKPOINT, key_hash="k")
    assert saved == [1, 2]  # 0: after every epoch but the last
    saved.clear()
    # Readings 10 s apart: an epoch's end is 20 s after the start or the last checkpoint (the
    # reading for its progress line comes between), so 25 s writes one every other epoch.
    sparse = train.train_teacher(ds, "lenet", settings, checkpoint=location(tmp_path) / CHECKPOINT, key_hash="k",
                                 checkpoint_every_s=25)  # fmt: skip
    assert saved == [2]
    saved.clear()
    never = train.train_teacher(ds, "lenet", settings, checkpoint=location(tmp_path) / CHECKPOINT, key_hash="k",
                                checkpoint_every_s=1e9)  # fmt: skip
    assert saved == []
    for other in (sparse, never):
        for k, v in every.model.state_dict().items():
            assert torch.equal(v, other.model.state_dict()[k]), k


# ---------------------------------------------------------------- fuzzed cache files


def _valid_meta() -> bytes:
    return json.dumps({"hash": "abc", "train_seconds": 1.5, "best_test_acc": 0.9, "best_epoch": 2, "n_params": 10,
                       "epoch_test_accs": [0.8, 0.9]}).encode()  # fmt: skip


def _mutated(data: st.DataObject, valid: bytes) -> bytes:
    """Random bytes, or a valid file cut, extended or with bytes overwritten."""
    how = data.draw(st.sampled_from(["random", "cut", "extend", "flip"]))
    if how == "random":
        return data.draw(st.binary(max_size=400))
    if how == "cut":
        return valid[: data.draw(st.integers(0, max(0, len(valid) - 1)))]
    if how == "extend":
        return valid + data.draw(st.binary(min_size=1, max_size=64))
    out = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 8))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_cache_files_are_read_or_refused_never_a_traceback(tmp_path, data):
    """Every reader of a teacher-cache file returns its content or None (a rebuild), whatever
    the bytes: meta.json, the checkpoint; never another exception, never a half-read state."""
    digits = load_dataset("digits", (1, 4, 7))
    meta = tmp_path / "meta.json"
    meta.write_bytes(_mutated(data, _valid_meta()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = _read_meta(location(meta), "abc")
    assert got is None or (isinstance(got, dict) and got["hash"] == "abc")

    ckpt = tmp_path / CHECKPOINT
    good = tmp_path / "good.pt"
    if not good.exists():
        torch.save({"format": CHECKPOINT_FORMAT, "key_hash": "abc", "epoch": 1, "test_accs": [0.5],
                    "model": {"w": torch.ones(3)}, "optimizer": {}, "rng": {}, "seconds": 1.0, "best_state": {}},
                   good)  # fmt: skip
    ckpt.write_bytes(_mutated(data, good.read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = _load_checkpoint(location(ckpt), "abc", 4)
    assert state is None or state["epoch"] == 1
    assert state is not None or not ckpt.exists(), "a refused checkpoint is removed"

    logits = tmp_path / "logits"
    logits.mkdir(exist_ok=True)
    n = len(digits.train) + len(digits.test)
    table = {"split": ["train"] * len(digits.train) + ["test"] * len(digits.test),
             "index": np.concatenate([digits.train.index, digits.test.index]).astype(np.int64),
             "label": np.zeros(n, dtype=np.int64)}  # fmt: skip
    for c in digits.classes:
        table[f"logit_{c}"] = np.zeros(n, dtype=np.float32)
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(table, schema=_logits_schema(digits.classes)), buf)
    (logits / "logits.parquet").write_bytes(_mutated(data, buf.getvalue().to_pybytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = _read_logits(location(logits), digits)
    assert read is None or (read[0].shape == (len(digits.train), 3) and read[1].shape == (len(digits.test), 3))


def test_a_killed_writers_temporaries_are_removed_and_a_live_ones_kept(tmp_path):
    """atomic_write names its temporary after its host and pid; a rebuild of the entry removes
    the leftovers of a writer that was killed (its pid is gone) and nothing else."""
    from workers import io as wio

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = wio._HOST
    names = {
        "killed": f".weights.safetensors~{host}~{dead.pid}~abc123.tmp",
        "live": f".logits.parquet~{host}~{os.getpid()}~def456.tmp",
        "other host": f".meta.json~not-{host}~{dead.pid}~ghi789.tmp",
        "not ours": ".something.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    assert wio.remove_stale_temporaries(tmp_path) == [names["killed"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "killed")

    # atomic_write's own temporaries carry the pattern the cleaner reads.
    seen = []
    wio.atomic_write(tmp_path / "x.bin", lambda tmp: (seen.append(Path(tmp).name), Path(tmp).write_bytes(b"1")))
    m = wio._TEMPORARY.match(seen[0])
    assert m and (m["name"], m["host"], int(m["pid"])) == ("x.bin", host, os.getpid())


def test_a_teacher_rebuilt_after_a_kill_mid_write_leaves_no_temporary(tmp_path):
    """A SIGKILL that lands while the final weights are being written leaves a temporary; the
    next training of that entry removes it before it starts."""
    lines = _run(tmp_path, kill_after=1)
    folder = _entry(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from workers import io as wio

    leftover = folder / f".weights.safetensors~{wio._HOST}~{dead.pid}~zz.tmp"
    leftover.write_bytes(b"half-written")
    lines = _run(tmp_path)
    assert f"resuming lenet from epoch 1/{EPOCHS}" in lines and "done" in lines
    assert not leftover.exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
