"""Phase 2: the student trials under Ray Tune, a grid search over the trial configs or,
for a spec with a ``search:`` section, an Optuna study (:mod:`sweep.search`).

Tune owns resources, retries (``resources.max_failures``) and its experiment state
(``<results>/<name>/tune/``); each trial is :func:`workers.trial.run_trial` in a Tune
trainable (:func:`_student`), whose reports carry the result rows that the driver's
:class:`~sweep.recorder.Recorder` writes as each trial ends.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time

import ray
import torch
from ray import tune

from sweep.configs import config_from_dict, sampled_config
from sweep.recorder import Recorder, tune_callback
from sweep.search import study_setup
from sweep.spec import Spec
from sweep.spec_errors import SpecError
from workers.config import TrialConfig
from workers.trial import run_trial

#: A grid trial reports to Tune at most this often (its epochs are buffered in between and
#: sent with the next report; the last report carries the whole row). Every report is a
#: round trip through Tune's controller (~0.5 s on a busy 2-core machine), which would
#: dominate trials of a second or two; a study reports every epoch, for its scheduler.
REPORT_EVERY_S = 5.0


def _student(config: dict, configs: dict[str, dict] | None = None, base: dict | None = None,
             groups: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """Phase 2, in a Ray Tune trial: one student (or, for a grid with
    ``resources.trials_per_task`` > 1, several in turn), reported to Tune as it trains.

    Each config's last report carries its whole result row (``row_json``), which the
    driver writes at once; epochs reach Tune every epoch for a study (so that its
    scheduler sees one iteration per epoch) and at most every ``report_every_s`` for a
    grid, buffered in between (``epochs_json`` of the report), and flushed before a
    trial that raises gives up.
    """

    if configs is not None:
        members = [config_from_dict(configs[label]) for label in (groups or {}).get(config["trial"], [config["trial"]])]
    else:  # a study: the base config with the sampled values
        members = [sampled_config(base, config)]
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    every = float(config.get("report_every_s", 0.0))
    node = ray.get_runtime_context().get_node_id()
    for cfg in members:
        reports = _Reports(tune.report, every, cfg.epochs)
        try:
            result = run_trial(cfg, reports.epoch)
        except BaseException:
            reports.flush()  # the epochs it did finish go into its error row
            raise
        row = {**result.row, "node_id": node}
        last = result.epochs[-1] if result.epochs else {}
        metrics = {k: math.nan for k in ("val_acc", "val_loss", "test_acc", "train_loss")}
        metrics.update({k: v for k, v in last.items() if k != "trial_id"})
        tune.report({**metrics, "status": row["status"], "row_json": json.dumps(row),
                     "epochs_json": json.dumps(result.epochs),
                     "teacher_json": json.dumps(result.teacher) if result.teacher else ""})  # fmt: skip


class _Reports:
    """One config's epochs on their way to Tune: buffered, sent at most every ``every`` seconds
    (0: each epoch), the last epoch kept for the report that carries the row."""

    def __init__(self, send, every: float, epochs: int):
        self.send, self.every, self.epochs = send, every, epochs
        self.pending: list[dict] = []
        self.sent = time.monotonic()

    def epoch(self, r: dict) -> None:
        if r["epoch"] >= self.epochs:
            return
        self.pending.append({k: v for k, v in r.items() if k != "trial_id"})
        if time.monotonic() - self.sent >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send({**self.pending[-1], "epochs_json": json.dumps(self.pending)})
            self.pending = []
        self.sent = time.monotonic()


def tracking_callbacks(spec: Spec) -> list:
    """Ray Tune's loggers for the spec's ``tracking:`` section (an MLflow run per Tune trial)."""
    if not spec.tracking.mlflow:
        return []
    try:
        import mlflow  # noqa: F401, PLC0415
        from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: PLC0415
    except ImportError:
        raise SpecError("tracking.mlflow", "needs MLflow: pip install -e '.[mlflow]' (or mlflow-skinny)") from None
    uri = spec.tracking.mlflow
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: as Ray's workers see it
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])

    class EpochsToMLflow(MLflowLoggerCallback):
        """An MLflow step per epoch: a report's buffered epochs (``epochs_json``) logged one by one,
        each once (a trial's last report carries every epoch again, for its result row)."""

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            epochs = json.loads(result["epochs_json"]) if result.get("epochs_json") else [result]
            # The last step logged of the config this Tune trial runs now (several run in turn
            # with trials_per_task > 1; the report carrying a config's row ends it).
            done = self.__dict__.setdefault("_last_step", {})
            for e in epochs:
                metrics = {k: v for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)}
                step = int(e.get("epoch") or result.get("training_iteration") or 0)
                if step <= done.get(trial, 0):
                    continue
                done[trial] = step
                self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)
            if result.get("row_json"):
                done.pop(trial, None)

    return [EpochsToMLflow(tracking_uri=uri, experiment_name=spec.tracking.experiment or spec.name,
                           save_artifact=False)]  # fmt: skip


