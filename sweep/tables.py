"""The paper's Tables 1 and 2 and Figs. 6 and 7, rolled up from a results folder.

``qkd-sweep tables results/<name>`` reads ``trials.parquet`` (plus ``epochs.parquet`` and
``teachers.parquet`` when present) and writes ``tables.md``, ``tables.tex``, ``tables.csv``,
``figures/loss_curves.png`` and ``figures/accuracy_bars.png``. Only pandas, scipy and
matplotlib here: the roll-up knows nothing of circuits.

Choices, so that a reader of a table knows what each number is:

- Units. Every accuracy and difference, in the tables and in ``tables.csv``, is in percent
  points (the paper's unit); ``tables.csv`` holds numbers, the tables formatted text.
- Rows that count. Only ``status == "ok"`` trials with a test accuracy. Of several rows with
  one ``config_hash`` (the same experiment run again) only the latest counts: a rerun is the
  same seed, and counting it twice would shrink the spread for nothing. Every row left out
  is counted, with its reason, in a note under its table.
- One experiment per table. The student settings (backend, shots, noise, epochs, lr, batch
  size, samples per class, reduction, ansatz, layers, head, ...) split the trials into
  groups; each dataset gets one table per group, so runs that differ in any of them are
  never averaged together. When the folder holds more than one group, the titles name the
  settings that differ; a note under each table lists all of them.
- Rows. Student: the baseline (``teacher == "none"``) per classes x qubits. Teacher: one
  per dataset x classes x architecture; the accuracy is that of the teacher models the
  table's distillation trials used (``teachers.parquet``, else ``teacher_test_acc``), so
  several teacher seeds give mean ± std and n = number of teacher models. Distillation: one
  per teacher x T x λ x loss form x classes x qubits. When a table holds more than one T, λ
  or form, the values that differ go into the Architecture text, e.g.
  ``Teacher: LeNet (T=3, λ=0.5), Student: Quantum, 3 qubit``; the CSV always has them as
  columns.
- Seeds. Accuracy is the mean over seeds, ± the sample standard deviation (ddof=1) when
  there are two or more, with n. "+ for Student" is the paper's column: the difference of
  the distillation row's mean and its baseline's mean, over all seeds of each. The paired
  comparison uses only the seeds run both ways (matched on ``seed``), since the seed fixes
  the data sample and initialization that both runs share: the mean per-seed difference,
  its 95% CI from the t distribution and the paired t-test p-value (``scipy.stats.ttest_rel``);
  with one pair, the difference alone. The extra columns (n, Paired Δ, p, pairs) appear
  only in a table where some row has two or more seeds; otherwise it is the paper's layout.
- Nothing to report. A ``trials.parquet`` without any ok row is not an error (exit 0): the
  three table files are still written, saying so and counting the excluded rows, so that no
  table from an earlier run is left behind looking current, and the figures of an earlier
  run are removed. A missing folder or ``trials.parquet`` raises ``FileNotFoundError``.
- Figures. Fig. 6: per-epoch train loss (the objective each trial minimized, so it includes
  the distillation term and is not comparable across teachers) and test loss (cross-entropy,
  comparable), mean over seeds with a ±1 std band, one panel per dataset x classes x qubits
  (x settings group), a colour per teacher. Fig. 7: mean test accuracy per teacher with ±1
  std error bars and each seed as a point. Without ``epochs.parquet`` the loss figure is
  skipped (a note says so).
"""

from __future__ import annotations

import argparse
import math
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sweep.results import EPOCHS, TEACHERS, TRIALS
from workers.config import DATASETS
from workers.config import TEACHERS as TEACHER_KINDS
from workers.io import atomic_write

