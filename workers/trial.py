"""One trial, top to bottom: a plain function of a :class:`TrialConfig`.

data -> frozen teacher (cached logits) -> quantum student on a backend, trained
with the distillation loss -> per-epoch reports and one result row. Nothing
here knows about Ray: the sweep driver, the CLI and the tests call
:func:`run_trial` the same way.

Randomness: one ``seed`` feeds independent streams (numpy SeedSequence) for
the student's samples, its initial weights, the batch order, the shot
sampling, the shot sampling of the validation split (so that adding one
changes no other number) and that of a test split scored under a ``test_noise`` of
its own, so that two trials with the same seed and different teachers train
on the same samples from the same start (paired comparisons), and a trial on
the ``statevector`` backend is deterministic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from workers.config import TrialConfig
from workers.data import Dataset, Split, load_dataset, student_splits, validation_split
from workers.distill import distillation_loss
from workers.provenance import code_version, package_versions
from workers.student import build_student, scoring_backend
from workers.teachers.logits import get_teacher

log = logging.getLogger(__name__)

EVAL_BATCH = 256


@dataclass
class TrialResult:
    """The trial's result row and its per-epoch rows (plain dicts, Parquet-ready)."""

    row: dict
    epochs: list[dict] = field(default_factory=list)
    #: The teacher this trial used, as a row of teachers.parquet (None for a baseline).
    teacher: dict | None = None


def _seeds(seed: int) -> dict[str, int]:
    # New streams go at the end: SeedSequence children depend only on their index,
    # so the earlier ones (and the results of earlier runs) stay as they were.
    names = ("data", "init", "order", "shots", "val_shots", "dropout", "test_shots")
    states = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(s.generate_state(1)[0]) for n, s in zip(names, states, strict=True)}


def student_samples(dataset: Dataset, cfg: TrialConfig) -> tuple[Split, Split, Split | None]:
    """The student's training, test and (when asked) validation samples: one function for
    the trial and the sweep's preflight, so that both draw exactly the same samples."""
    r = cfg.resolved()
    data_seed = _seeds(cfg.seed)["data"]
    train, test = student_splits(dataset, r.samples_per_class, r.test_samples_per_class, data_seed,
                                 r.take_available, r.selection)  # fmt: skip
    val = None
    if r.val_samples_per_class:
        val = validation_split(dataset, train, r.val_samples_per_class, data_seed, r.take_available, r.selection)
    return train, test, val


def trial_data(cfg: TrialConfig) -> tuple[Dataset, Split, Split, Split | None]:
    """The trial's dataset and its training, test and (when asked) validation samples: what
    a trial trains on, and what the sweep's preflight checks before anything runs."""
    r = cfg.resolved()
    dataset = load_dataset(r.dataset, r.class_labels, r.data_root, r.download, normalize=r.normalize)
    return (dataset, *student_samples(dataset, cfg))


