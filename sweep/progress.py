"""Phase 1's progress as a person reads it: drawn by the driver from the teachers' heartbeats.

A teacher task sends each progress line (``epoch k/N ... (Ts, ETA Es)``, ``resuming ...``)
as its heartbeat (:mod:`sweep.teachers_phase`); the driver's watch reads them every couple
of seconds and hands them here. So the tasks print nothing (Ray would prefix every line
with ``(_teacher_task pid=...)`` and colour codes, pipe or not), and what is shown is:

* on a terminal: one live tqdm bar per teacher (epochs done, elapsed, ETA);
* in a pipe, a file or CI: a plain line when a teacher starts, resumes, and each time it
  passes another tenth of its epochs, with no escape codes.

``--verbose`` keeps every line of the tasks' own output as well.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable

from workers.kinds import TEACHERS, parse_classes, trained_as_one

_EPOCH = re.compile(r"^epoch (\d+)/(\d+)\b")
_RESUME = re.compile(r"^resuming \S+ from epoch (\d+)/(\d+)")


def parse_epoch(line: str) -> tuple[int, int] | None:
    """(epochs done, epochs) of a teacher's progress line, or None for another line."""
    m = _EPOCH.match(line) or _RESUME.match(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def interactive(stream=None) -> bool:
    """A person watching: stderr (or ``stream``) is a terminal and no CI runner says otherwise.
    Progress is live bars then, plain lines elsewhere (pipes, files, CI)."""
    return (stream or sys.stderr).isatty() and not os.environ.get("CI")


class TeacherProgress:
    """The teachers' progress, as bars (``live``) or as plain lines at most every 10%."""

    def __init__(self, labels: list[str], live: bool, write: Callable[[str], None] = print):
        self.labels, self.live, self.write = labels, live, write
        self.bars: dict[int, object] = {}
        self.shown: dict[int, int] = {}  # per teacher: the last tenth of its epochs printed
        self.lines: dict[int, str] = {}

    def beat(self, i: int, line: str) -> None:
        """Teacher ``i`` sent ``line`` (called once per new heartbeat)."""
        if line == self.lines.get(i):
            return
        self.lines[i] = line
        label = self.labels[i]
        got = parse_epoch(line)
        if self.live:
            self._bar(i, label, line, got)
            return
        if got is None:
            if line == "started":
                self.write(f"  teacher {label}: started")
            return
        done, total = got
        tenth = done * 10 // max(1, total)
        if line.startswith("resuming"):
            self.write(f"  teacher {label}: {line}")
            self.shown[i] = tenth
        elif tenth > self.shown.get(i, 0):
            self.shown[i] = tenth
            self.write(f"  teacher {label}: {line}")

    def _bar(self, i: int, label: str, line: str, got: tuple[int, int] | None) -> None:
        from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

        bar = self.bars.get(i)
        if got is None:
            return
        done, total = got
        if bar is None:
            bar = self.bars[i] = tqdm(total=total, initial=done, desc=f"teacher {label}", unit="epoch",
                                      position=len(self.bars), file=sys.stderr, leave=True)  # fmt: skip
        bar.update(done - bar.n)  # type: ignore[attr-defined]
        eta = re.search(r"ETA (\d+)s", line)
        acc = re.search(r"test acc ([\d.]+)", line)
        if acc:
            bar.set_postfix_str(f"test acc {acc.group(1)}" + (f", ETA {eta.group(1)}s" if eta else ""))  # type: ignore[attr-defined]

    def finished(self, i: int) -> None:
        bar = self.bars.pop(i, None)
        if bar is not None:
            bar.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        for i in list(self.bars):
            self.finished(i)


def teacher_outlook(jobs: list, cache_dir) -> str:
    """What phase 1 will cost, as far as the teacher cache tells before anything loads: the
    teachers already cached, and for the others the time earlier trainings of the same
    architecture on the same dataset and classes took per epoch (any settings), scaled to
    this one's epochs. Reads only the entries' ``meta.json``; no data, no torch."""

    from workers.io import location  # noqa: PLC0415

    root = location(cache_dir) / "teachers"
    cached = timed = untimed = 0
    seconds = 0.0
    for job in jobs:
        settings, arch = job.settings, job.arch
        if arch in TEACHERS and not trained_as_one(arch, settings.recipe):
            continue  # assembled from its members' logits: no training of its own
        try:
            classes = "-".join(str(c) for c in parse_classes(job.classes))
        except Exception:  # noqa: BLE001 - a user dataset's labels: the estimate is only a hint
            classes = job.classes
        name = arch if arch.replace("-", "").isalnum() else "*"
        epochs = settings.resolved_epochs(job.dataset, arch)
        want = {"epochs": epochs, "lr": settings.resolved_lr(arch), "batch_size": settings.batch_size,
                "optimizer": settings.resolved_optimizer(arch), "seed": settings.seed}  # fmt: skip
        rates, hit = [], False
        folder = root / (job.dataset if job.dataset.replace("-", "").isalnum() else "*") / classes
        try:
            metas = sorted(folder.local_path.glob(f"{name}-seed*-*/meta.json")) if folder.is_local else []
        except OSError:
            metas = []
        for path in metas:
            try:
                meta = json.loads(path.read_text())
                key, spent = meta["key"], float(meta["train_seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            same = all(key.get(k) == v for k, v in want.items())
            same = same and key.get("recipe_name", "default") == settings.recipe
            if same and (path.parent / "logits.parquet").exists():
                hit = True
                break
            if isinstance(key.get("epochs"), int) and key["epochs"] > 0 and math.isfinite(spent) and spent > 0:
                rates.append(spent / key["epochs"])
        if hit:
            cached += 1
        elif rates:
            timed += 1
            seconds += sorted(rates)[len(rates) // 2] * epochs
        else:
            untimed += 1
    parts = [f"{cached} cached"] if cached else []
    if timed:
        parts.append(f"{timed} to train in about {_duration(seconds)} (earlier trainings in the cache)")
    if untimed:
        parts.append(f"{untimed} to train, not timed before")
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