#: Student settings that make two trials different experiments (those absent in a file are skipped).
SETTINGS = (
    "backend", "shots", "noise", "test_noise", "noise_scale", "epochs", "lr", "batch_size", "samples_per_class",
    "test_samples_per_class", "val_samples_per_class", "reduction", "ansatz", "layers", "head",
    "learn_scale", "take_available",
    # the student kind and the protocol: rows that differ in any are never averaged or paired
    "student", "selection", "normalize", "shift_rule", "report_epoch",
)  # fmt: skip
VARIANT = ["teacher", "temperature", "lam", "kd_form", "kd_defect", "teacher_recipe"]
#: How a student kind is named in a table's Architecture column.
STUDENT_NAMES = {
    "amplitude": "Quantum, {q} qubit",
    "cnn-angle": "Quantum (CNN + angle encoding), {q} qubit",
    "cnn-classical": "Classical control (CNN + linear {q}→{d}), {q}-qubit shape",
    "classical": "Classical, {p} parameters ({q}-qubit size)",
}
#: Teachers in the paper's order (AlexNet, LeNet, Ensemble), then every other registered kind.
FIRST_TEACHERS = ("none", "alexnet", "lenet", "ensemble")
CATEGORIES = ("Student", "Teacher", "Distillation")
FIGURES = {"loss_curves": "figures/loss_curves.png", "accuracy_bars": "figures/accuracy_bars.png"}
#: Table key: a dataset and a settings group; a cell adds classes and qubits.
TABLE = ["dataset", "setting"]
CELL = [*TABLE, "classes", "qubits"]
#: Characters per line of a figure panel's settings text (a 4.8-inch panel, 12-point title).
PANEL_TITLE_WIDTH = 46
CSV_NUMBERS = [
    "mean", "std", "n", "median", "min", "max", "n_collapsed", "plus_for_student", "baseline_mean", "baseline_n",
    "diff", "ci_low", "ci_high", "p_value", "n_pairs", "n_teachers",
]  # fmt: skip


@dataclass
class _Table:
    title: str
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


@dataclass
class _Report:
    name: str
    rows: pd.DataFrame
    tables: list[_Table]
    notes: list[str]
    per_seed: pd.DataFrame
    epochs: pd.DataFrame | None
    panel_titles: dict


# ---------------------------------------------------------------------------- loading