def run_trial(
    cfg: TrialConfig,
    progress: Callable[[dict], None] | None = None,
    teacher_progress: Callable[[str], None] | None = None,
) -> TrialResult:
    """Train one student as ``cfg`` says and return its result row and epoch rows
    (``progress`` gets each epoch's report; ``teacher_progress`` a line per teacher epoch
    when the teacher has to be trained)."""
    cfg.validate()
    r = cfg.resolved()
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    seeds = _seeds(cfg.seed)
    trial_id = uuid.uuid4().hex[:16]

    dataset, train, test, val = trial_data(cfg)

    teacher = None
    t_train_logits = None
    if cfg.teacher != "none":
        teacher = get_teacher(dataset, cfg.teacher, cfg.teacher_settings, cfg.cache_dir, teacher_progress)
        if cfg.distills:
            t_train_logits = teacher.for_split(dataset.train, train, "train").double()
        log.info("teacher %s %s (test acc %.4f) at %s", cfg.teacher,
                 "read from cache" if teacher.cached else "trained", teacher.test_acc, teacher.path)  # fmt: skip
    teacher_ready = time.perf_counter()

    model = build_student(r, train.images, seeds["init"], seeds["shots"])
    backend = model.backend
    # The test and validation splits are scored under test_noise: on the model's own
    # backend, unless test_noise names another noise; then on a backend of its own, whose
    # test shots come from a stream of their own (validation keeps its stream).
    scorer = scoring_backend(r, model, seeds["shots"])
    test_rng = np.random.default_rng(seeds["test_shots"]) if scorer is not backend else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order = torch.Generator().manual_seed(seeds["order"])
    val_rng = np.random.default_rng(seeds["val_shots"])

    epochs: list[dict] = []
    status, error = "ok", ""
    n = len(train)
    # Dropout (the CNN students) draws from torch's global generator: seeded here, for this trial alone.
    with torch.random.fork_rng():
        torch.manual_seed(seeds["dropout"])
        for epoch in range(1, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=order)
            loss_sum = ce_sum = kl_sum = 0.0
            correct = 0
            for i in range(0, n, cfg.batch_size):
                rows = perm[i : i + cfg.batch_size]
                logits = model(train.images[rows])
                t_logits = t_train_logits[rows] if t_train_logits is not None else None
                loss, parts = distillation_loss(
                    logits, train.labels[rows], t_logits,
                    cfg.temperature, cfg.lam, cfg.kd_form, cfg.kd_defect,
                )  # fmt: skip
                if not torch.isfinite(loss):
                    status, error = "nan_loss", f"non-finite loss in epoch {epoch}, batch {i // cfg.batch_size}"
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                k = len(rows)
                loss_sum += loss.item() * k
                ce_sum += parts["ce"] * k
                kl_sum += parts["kl"] * k
                correct += int((logits.argmax(1) == train.labels[rows]).sum())
            if status != "ok":
                break
            if test_rng is not None and backend.shots:
                # Scored as trained too, only so that the training's shot stream advances as
                # it does without test_noise (how far a multinomial draw moves a stream depends
                # on the probabilities): training is then the same as in that trial, and a
                # robustness curve compares one trained model under each noise. Not kept.
                evaluate(model, test.images, test.labels)
            with _scored_on(model, scorer, test_rng):
                test_loss, test_acc = evaluate(model, test.images, test.labels)
            val_loss, val_acc = (math.nan, math.nan)
            if val is not None:  # its own shot stream: a validation split leaves training and test as they were
                with _scored_on(model, scorer, val_rng):
                    val_loss, val_acc = evaluate(model, val.images, val.labels)
            report = {
                "trial_id": trial_id,
                "epoch": epoch,
                "train_loss": loss_sum / n,
                "train_ce": ce_sum / n,
                "train_kl": kl_sum / n if cfg.distills else math.nan,
                "train_acc": correct / n,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "head_scale": model.head_scale,
                "circuit_executions": _cost(backend, scorer, "executions"),
                "wall_s": time.perf_counter() - t_epoch,
            }
            epochs.append(report)
            if progress:
                progress(report)

    reported = reported_epoch(epochs, r.report_epoch)
    row = {
        "trial_id": trial_id,
        **config_columns(cfg),
        "n_train": len(train),
        "n_test": len(test),
        "n_val": len(val) if val is not None else 0,
        "n_params": model.n_params,
        "head_scale": model.head_scale,
        **_epoch_metrics(reported),
        "reported_epoch": int(reported.get("epoch", 0)),
        "last_test_acc": float(epochs[-1]["test_acc"]) if epochs else math.nan,
        "teacher_test_acc": teacher.test_acc if teacher else math.nan,
        "teacher_best_test_acc": teacher.best_test_acc if teacher else math.nan,
        "teacher_key": teacher.key_hash if teacher else "",
        "teacher_cached": bool(teacher.cached) if teacher else False,
        "teacher_wall_s": teacher_ready - t_start,
        "circuit_executions": _cost(backend, scorer, "executions"),
        "shots_total": _cost(backend, scorer, "shots_total"),
        # What actually ran (an Aer run that fell back to AerSimulator.run says aer-public).
        "executor": _executor_name(backend, scorer),
        "measurement": backend.measurement.name if backend else "",
        **circuit_columns(backend),
        **circuit_columns(scorer, "test_"),
        "wall_s": time.perf_counter() - t_start,
        "status": status,
        "error": error,
        "started_at": started.isoformat(timespec="seconds"),
        **_provenance(),
    }
    teacher_row = teacher.row(dataset, cfg.classes) if teacher else None
    return TrialResult(row, epochs, teacher_row)


@contextlib.contextmanager
def _scored_on(model, scorer, rng: np.random.Generator | None):
    """Score ``model`` on backend ``scorer``, its shots drawn from ``rng`` (None: its own)."""
    if scorer is model.backend:
        with _drawing_from(scorer, rng):
            yield
        return
    own, model.backend = model.backend, scorer
    try:
        with _drawing_from(scorer, rng):
            yield
    finally:
        model.backend = own


def _cost(backend, scorer, what: str) -> int:
    """Circuits (or shots) run for training and scoring, on one backend or two."""
    if backend is None:
        return 0
    return getattr(backend, what) + (getattr(scorer, what) if scorer is not backend else 0)


def _executor_name(backend, scorer) -> str:
    if backend is None:
        return ""
    train, test = backend.executor.name, scorer.executor.name
    return train if train == test else f"{train} (test: {test})"


#: A row's columns of the circuit that ran where none did (statevector, a classical student).
NO_CIRCUIT = {"layout": "", "transpiled_depth": -1, "two_qubit_gates": -1}


