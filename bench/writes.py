"""What the driver's result writes cost per trial, as a table grows.

:func:`write_cost` times :meth:`sweep.recorder.Recorder.write` -- the call the Tune
callback makes as each trial ends (its epoch rows, then its row) -- on a results
folder that already holds N trials, for each N asked. The folder is the one a
sweep has after N trials: N parts in ``trials.parquet/`` and N in
``epochs.parquet/`` (copies of one synthetic trial's parts, linked in, so that
building 10,000 costs seconds; the writer never reads them). Rows are as wide as a
real trial's: :func:`workers.trial.unfinished_row` of a real configuration plus the
driver's columns, with ``EPOCHS`` epoch rows each.

With ``compare=True`` it also times the write it replaced: both tables rewritten
whole (:func:`sweep.results.append_rows` on files of N trials), which grows with N.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import pandas as pd
import pyarrow as pa

from sweep.recorder import Recorder
from sweep.results import EPOCHS, SCHEMA_PART, TRIALS, append_rows
from sweep.spec import parse_spec
from workers.config import TrialConfig
from workers.io import write_parquet
from workers.trial import unfinished_row

#: Epoch rows per synthetic trial (the paper's students train for 10 epochs).
EPOCHS_PER_TRIAL = 10


def _spec(root: str):
    raw = {"name": "bench-writes", "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": 2},
           "paths": {"results": root}}  # fmt: skip
    return parse_spec(raw, "<bench-writes>")


@functools.lru_cache(maxsize=1)
def _template() -> tuple[dict, tuple[dict, ...]]:
    epochs = tuple({"epoch": e, "train_loss": 1.0 / e, "train_ce": 0.9 / e, "train_kl": 0.0, "train_acc": 0.5,
                    "test_loss": 1.1 / e, "test_acc": 0.5, "val_loss": math.nan, "val_acc": math.nan,
                    "head_scale": math.nan, "circuit_executions": 1000 * e, "wall_s": 0.5}
                   for e in range(1, EPOCHS_PER_TRIAL + 1))  # fmt: skip
    cfg = TrialConfig(dataset="digits", classes="0-3", qubits=2, teacher="none", backend="statevector", seed=0)
    return unfinished_row(cfg, "ok", "", list(epochs)), epochs


def _trial(i: int) -> tuple[dict, list[dict]]:
    """A synthetic finished trial: its row and its epochs (a config hash and trial id of its own)."""
    row, epochs = _template()
    row = {**row, "trial_id": f"{i:016x}", "config_hash": f"{i:012x}", "seed": i}
    # The columns Recorder.write adds, here too for the whole-file rewrite it is compared with.
    row.update(spec_name="bench-writes", spec_hash="0" * 12, tune_trial_id=f"bench_{i:05d}", node_id="")
    return row, [{**e, "trial_id": row["trial_id"], "config_hash": row["config_hash"]} for e in epochs]


def _recorder(root: Path):
    return Recorder(_spec(str(root)), "config_hash", None, None)


def _write(recorder, start: int, count: int) -> list[float]:
    """``count`` trials written through Recorder.write; the seconds each took."""
    times = []
    for i in range(start, start + count):
        row, epochs = _trial(i)
        trial = types.SimpleNamespace(trial_id=f"bench_{i:05d}")
        t0 = time.perf_counter()
        recorder.write(trial, row, epochs, None)
        times.append(time.perf_counter() - t0)
    return times


def _fill(root: Path, n: int) -> Path:
    """The results folder as a sweep leaves it after ``n`` trials: n parts per table
    (linked copies of one trial's parts; nothing reads them back)."""

    recorder = _recorder(root)
    _write(recorder, 0, 1)  # the schema parts and one real part per table
    results = Path(recorder.dir)
    for name in (TRIALS, EPOCHS):
        folder = results / name
        first = sorted(p for p in folder.iterdir() if p.name != SCHEMA_PART)[0]
        for seq in range(2, n + 1):
            target = folder / f"part-{seq:010d}.parquet"
            try:
                os.link(first, target)
            except OSError:
                shutil.copyfile(first, target)
    return results


def _rewrite(root: Path, n: int, writes: int) -> list[float]:
    """The old write: both tables rewritten whole, on files that hold ``n`` trials."""

    results = root / "bench-writes"
    results.mkdir(parents=True)
    trials = [_trial(i) for i in range(n)]
    write_parquet(pa.Table.from_pandas(pd.DataFrame([r for r, _ in trials]), preserve_index=False), results / TRIALS)
    epochs = [e for _, es in trials for e in es]
    write_parquet(pa.Table.from_pandas(pd.DataFrame(epochs), preserve_index=False), results / EPOCHS)
    times = []
    for i in range(n, n + writes):
        row, eps = _trial(i)
        t0 = time.perf_counter()
        append_rows(results / EPOCHS, eps, key="config_hash")
        append_rows(results / TRIALS, [row], key="config_hash")
        times.append(time.perf_counter() - t0)
    return times


def write_cost(n_rows_list=(100, 1000, 10000), writes: int = 30, compare: bool = False,
               progress=None) -> dict:  # fmt: skip
    """Milliseconds per trial that the driver spends writing results, with N trials already
    written, for each N in ``n_rows_list``: the median of ``writes`` writes, after one untimed
    write (the first write of a driver opens the folder, once per sweep).

    Keys ``write_ms_per_trial_at_<N>`` (and, with ``compare``, ``rewrite_ms_per_trial_at_<N>``
    for rewriting the files whole, the way before; 3 writes each, since they are slow)."""
    out: dict = {"write_trials_existing": list(n_rows_list), "write_epochs_per_trial": EPOCHS_PER_TRIAL}
    for n in n_rows_list:
        with tempfile.TemporaryDirectory(prefix="qkd-bench-writes-") as d:
            _fill(Path(d), n)
            recorder = _recorder(Path(d))
            _write(recorder, n, 1)  # untimed: a driver's first write opens the folder (lists it once)
            times = _write(recorder, n + 1, writes)
        out[f"write_ms_per_trial_at_{n}"] = round(1000 * statistics.median(times), 3)
        if progress:
            progress(f"  result write, {n} trials already written: {out[f'write_ms_per_trial_at_{n}']:.2f} ms/trial")
        if compare:
            with tempfile.TemporaryDirectory(prefix="qkd-bench-rewrites-") as d:
                times = _rewrite(Path(d), n, 3)
            out[f"rewrite_ms_per_trial_at_{n}"] = round(1000 * statistics.median(times), 3)
            if progress:
                progress(f"  rewriting whole files instead: {out[f'rewrite_ms_per_trial_at_{n}']:.2f} ms/trial")
    return out


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (100, 1000, 10000)
    print(json.dumps(write_cost(sizes, compare=True, progress=print), indent=2))