def _reporter(spec: Spec, verbose: int):
    """A trial table every half minute: the trial, its epoch and its accuracies (not the row JSON)."""

    metrics = {"epoch": "epoch", "train_loss": "train loss", "test_acc": "test acc"}
    if spec.search is not None:
        metrics["val_acc"] = "val acc"
    params = ["trial"] if spec.search is None else [p.name for p in spec.search.params]
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=30,
                            print_intermediate_tables=verbose > 0, max_column_length=48)  # fmt: skip


def _groups(labels: list[str], per_task: int) -> dict[str, list[str]] | None:
    """Configs run ``per_task`` to a Tune trial, in order (None: one each, labelled as themselves).

    A Tune trial costs about a second of dispatch whatever it runs; for trials of a second
    or two, several per task make that cost a fraction (docs/performance.md)."""
    if per_task <= 1:
        return None
    chunks = [labels[i : i + per_task] for i in range(0, len(labels), per_task)]
    return {f"task{i:04d}-{chunk[0]}+{len(chunk) - 1}": chunk for i, chunk in enumerate(chunks)}


def _label(cfg: TrialConfig) -> str:
    distill = f"-T{cfg.temperature:g}-lam{cfg.lam:g}" if cfg.distills else ""
    return f"{cfg.dataset}-{cfg.classes}-q{cfg.qubits}-{cfg.teacher}{distill}-s{cfg.seed}-{cfg.config_hash()[:6]}"


def run_students(spec: Spec, trials: list[TrialConfig], progress=print, verbose: int = 1) -> dict[str, int]:
    """Phase 2: the trials under Ray Tune (a grid, or a study when the spec has ``search:``)."""

    res = spec.resources
    threads = max(1, int(res.cpus_per_trial))
    storage = spec.results_dir / "tune"  # Tune takes a local path or a URI alike
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if spec.search is None:
        configs = {_label(c): c.to_dict() for c in trials}
        groups = _groups(list(configs), res.trials_per_task)
        recorder = Recorder(spec, "config_hash", configs, None, total=len(configs), progress=progress,
                            groups=groups)  # fmt: skip
        trainable = tune.with_parameters(_student, configs=configs, groups=groups)
        param_space = {"trial": tune.grid_search(list(groups or configs)), "threads": threads,
                       "report_every_s": REPORT_EVERY_S}  # fmt: skip
        tune_kwargs: dict = {}
        name = f"grid-{stamp}"
    else:
        base = trials[0].to_dict()
        recorder = Recorder(spec, "trial_id", None, base, total=spec.search.num_samples, progress=progress)
        trainable = tune.with_parameters(_student, base=base)
        param_space, tune_kwargs = study_setup(spec, trials[0])
        param_space["threads"] = threads
        name = f"study-{stamp}"
    trainable = tune.with_resources(trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            **tune_kwargs,
            max_concurrent_trials=res.max_concurrent_trials,
            # One worker process per CPU slot for the whole sweep: importing torch and
            # Qiskit costs seconds, paid once per worker instead of once per trial.
            reuse_actors=True,
            trial_dirname_creator=lambda t: t.trial_id,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=res.max_failures),
            callbacks=[tune_callback(recorder), *tracking_callbacks(spec)],
            verbose=verbose,
            progress_reporter=_reporter(spec, verbose),
        ),
    )
    try:
        tuner.fit()
    finally:  # a sweep stopped by Ctrl-C leaves its files at rest too (a killed one: the next run does it)
        recorder.close()
    return dict(recorder.counts)