def circuit_columns(backend, prefix: str = "") -> dict:
    """The circuit that ran: its device layout (physical qubit per logical qubit, ``""``
    off a device), depth and two-qubit gate count as transpiled (-1 where nothing was
    transpiled); ``test_`` for the one the test split was scored on."""
    info = getattr(getattr(backend, "executor", None), "circuit_info", None)
    values = info() if info else NO_CIRCUIT
    return {prefix + k: values[k] for k in NO_CIRCUIT}


@contextlib.contextmanager
def _drawing_from(backend, rng: np.random.Generator):
    if backend is None:
        yield
        return
    with backend.drawing_from(rng):
        yield


def reported_epoch(epochs: list[dict], rule: str) -> dict:
    """The epoch a row reports: the last; the best validation accuracy (first such epoch);
    or, only to replicate the paper's notebooks, the best *test* accuracy (first such)."""
    if not epochs:
        return {}
    if rule == "last":
        return epochs[-1]
    metric = {"best_val": "val_acc", "best_test": "test_acc"}[rule]
    scores = [e[metric] if not math.isnan(e[metric]) else -math.inf for e in epochs]
    return epochs[int(np.argmax(scores))]


def config_columns(cfg: TrialConfig) -> dict:
    """The result columns that come from the configuration alone, read off its resolved form
    (the same form the config hash is made of)."""
    r = cfg.resolved()
    has_teacher = r.teacher != "none"
    ts = r.teacher_settings
    return {
        "config_hash": cfg.config_hash(),
        "dataset": r.dataset,
        "classes": r.classes,
        "n_classes": r.n_classes,
        "teacher": r.teacher,
        "student": r.student,
        "qubits": r.qubits,
        "temperature": float(r.temperature) if has_teacher else math.nan,
        "lam": float(r.lam) if has_teacher else math.nan,
        "kd_form": r.kd_form if r.distills else "",
        "kd_defect": r.kd_defect if r.distills else "",
        "seed": r.seed,
        "backend": r.backend,
        "shots": r.shots,
        "noise": r.noise or "",
        "test_noise": r.effective_test_noise or "",
        "noise_scale": float(r.noise_scale),
        "shift_rule": r.shift_rule,
        "gradient": r.gradient,
        "device": r.device if r.kind.quantum else "",
        "epochs": r.epochs,
        "lr": float(r.lr),
        "batch_size": r.batch_size,
        "samples_per_class": r.samples_per_class,
        "test_samples_per_class": r.test_samples_per_class,
        "val_samples_per_class": r.val_samples_per_class,
        "selection": r.selection,
        "normalize": r.normalize,
        "report_epoch": r.report_epoch,
        "selects_on_test": r.selects_on_test,
        "reduction": r.reduction,
        "ansatz": r.ansatz,
        "layers": r.layers,
        "head": r.head,
        "learn_scale": r.learn_scale,
        "teacher_seed": ts.seed if has_teacher else -1,
        "teacher_recipe": ts.recipe if has_teacher else "",
        "teacher_keep": ts.keep if has_teacher else "",
    }


_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "val_acc", "val_loss")


def _epoch_metrics(epoch: dict) -> dict:
    return {k: float(epoch.get(k, math.nan)) for k in _METRICS}


def _provenance() -> dict:
    return {"host": platform.node(), "code_version": code_version(), **package_versions()}


def unfinished_row(cfg: TrialConfig, status: str, error: str, epochs: list[dict], trial_id: str = "") -> dict:
    """The result row of a trial that did not run to its end (stopped by a scheduler, or
    failed): its configuration, the last epoch it reported, and why it stopped.
    Counts it never measured are -1."""
    last = epochs[-1] if epochs else {}
    return {
        "trial_id": trial_id or uuid.uuid4().hex[:16],
        **config_columns(cfg),
        "n_train": -1,
        "n_test": -1,
        "n_val": -1,
        "n_params": -1,
        "head_scale": float(last.get("head_scale", math.nan)),
        **_epoch_metrics(last),
        "reported_epoch": int(last.get("epoch", 0)),
        "last_test_acc": float(last.get("test_acc", math.nan)),
        "teacher_test_acc": math.nan,
        "teacher_best_test_acc": math.nan,
        "teacher_key": "",
        "teacher_cached": False,
        "teacher_wall_s": math.nan,
        "circuit_executions": int(last.get("circuit_executions", -1)),
        "shots_total": -1,
        "executor": "",
        "measurement": "",
        **circuit_columns(None),
        **circuit_columns(None, "test_"),
        "wall_s": float(sum(e.get("wall_s", 0.0) for e in epochs)),
        "status": status,
        "error": error,
        "started_at": "",
        **_provenance(),
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Cross-entropy and accuracy, measured as the backend measures (with shots on Aer)."""
    model.eval()
    logits = torch.cat([model(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)])
    loss = float(F.cross_entropy(logits, labels))
    acc = float((logits.argmax(1) == labels).float().mean())
    return loss, acc
