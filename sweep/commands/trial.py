"""``qkd-sweep trial``: one trial from the command line's options, its rows appended to
``--out``, a summary printed; tqdm bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tqdm import tqdm

from sweep.cli import config
from sweep.preflight import check_creatable
from sweep.progress import interactive
from sweep.results import EPOCHS, TEACHERS, TRIALS, append_rows
from workers.io import StorageError, location
from workers.trial import run_trial


def _fmt(x: float) -> str:
    return "  -   " if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"


class _Bars:
    """tqdm bars (epochs done, ETA) on a terminal; the same progress as plain lines elsewhere
    (CI, pipes, files), one per epoch."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def step(self, name: str, done: int, total: int, line: str, **postfix) -> None:
        if not self.enabled:
            print(line, file=sys.stderr, flush=True)
            return

        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, desc=name, unit="epoch", file=sys.stderr, leave=True)
        bar.update(done - bar.n)
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    def write(self, line: str) -> None:
        if self.enabled:
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _check_outputs(out: Path, cache_dir: str) -> None:
    """``--out`` and the teacher cache (``cache_dir``, DIR/cache unless given) before the trial
    runs: one that is a file, lies under a file or cannot be written is one line now, not a
    traceback once the student has trained."""

    check_creatable(location(out), "--out")
    try:
        cache = location(cache_dir)
    except StorageError as exc:  # a URI no file system takes
        raise StorageError(f"cache_dir: {exc}") from None
    check_creatable(cache, "cache_dir")


def run(args: argparse.Namespace) -> int:
    cfg = config(args)
    out = Path(args.out)
    _check_outputs(out, cfg.cache_dir)
    bars = _Bars(enabled=not args.quiet and interactive())

    def progress(r: dict) -> None:
        if args.quiet:
            return
        line = (f"epoch {r['epoch']:>3}/{cfg.epochs}  train_loss {_fmt(r['train_loss'])}  "
                f"train_acc {_fmt(r['train_acc'])}  test_loss {_fmt(r['test_loss'])}  "
                f"test_acc {_fmt(r['test_acc'])}  ({r['wall_s']:.1f}s)")  # fmt: skip
        bars.step("student", r["epoch"], cfg.epochs, line, test_acc=f"{r['test_acc']:.4f}")

    def teacher_progress(line: str) -> None:
        if args.quiet:
            return
        done, _, total = line.removeprefix("epoch ").partition(" ")[0].partition("/")
        if done.isdigit() and total.isdigit():
            bars.step(f"teacher {cfg.teacher}", int(done), int(total), f"teacher {cfg.teacher}: {line}")
        else:
            bars.write(f"teacher {cfg.teacher}: {line}")

    try:
        result = run_trial(cfg, progress, teacher_progress)
    finally:
        bars.close()
    row = result.row
    # Epochs first, trial row last: a trial row is the mark that a trial finished.
    append_rows(out / EPOCHS, result.epochs)
    if result.teacher:
        append_rows(out / TEACHERS, [result.teacher], key="teacher_key")
    append_rows(out / TRIALS, [row])
    teacher = "none (baseline)" if cfg.teacher == "none" else (
        f"{cfg.teacher} (test acc {row['teacher_test_acc']:.4f}, "
        f"{'cached logits' if row['teacher_cached'] else 'trained now'})"
    )  # fmt: skip
    print(f"trial {row['trial_id']}  status {row['status']}{'  ' + row['error'] if row['error'] else ''}")
    print(f"  {cfg.dataset} classes {cfg.classes}, {cfg.qubits} qubits, {row['student']} student, "
          f"{row['ansatz'] or '-'} circuit, {row['reduction'] or '-'} reduction, {row['backend'] or '-'} backend, "
          f"{row['shots'] or 'exact'} shots, seed {cfg.seed}")  # fmt: skip
    print(f"  teacher   {teacher}")
    if cfg.distills:
        print(f"  distill   T={cfg.temperature:g} lam={cfg.lam:g} form={cfg.kd_form}")
    if cfg.report_epoch != "last":
        print(f"  reported  epoch {row['reported_epoch']} ({cfg.report_epoch}"
              f"{': SELECTED ON THE TEST SPLIT' if cfg.report_epoch == 'best_test' else ''}); "
              f"last epoch's test_acc {row['last_test_acc']:.4f}")  # fmt: skip
    print(f"  test_acc  {row['test_acc']:.4f}  ({row['n_test']} samples)   "
          f"train_acc {row['train_acc']:.4f}  ({row['n_train']} samples)")  # fmt: skip
    print(f"  quantum   {row['circuit_executions']:,} circuit executions, "
          f"{row['shots_total']:,} shots")  # fmt: skip
    print(f"  wall      {row['wall_s']:.1f}s (teacher {row['teacher_wall_s']:.1f}s)")
    print(f"  results   {out / TRIALS}")
    return 0 if row["status"] == "ok" else 1