def _load(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    d = Path(results_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"results folder not found: {d}")
    # exists, not is_file: during a sweep (or after a killed one) trials and epochs are folders of parts
    if not (d / TRIALS).exists():
        raise FileNotFoundError(f"no {TRIALS} in {d} (run a sweep into it first)")
    trials = pd.read_parquet(d / TRIALS)
    epochs = pd.read_parquet(d / EPOCHS) if (d / EPOCHS).exists() else None
    teachers = pd.read_parquet(d / TEACHERS) if (d / TEACHERS).exists() else None
    return trials, epochs, teachers


def _prepare(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Normalize keys and mark each row's reason to be left out ('' when it counts)."""
    t = trials.copy().reset_index(drop=True)
    for col, default in (("status", "ok"), ("kd_form", ""), ("teacher_key", ""), ("n_classes", 0),
                         ("kd_defect", ""), ("teacher_recipe", ""), ("student", "amplitude")):  # fmt: skip
        if col not in t:
            t[col] = default
    for col in ("temperature", "lam", "teacher_seed", "teacher_test_acc"):
        if col not in t:
            t[col] = math.nan
    if "ansatz" in t and "qubits" in t:
        # The paper's circuit differs by qubit count (h-ry on 3, ry otherwise): one setting, not
        # two, so that its 3- and 4-qubit students share a table as in the paper.
        paper = ((t["qubits"] == 3) & (t["ansatz"] == "h-ry")) | ((t["qubits"] != 3) & (t["ansatz"] == "ry"))
        t["ansatz"] = t["ansatz"].where(~paper, "paper")
    settings = [c for c in SETTINGS if c in t]
    for col in [*settings, "kd_form", "kd_defect", "teacher_recipe", "status", "teacher_key"]:
        if not pd.api.types.is_numeric_dtype(t[col]) and not pd.api.types.is_bool_dtype(t[col]):
            t[col] = t[col].fillna("").astype(str)
    # Baselines carry no T or λ; a distillation row always does, so NaN here only marks a baseline.
    base = t["teacher"] == "none"
    t.loc[base, ["temperature", "lam"]] = math.nan
    t.loc[base, ["kd_form", "kd_defect", "teacher_recipe"]] = ""
    t.loc[t["kd_defect"] == "none", "kd_defect"] = ""

    reason = t["status"].where(t["status"] != "ok", "")
    reason = reason.mask((reason == "") & t["test_acc"].isna(), "ok without test_acc")
    if "config_hash" in t:
        order = t.sort_values("started_at", kind="stable") if "started_at" in t else t
        older = order.index[order.duplicated("config_hash", keep="last") & (reason[order.index] == "")]
        reason[older] = "rerun of the same config (older row)"
    t["reason"] = reason
    # Settings groups from all rows, so that an excluded row is reported under its own table.
    t["setting"] = t.groupby(settings, dropna=False, sort=True).ngroup() if settings else 0
    ok = t[t["reason"] == ""]
    varying = [c for c in settings if ok[c].nunique(dropna=False) > 1]
    return t, settings, varying


# ---------------------------------------------------------------------------- statistics


def _paired(g: pd.DataFrame) -> pd.Series:
    d = (g["acc"] - g["base_acc"]).to_numpy() * 100
    out = {"diff": d.mean() if len(d) else math.nan, "ci_low": math.nan, "ci_high": math.nan}
    out |= {"p_value": math.nan, "n_pairs": len(d)}
    if len(d) >= 2:
        with warnings.catch_warnings():  # identical differences: t = ±inf or NaN, scipy warns
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_rel(g["acc"].to_numpy() * 100, g["base_acc"].to_numpy() * 100)
            ci = res.confidence_interval(0.95)
        out |= {"ci_low": float(ci.low), "ci_high": float(ci.high), "p_value": float(res.pvalue)}
    return pd.Series(out)


def _student_rows(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Student and Distillation rows, and the per-seed accuracies behind them."""
    keys = [*CELL, *VARIANT]
    agg = {"acc": ("test_acc", "mean"), "runs": ("test_acc", "size"), "n_classes": ("n_classes", "first")}
    agg |= {"teacher_keys": ("teacher_key", lambda s: frozenset(s[s != ""]))}
    if "val_acc" in ok:
        agg["val"] = ("val_acc", "mean")
    if "n_params" in ok:  # a student's size (its name in a table, for a classical one)
        agg["n_params"] = ("n_params", "max")
    per_seed = ok.groupby([*keys, "seed"], dropna=False).agg(**agg).reset_index()
    # A run that never learned: test accuracy under twice chance (2 / C).
    per_seed["collapsed"] = per_seed["acc"] < 2 / per_seed["n_classes"].clip(lower=1)
    rows = per_seed.groupby(keys, dropna=False).agg(
        mean=("acc", "mean"), std=("acc", "std"), n=("acc", "size"), n_classes=("n_classes", "first"),
        median=("acc", "median"), min=("acc", "min"), max=("acc", "max"), n_collapsed=("collapsed", "sum"),
        n_teachers=("teacher_keys", lambda s: len(frozenset().union(*s))), dup_seeds=("runs", lambda r: (r > 1).sum()),
        **({"val_mean": ("val", "mean"), "val_std": ("val", "std")} if "val_acc" in ok else {}),
        **({"n_params": ("n_params", "max")} if "n_params" in ok else {}),
    ).reset_index()  # fmt: skip
    for col in ("mean", "std", "median", "min", "max", "val_mean", "val_std"):
        if col in rows:
            rows[col] *= 100

    is_base = per_seed["teacher"] == "none"
    base_seed = per_seed.loc[is_base, [*CELL, "seed", "acc"]].rename(columns={"acc": "base_acc"})
    pairs = per_seed[~is_base].merge(base_seed, on=[*CELL, "seed"], how="inner")
    if len(pairs):
        paired = pairs.groupby(keys, dropna=False)[["acc", "base_acc"]].apply(_paired).reset_index()
    else:
        paired = pd.DataFrame(columns=[*keys, "diff", "ci_low", "ci_high", "p_value", "n_pairs"])
    base_rows = rows.loc[rows["teacher"] == "none", [*CELL, "mean", "n"]]
    rows = rows.merge(base_rows.rename(columns={"mean": "baseline_mean", "n": "baseline_n"}), on=CELL, how="left")
    rows = rows.merge(paired, on=keys, how="left")
    distill = rows["teacher"] != "none"
    rows["category"] = np.where(distill, "Distillation", "Student")
    rows["plus_for_student"] = (rows["mean"] - rows["baseline_mean"]).where(distill)
    rows.loc[~distill, ["baseline_mean", "baseline_n", "diff", "ci_low", "ci_high", "p_value", "n_pairs"]] = math.nan
    rows.loc[distill, "n_pairs"] = rows.loc[distill, "n_pairs"].fillna(0)
    return rows, per_seed


def _teacher_rows(ok: pd.DataFrame, teachers: pd.DataFrame | None) -> tuple[pd.DataFrame, list[tuple]]:
    """One row per dataset x classes x architecture over the teacher models the students used."""
    used = ok[ok["teacher"] != "none"].copy()
    # A row without a key still names its teacher by what decides it.
    fallback = used["dataset"] + "/" + used["classes"] + "/" + used["teacher"] + "/" + used["teacher_seed"].astype(str)
    used["tkey"] = used["teacher_key"].where(used["teacher_key"] != "", fallback)
    cols = [*TABLE, "classes", "n_classes", "teacher", "tkey", "teacher_seed", "teacher_test_acc"]
    models = used.drop_duplicates([*TABLE, "tkey"])[cols].rename(columns={"teacher_test_acc": "acc"})
    if teachers is not None and {"teacher_key", "test_acc"} <= set(teachers):
        known = teachers.drop_duplicates("teacher_key", keep="last").set_index("teacher_key")["test_acc"]
        models["acc"] = models["tkey"].map(known).fillna(models["acc"])
        if "n_params" in teachers:
            sizes = teachers.drop_duplicates("teacher_key", keep="last").set_index("teacher_key")["n_params"]
            models["n_params"] = models["tkey"].map(sizes)
    models["acc"] = models["acc"].astype(float)
    rows = models.groupby([*TABLE, "classes", "teacher"], dropna=False).agg(
        mean=("acc", "mean"), std=("acc", "std"), n=("acc", "size"), n_teachers=("tkey", "nunique"),
        n_seeds=("teacher_seed", "nunique"), n_classes=("n_classes", "first"),
        **({"n_params": ("n_params", "max")} if "n_params" in models else {}),
    ).reset_index()  # fmt: skip
    rows[["mean", "std"]] *= 100
    rows["category"] = "Teacher"
    mixed = rows[rows["n_teachers"] > rows["n_seeds"]]
    notes = [
        ((r.dataset, r.setting), f"{_teacher_kind(r.teacher)} {_dataset_label(r.dataset, r.classes)} pools "
         f"{r.n_teachers} teacher models from only {r.n_seeds} seed(s): they were trained with different settings.")
        for r in mixed.itertuples()
    ]  # fmt: skip
    return rows.drop(columns="n_seeds"), notes


# ---------------------------------------------------------------------------- labels


def _dataset_name(dataset: str) -> str:
    return DATASETS[dataset].label if dataset in DATASETS else str(dataset)


def _dataset_label(dataset: str, classes: str) -> str:
    return f"{_dataset_name(dataset)} {classes}"


def _teacher_name(teacher: str) -> str:
    return TEACHER_KINDS[teacher].label if teacher in TEACHER_KINDS else str(teacher).title()


def _teacher_kind(teacher: str) -> str:
    """A teacher row's name: ``Classical, LeNet``; ``Quantum, QNN 8 qubit``."""
    quantum = teacher in TEACHER_KINDS and TEACHER_KINDS[teacher].quantum
    return f"{'Quantum' if quantum else 'Classical'}, {_teacher_name(teacher)}"


def _teacher_rank() -> list[str]:
    return [*FIRST_TEACHERS, *(t for t in TEACHER_KINDS if t not in FIRST_TEACHERS)]


def _dataset_rank() -> list[str]:
    return list(DATASETS)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float | np.floating) else str(x)


def _kd_suffix(r, show: dict[str, bool]) -> str:
    parts = [f"T={_num(r.temperature)}"] if show["temperature"] else []
    parts += [f"λ={_num(r.lam)}"] if show["lam"] else []
    parts += [r.kd_form] if show["kd_form"] and r.kd_form else []
    parts += [f"{r.teacher_recipe} recipe"] if show.get("teacher_recipe") and r.teacher_recipe else []
    # A released notebook's defect is named wherever its row appears.
    parts += [f"notebook defect: {r.kd_defect}"] if getattr(r, "kd_defect", "") else []
    return f" ({', '.join(parts)})" if parts else ""


def _student_name(r) -> str:
    q = int(r.qubits)
    n_params = getattr(r, "n_params", math.nan)
    p = f"{int(n_params):,}" if pd.notna(n_params) and n_params >= 0 else "?"
    name = STUDENT_NAMES.get(getattr(r, "student", "amplitude") or "amplitude", "{q} qubit")
    return name.format(q=q, d=2**q, p=p)


def _architecture(r, show: dict[str, bool]) -> str:
    student = _student_name(r) if r.category != "Teacher" else ""
    if r.category == "Student":
        return student
    if r.category == "Teacher":
        return _teacher_kind(r.teacher)
    return f"Teacher: {_teacher_name(r.teacher)}{_kd_suffix(r, show)}, Student: {student}"


def _setting_text(values: pd.Series, cols: list[str]) -> str:
    return ", ".join(f"{c}={_num(values[c]) if values[c] != '' else '-'}" for c in cols)


def _order(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's order: Student, Teacher, Distillation; AlexNet, LeNet, Ensemble; then qubits, classes."""
    known = _teacher_rank()
    rank = {
        "_cat": rows["category"].map(CATEGORIES.index),
        "_teacher": rows["teacher"].map(lambda t: known.index(t) if t in known else len(known)),
        "_qubits": rows["qubits"].fillna(0),
    }
    ordered = rows.assign(**rank).sort_values(
        [*TABLE, "_cat", "_teacher", "teacher", "temperature", "lam", "kd_form", "_qubits", "n_classes", "classes"],
        kind="stable",
        na_position="first",
    )
    return ordered.drop(columns=list(rank)).reset_index(drop=True)


# ---------------------------------------------------------------------------- building


def _build(results_dir: str | Path) -> _Report:
    trials, epochs, teachers = _load(results_dir)
    name = Path(results_dir).resolve().name
    t, settings, varying = _prepare(trials)
    ok = t[t["reason"] == ""]
    excluded = t[t["reason"] != ""]
    if ok.empty:
        counts = ", ".join(f"{n} {r}" for r, n in excluded["reason"].value_counts().items()) or "none"
        msg = f"No ok trials in {Path(results_dir) / TRIALS}: {len(t)} trial row(s), excluded: {counts}."
        empty = pd.DataFrame(columns=["table", "category", *CSV_NUMBERS])
        return _Report(name, empty, [], [msg], pd.DataFrame(), None, {})

    student, per_seed = _student_rows(ok)
    teacher, teacher_notes = _teacher_rows(ok, teachers)
    rows = _order(pd.concat([student, teacher], ignore_index=True))
    setting_values = t.groupby("setting")[settings].first() if settings else pd.DataFrame(index=[0])
    rows = rows.join(setting_values, on="setting")

    # Show T, λ or the loss form in the Architecture text only where a table holds several.
    distill = rows[rows["category"] == "Distillation"]
    spread = distill.groupby(TABLE)[["temperature", "lam", "kd_form", "teacher_recipe"]].nunique(dropna=False)
    shows = {k: {c: bool(spread.loc[k, c] > 1) for c in spread} if k in spread.index else dict.fromkeys(spread, False)
             for k in rows.set_index(TABLE).index.unique()}  # fmt: skip
    rows["architecture"] = [_architecture(r, shows[(r.dataset, r.setting)]) for r in rows.itertuples()]
    rows["dataset_label"] = [_dataset_label(d, c) for d, c in zip(rows["dataset"], rows["classes"], strict=True)]

    known = _dataset_rank()
    table_keys = sorted(
        rows.set_index(TABLE).index.unique(), key=lambda k: (known.index(k[0]) if k[0] in known else 99, k)
    )
    tables = []
    for ds, setting in table_keys:
        sub = rows[(rows["dataset"] == ds) & (rows["setting"] == setting)]
        title = f"Table: {_dataset_name(ds)}"
        if varying:
            title += f" ({_setting_text(setting_values.loc[setting], varying)})"
        if _on_test(setting_values, setting):
            title += " [best epoch chosen ON THE TEST SPLIT: replicates the paper, biased upwards]"
        tables.append(_Table(title, sub, _table_notes(sub, excluded, ds, setting, setting_values, settings)))
        tables[-1].notes += [n for k, n in teacher_notes if k == (ds, setting)]
        rows.loc[sub.index, "table"] = title

    listed = set(table_keys)
    orphans = excluded[[k not in listed for k in zip(excluded["dataset"], excluded["setting"], strict=True)]]
    notes = []
    if len(orphans):
        counts = ", ".join(f"{n} {r}" for r, n in orphans["reason"].value_counts().items())
        notes.append(f"Not in any table ({len(orphans)} trial(s) with no ok trial beside them): {counts}.")
    if epochs is None:
        notes.append(f"No {EPOCHS}: the loss-curve figure is not drawn.")
    panel_titles = {}
    # Panels in the tables' order: dataset, settings group, qubits, classes.
    cells = rows[rows["category"] != "Teacher"].sort_values(["qubits", "n_classes", "classes"], kind="stable")
    cells = cells.assign(_d=cells["dataset"].map(lambda d: known.index(d) if d in known else 99))
    for key in (
        cells.sort_values(["_d", "dataset", "setting"], kind="stable")
        .drop_duplicates(CELL)[CELL]
        .itertuples(index=False, name=None)
    ):
        ds, setting, classes, qubits = key
        # Wrapped to the panel's width: with many settings groups one line runs into the next panel.
        wrapped = textwrap.fill(_setting_text(setting_values.loc[setting], varying), PANEL_TITLE_WIDTH)
        suffix = f"\n{wrapped}" if varying else ""
        panel_titles[key] = f"{_dataset_label(ds, classes)}, {int(qubits)} qubit{suffix}"
    per_seed = per_seed.assign(label=_figure_labels(per_seed))
    if epochs is not None:
        epochs = epochs.drop_duplicates(["trial_id", "epoch"], keep="last").merge(
            ok[["trial_id", *CELL, *VARIANT]], on="trial_id", how="inner"
        )
        epochs = epochs.assign(label=_figure_labels(epochs))
    return _Report(name, _csv_frame(rows, settings), tables, notes, per_seed, epochs, panel_titles)


def _figure_labels(df: pd.DataFrame) -> list[str]:
    show = {c: df.loc[df["teacher"] != "none", c].nunique(dropna=False) > 1
            for c in ("temperature", "lam", "kd_form", "teacher_recipe") if c in df}  # fmt: skip
    return [
        "baseline" if r.teacher == "none" else _teacher_name(r.teacher) + _kd_suffix(r, show) for r in df.itertuples()
    ]


def _on_test(setting_values: pd.DataFrame, setting) -> bool:
    return "report_epoch" in setting_values and setting_values.loc[setting, "report_epoch"] == "best_test"


def _table_notes(sub, excluded, ds, setting, setting_values, settings) -> list[str]:
    notes = []
    if _on_test(setting_values, setting):
        notes.append(
            "SELECTION ON THE TEST SPLIT: each run reports the best of its epochs' test accuracies "
            "(report_epoch=best_test), as the paper's notebooks did. Use it only to replicate them; "
            "it is biased upwards and never paired with a last-epoch row."
        )
    if settings:
        notes.append(f"Student settings: {_setting_text(setting_values.loc[setting], settings)}.")
    ex = excluded[(excluded["dataset"] == ds) & (excluded["setting"] == setting)]
    if len(ex):
        counts = ", ".join(f"{n} {r}" for r, n in ex["reason"].value_counts().items())
        notes.append(f"Excluded {len(ex)} trial(s): {counts}.")
    else:
        notes.append("Excluded: none.")
    distill = sub[sub["category"] == "Distillation"]
    for r in distill[distill["baseline_mean"].isna()].itertuples():
        notes.append(f"{r.architecture} {r.dataset_label}: no baseline with the same settings, nothing to compare.")
    for r in distill[distill["baseline_mean"].notna() & (distill["n_pairs"] < distill["n"])].itertuples():
        notes.append(
            f"{r.architecture} {r.dataset_label}: {int(r.n - r.n_pairs)} of {int(r.n)} seed(s) have no baseline "
            "run with the same seed and are left out of the paired comparison."
        )
    for r in sub[sub.get("dup_seeds", pd.Series(0, index=sub.index)).fillna(0) > 0].itertuples():
        notes.append(
            f"{r.architecture} {r.dataset_label}: {int(r.dup_seeds)} seed(s) ran more than once with different "
            "config hashes (a setting not in the table differs?); their runs are averaged per seed."
        )
    return notes


def _csv_frame(rows: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    first = ["table", "category", "architecture", "dataset_label", "dataset", "classes", "n_classes", "qubits"]
    cols = [*first, *VARIANT, *settings, *CSV_NUMBERS, *[c for c in ("val_mean", "val_std", "n_params") if c in rows]]
    counts = ["n_classes", "qubits", "n", "baseline_n", "n_pairs", "n_teachers"]  # NaN where a row has none
    counts += ["n_params"] if "n_params" in rows else []
    return rows[cols].astype(dict.fromkeys(counts, "Int64")).reset_index(drop=True)


# ---------------------------------------------------------------------------- rendering


def _display(rows: pd.DataFrame) -> pd.DataFrame:
    """The table as text, in the paper's layout; extra columns only where some row has seeds."""
    multi = bool((rows["n"] > 1).any())
    cat = rows["category"].where(rows["category"] != rows["category"].shift(), "")

    def acc(r) -> str:
        return f"{r.mean:.2f} ± {r.std:.2f}" if r.n > 1 and not math.isnan(r.std) else f"{r.mean:.2f}"

    def plus(r) -> str:
        if r.category != "Distillation":
            return "-"
        return "n/a" if math.isnan(r.plus_for_student) else f"{r.plus_for_student:.2f}%"

    def paired(r) -> str:
        if r.category != "Distillation":
            return "-"
        if not r.n_pairs:
            return "n/a"
        if r.n_pairs < 2:
            return f"{r.diff:+.2f}"
        return f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"

    def p(r) -> str:
        if r.category != "Distillation":
            return "-"
        if math.isnan(r.p_value):
            return "n/a"
        return "<0.001" if r.p_value < 0.001 else f"{r.p_value:.3f}"

    its = list(rows.itertuples())
    out = {"Category": cat.tolist(), "Architecture": rows["architecture"].tolist(), "Dataset": rows["dataset_label"]}
    out["Accuracy (%)"] = [acc(r) for r in its]
    if multi:
        out["n"] = rows["n"].astype(int).astype(str).tolist()
        out["Median [range]"] = [
            f"{r.median:.2f} [{r.min:.2f}, {r.max:.2f}]" if r.category != "Teacher" else "-" for r in its
        ]
        out["Never learned"] = [str(int(r.n_collapsed)) if r.category != "Teacher" else "-" for r in its]
    out["+ for Student"] = [plus(r) for r in its]
    if multi:
        out["Paired Δ [95% CI]"] = [paired(r) for r in its]
        out["p"] = [p(r) for r in its]
        out["pairs"] = ["-" if r.category != "Distillation" else str(int(r.n_pairs)) for r in its]
    return pd.DataFrame({k: list(v) for k, v in out.items()})


LEGEND = [
    "Accuracy: student test accuracy at the reported epoch: the last (no selection on the test split) unless the "
    "table's title says the best epoch was chosen on the test split; teachers: accuracy of the weights distilled "
    "from on the whole class-filtered test split. Mean over seeds ± sample std (n = seeds; teachers: n = models).",
    "Median [range]: over seeds. Never learned: runs whose test accuracy is under twice chance (2 / classes); "
    "every run is counted, none dropped.",
    "+ for Student: distillation mean minus the baseline mean with the same dataset, classes, qubits and settings.",
    "Paired Δ: mean per-seed difference against the baseline over the seeds run both ways (pairs), "
    "95% CI from the t distribution; p: paired t-test (scipy.stats.ttest_rel). All in percent points.",
]


def _markdown(report: _Report) -> str:
    parts = [f"# Results: {report.name}", ""]
    if report.tables:
        parts += [*(f"- {line}" for line in LEGEND), ""]
    parts += [*report.notes, ""] if report.notes else []
    for table in report.tables:
        parts += [f"## {table.title}", "", _display(table.rows).to_markdown(index=False, disable_numparse=True), ""]
        parts += [*(f"- {n}" for n in table.notes), ""]
    return "\n".join(parts).rstrip() + "\n"


#: One pass over the characters, so that a replacement is never escaped again.
TEX = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "$": r"\$", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "λ": r"$\lambda$", "Δ": r"$\Delta$",
    "<": r"$<$", ">": r"$>$",
})  # fmt: skip


def _tex_escape(text: str) -> str:
    return str(text).translate(TEX)


def _latex(report: _Report) -> str:
    out = [f"% Tables for results/{_tex_escape(report.name)}; needs \\usepackage{{booktabs}}.", ""]
    out += [f"% {n}" for n in report.notes]
    for table in report.tables:
        d = _display(table.rows)
        numeric = ("Accuracy (%)", "n", "Median [range]", "Never learned", "+ for Student", "p", "pairs")
        align = "".join("r" if c in numeric else "l" for c in d)
        body = []
        for i, row in enumerate(d.itertuples(index=False)):
            if i and row[0]:
                body.append(r"\midrule")
            body.append(" & ".join(_tex_escape(v) for v in row) + r" \\")
        notes = " ".join(_tex_escape(n) for n in table.notes)
        out += [
            r"\begin{table}[ht]",
            r"\centering",
            rf"\caption{{{_tex_escape(table.title.removeprefix('Table: '))}}}",
            r"\small",
            rf"\begin{{tabular}}{{{align}}}",
            r"\toprule",
            " & ".join(_tex_escape(c) for c in d.columns) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            rf"\par\footnotesize {notes}",
            r"\end{table}",
            "",
        ]
    return "\n".join(out)


# ---------------------------------------------------------------------------- figures


def _panels(n: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _colors(labels: list[str]) -> dict[str, str]:
    others = iter(f"C{i}" for i in range(10))
    return {lab: "0.35" if lab == "baseline" else next(others, "C9") for lab in labels}


def _label_order(df: pd.DataFrame) -> list[str]:
    known = _teacher_rank()
    first = df.drop_duplicates("label").assign(
        _t=lambda x: x["teacher"].map(lambda t: known.index(t) if t in known else 9)
    )
    return first.sort_values(["_t", "teacher", "temperature", "lam", "kd_form"], na_position="first")["label"].tolist()


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _loss_figure(report: _Report, path: Path) -> None:
    ep = report.epochs
    keys = list(report.panel_titles)
    fig, axes = _panels(len(keys))
    colors = _colors(_label_order(ep))
    stats_ = ep.groupby([*CELL, "label", "epoch"], dropna=False)[["train_loss", "test_loss"]].agg(["mean", "std"])
    for ax, key in zip(axes, keys, strict=False):
        cell = stats_.xs(key, level=CELL) if key in stats_.index.droplevel(["label", "epoch"]) else None
        if cell is None:
            ax.text(0.5, 0.5, "no per-epoch rows", ha="center", va="center", transform=ax.transAxes)
        else:
            for label in [lab for lab in colors if lab in cell.index.get_level_values("label")]:
                line = cell.xs(label, level="label")
                for col, style in (("train_loss", "-"), ("test_loss", "--")):
                    m, s = line[(col, "mean")], line[(col, "std")].fillna(0)
                    ax.plot(line.index, m, style, color=colors[label], label=f"{label} {col.split('_')[0]}")
                    ax.fill_between(line.index, m - s, m + s, color=colors[label], alpha=0.15, linewidth=0)
            if (cell.xs("mean", axis=1, level=1) > 0).all().all():
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=report.panel_titles[key], xlabel="epoch", ylabel="loss")
    fig.suptitle("Train (solid) and test (dashed) loss\n(mean ± std over seeds)", fontsize="medium")
    _save(fig, path)


def _accuracy_figure(report: _Report, path: Path) -> None:
    ps = report.per_seed
    keys = list(report.panel_titles)
    fig, axes = _panels(len(keys))
    colors = _colors(_label_order(ps))
    for ax, key in zip(axes, keys, strict=False):
        cell = ps[(ps[CELL] == pd.Series(key, index=CELL)).all(axis=1)]
        labels = [lab for lab in colors if lab in set(cell["label"])]
        acc = cell.groupby("label")["acc"].agg(["mean", "std"]).reindex(labels) * 100
        x = np.arange(len(labels))
        ax.bar(x, acc["mean"], yerr=acc["std"].fillna(0), capsize=4, color=[colors[lab] for lab in labels], alpha=0.6)
        for i, lab in enumerate(labels):
            pts = cell.loc[cell["label"] == lab, "acc"].to_numpy() * 100
            jitter = np.linspace(-0.15, 0.15, len(pts)) if len(pts) > 1 else np.zeros(1)
            ax.scatter(x[i] + jitter, pts, s=14, color="black", zorder=3)
        low = max(0.0, float(np.nanmin(cell["acc"])) * 100 - 5)
        ax.set_ylim(low, 100)
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.set(title=report.panel_titles[key], ylabel="test accuracy (%)")
    fig.suptitle("Student test accuracy per teacher\n(mean ± std; seeds as points)", fontsize="medium")
    _save(fig, path)


# ---------------------------------------------------------------------------- public API


def table_rows(results_dir: str | Path) -> pd.DataFrame:
    """The rows of tables.csv as a DataFrame (percent points), for answers in pandas without files."""
    return _build(results_dir).rows


def markdown_tables(results_dir: str | Path) -> str:
    """The tables as Markdown, for printing at the end of a sweep."""
    return _markdown(_build(results_dir))


def write_tables(results_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the tables and figures (into ``results_dir`` unless ``out_dir``); returns what was written."""
    return _write(_build(results_dir), Path(out_dir if out_dir is not None else results_dir))


def _write(report: _Report, out: Path) -> dict[str, Path]:
    written = {"markdown": out / "tables.md", "latex": out / "tables.tex", "csv": out / "tables.csv"}
    md, tex = _markdown(report), _latex(report)
    atomic_write(written["markdown"], lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    atomic_write(written["latex"], lambda tmp: Path(tmp).write_text(tex, encoding="utf-8"))
    atomic_write(written["csv"], lambda tmp: report.rows.to_csv(tmp, index=False))
    if not report.tables:
        for rel in FIGURES.values():  # an earlier run's figures would no longer match the tables
            (out / rel).unlink(missing_ok=True)
        return written
    if report.epochs is not None:
        written["loss_curves"] = out / FIGURES["loss_curves"]
        _loss_figure(report, written["loss_curves"])
    else:
        (out / FIGURES["loss_curves"]).unlink(missing_ok=True)
    written["accuracy_bars"] = out / FIGURES["accuracy_bars"]
    _accuracy_figure(report, written["accuracy_bars"])
    return written


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "tables",
        help="roll a results folder up into the paper's tables and figures",
        description="Write tables.md, tables.tex, tables.csv and figures/*.png from RESULTS_DIR/trials.parquet "
        "(ok trials only; mean ± std over seeds and paired comparisons with the baseline) and print the Markdown.",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of RESULTS_DIR")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the tables and the files written; a folder without ok trials is reported, not an error."""
    report = _build(args.results_dir)
    written = _write(report, Path(args.out if args.out is not None else args.results_dir))
    print(_markdown(report))
    for path in written.values():
        print(f"wrote {path}")
    return 0
