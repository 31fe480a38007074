"""The recorder of results: the driver's writer of every trial's rows, as each trial ends.

The driver is the only writer of the result files. A Ray Tune callback
(:func:`tune_callback`) hands the recorder each report: a finished config's rows come
in its last report and are written at once, epochs before the trial row (a row is
the mark of a finished trial), each as one part of ``trials.parquet`` and
``epochs.parquet`` (:class:`sweep.results.PartedTable`), so that a write costs the
same at the thousandth trial as at the first; a trial stopped by a scheduler or
failed gets a row saying so from the epochs it reported. One status line per
finished trial says how far the sweep is.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections import defaultdict

from sweep.configs import config_from_dict, sampled_config
from sweep.results import EPOCHS, TEACHERS, TRIALS, PartedTable, append_rows
from sweep.spec import Spec
from workers.config import TrialConfig


class Recorder:
    """Writes each trial's rows as it ends (a Tune callback; the driver is the only writer),
    and says so in one status line per trial: done, running, left and an ETA."""

    def __init__(self, spec: Spec, key: str, configs: dict[str, dict] | None, base: dict | None,
                 total: int = 0, progress=None, groups: dict[str, list[str]] | None = None):  # fmt: skip
        self.spec, self.key, self.configs, self.base, self.groups = spec, key, configs, base, groups
        #: Tune trial id -> config hashes whose rows were written (a task of several configs).
        self.written: dict[str, set[str]] = defaultdict(set)
        self.dir = spec.results_dir
        #: One part per finished trial (sweep.results): the cost of a write does not grow with the table.
        self.trials_out = PartedTable(self.dir / TRIALS, key)
        self.epochs_out = PartedTable(self.dir / EPOCHS, key)
        #: teacher_key -> the row last written to teachers.parquet (a small file rewritten whole).
        self.teachers_written: dict[str, str] = {}
        self.epochs: dict[str, dict[int, dict]] = defaultdict(dict)
        self.counts: dict[str, int] = defaultdict(int)
        self.total, self.progress = total, progress
        #: Trials Tune says are running, besides the one just ended (set by the callback).
        self.running = 0
        self.done = 0
        self.t0 = time.perf_counter()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; the printer stays with the driver.
        return {**self.__dict__, "progress": None}

    def status_line(self, row: dict) -> str:
        """``[done/total] what it was: status, accuracy, time; running, left, ETA`` (the ETA from
        this sweep's own pace so far: elapsed / done x left)."""
        left = max(0, self.total - self.done)
        elapsed = time.perf_counter() - self.t0
        eta = dt.timedelta(seconds=round(elapsed / self.done * left)) if self.done else "?"
        teacher = row.get("teacher", "?")
        teacher = "baseline" if teacher == "none" else teacher
        what = (f"{row.get('dataset', '?')} {row.get('classes', '?')} {row.get('qubits', '?')}q "
                f"{row.get('student', '')} {teacher} seed {row.get('seed', '?')}")  # fmt: skip
        acc = row.get("test_acc", math.nan)
        result = f"test_acc {acc:.4f}" if isinstance(acc, float) and not math.isnan(acc) else "no test_acc"
        return (f"[{self.done}/{self.total}] {what}: {row.get('status', '?')}, {result}, "
                f"{row.get('wall_s', math.nan):.0f}s; running {self.running}, left {left}, ETA {eta}")  # fmt: skip

    def members(self, trial) -> list[str]:
        """The config labels a grid trial runs, in order (one, unless trials_per_task > 1)."""
        label = trial.config["trial"]
        return (self.groups or {}).get(label, [label])

    def config_of(self, trial, label: str | None = None) -> TrialConfig:
        config = trial.config
        if self.configs is not None:
            return config_from_dict(self.configs[label or self.members(trial)[0]])
        return sampled_config(self.base, config)

    _EPOCH_KEYS = ("epoch", "train_loss", "train_ce", "train_kl", "train_acc", "test_loss", "test_acc",
                   "val_loss", "val_acc", "head_scale", "circuit_executions", "wall_s")  # fmt: skip

    def on_result(self, trial, result: dict) -> None:
        if result.get("row_json"):  # a config finished: its rows now, whatever its task runs next
            row = json.loads(result["row_json"])
            epochs = json.loads(result["epochs_json"])
            teacher = json.loads(result["teacher_json"]) if result.get("teacher_json") else None
            self.counts["nan_loss" if row["status"] == "nan_loss" else "finished"] += 1
            self.written[trial.trial_id].add(row["config_hash"])
            self.epochs[trial.trial_id].clear()
            self.write(trial, row, epochs, teacher)
            return
        if "epoch" in result and not _isnan(result.get("epoch")):
            reported = json.loads(result["epochs_json"]) if result.get("epochs_json") else [result]
            for r in reported:
                epoch = int(r["epoch"])
                if epoch == 1:  # a retried trial (or the next config of its task) starts over
                    self.epochs[trial.trial_id].clear()
                self.epochs[trial.trial_id][epoch] = {k: r[k] for k in self._EPOCH_KEYS if k in r}

    def on_complete(self, trial) -> None:
        result = trial.last_result or {}
        if result.get("row_json"):
            return  # written as it was reported
        scheduler = self.spec.search.scheduler if self.spec.search else ""
        row, epochs = self.unfinished(trial, "pruned", f"stopped by the {scheduler} scheduler after epoch {{n}}")
        self.counts["pruned"] += 1
        self.write(trial, row, epochs, None)

    def unfinished(self, trial, status: str, reason: str, label: str | None = None) -> tuple[dict, list[dict]]:
        """The row of a trial that did not reach its last epoch, and the epochs it reported
        (``{n}`` in ``reason`` becomes their number)."""
        from workers.trial import unfinished_row  # noqa: PLC0415

        epochs = [self.epochs[trial.trial_id][e] for e in sorted(self.epochs[trial.trial_id])]
        self.epochs[trial.trial_id].clear()
        row = unfinished_row(self.config_of(trial, label), status, reason.format(n=len(epochs)), epochs)
        return row, [{**e, "trial_id": row["trial_id"]} for e in epochs]

    def on_error(self, trial) -> None:
        text: list[str] = []
        if trial.error_file and os.path.exists(trial.error_file):  # the driver's own copy, written first
            with open(trial.error_file) as f:
                text = f.read().strip().splitlines()
        elif trial.get_error():
            text = str(trial.get_error()).strip().splitlines()
        reason = next((ln for ln in reversed(text) if ln.strip()), "trial failed").strip()[:500]
        # Braces in an exception's text are not format fields.
        safe = reason.replace("{", "{{").replace("}", "}}")
        # Every config of the task without a row: the one that failed (with the epochs it
        # reported), and any after it that it never reached; a rerun retries them all.
        done = self.written.pop(trial.trial_id, set())
        labels = self.members(trial) if self.configs is not None else [None]
        failed = ""
        for label in labels:
            if label is not None and config_from_dict(self.configs[label]).config_hash() in done:
                continue
            why = (f"not reached: {failed}, before it in its task, failed {trial.num_failures} time(s): {safe}"
                   if failed else f"failed {trial.num_failures} time(s): {safe}")  # fmt: skip
            row, epochs = self.unfinished(trial, "error", why, label)
            failed = failed or (label or "")
            self.counts["failed"] += 1
            self.write(trial, row, epochs, None)

    def write(self, trial, row: dict, epochs: list[dict], teacher: dict | None) -> None:
        row = {**row, "spec_name": self.spec.name, "spec_hash": self.spec.spec_hash,
               "tune_trial_id": trial.trial_id}  # fmt: skip
        row.setdefault("node_id", "")
        epochs = [{**e, "config_hash": row["config_hash"]} for e in epochs]
        # Epochs first, the trial row last: a row is the mark of a finished trial.
        if epochs:
            self.epochs_out.append(epochs)
        if teacher:
            text = json.dumps(teacher, sort_keys=True, default=str)
            if self.teachers_written.get(teacher.get("teacher_key")) != text:  # most trials share a teacher
                append_rows(self.dir / TEACHERS, [teacher], key="teacher_key")
                self.teachers_written[teacher.get("teacher_key")] = text
        self.trials_out.append([row])
        self.done += 1
        if self.progress is not None:
            self.progress(self.status_line(row))

    def close(self) -> None:
        """The sweep's parts compacted into one file per table (the form at rest)."""
        self.epochs_out.compact()
        self.trials_out.compact()


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def tune_callback(recorder: Recorder):
    """The Tune callback that hands each trial's results, completion and failure to ``recorder``."""
    from ray import tune  # noqa: PLC0415

    def running(trials, trial) -> int:
        return sum(1 for t in trials if t is not trial and t.status == "RUNNING")

    class _Callback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.on_result(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            recorder.running = running(trials, trial)
            recorder.on_complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            recorder.running = running(trials, trial)
            recorder.on_error(trial)

    return _Callback()
