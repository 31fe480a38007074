"""A results folder to a report: its tables, notes, per-seed rows and figure panels."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from sweep.results import EPOCHS, TRIALS
from sweep.tables.common import CELL, CSV_NUMBERS, PANEL_TITLE_WIDTH, TABLE, VARIANT, Report, ReportTable
from sweep.tables.confounds import confounded
from sweep.tables.confounds import notes as confound_notes
from sweep.tables.labels import (
    architecture,
    dataset_label,
    dataset_name,
    dataset_rank,
    kd_suffix,
    paper_order,
    setting_text,
    teacher_name,
)
from sweep.tables.load import load_results, prepare_trials
from sweep.tables.stats import student_rows, teacher_rows
from workers.io import Location, location


def build_report(results_dir: str | Path | Location) -> Report:
    trials, epochs, teachers = load_results(results_dir)
    name = location(results_dir).name
    t, settings, varying = prepare_trials(trials)
    ok = t[t["reason"] == ""]
    excluded = t[t["reason"] != ""]
    if ok.empty:
        counts = ", ".join(f"{n} {r}" for r, n in excluded["reason"].value_counts().items()) or "none"
        msg = f"No ok trials in {location(results_dir) / TRIALS}: {len(t)} trial row(s), excluded: {counts}."
        empty = pd.DataFrame(columns=["table", "category", *CSV_NUMBERS])
        return Report(name, empty, [], [msg], pd.DataFrame(), None, {})

    student, per_seed = student_rows(ok)
    teacher, teacher_notes = teacher_rows(ok, teachers)
    rows = paper_order(pd.concat([student, teacher], ignore_index=True))
    setting_values = t.groupby("setting")[settings].first() if settings else pd.DataFrame(index=[0])
    rows = rows.join(setting_values, on="setting")

    # Show T, λ or the loss form in the Architecture text only where a table holds several.
    distill = rows[rows["category"] == "Distillation"]
    spread = distill.groupby(TABLE)[["temperature", "lam", "kd_form", "teacher_recipe"]].nunique(dropna=False)
    shows = {k: {c: bool(spread.loc[k, c] > 1) for c in spread} if k in spread.index else dict.fromkeys(spread, False)
             for k in rows.set_index(TABLE).index.unique()}  # fmt: skip
    rows["architecture"] = [architecture(r, shows[(r.dataset, r.setting)]) for r in rows.itertuples()]
    rows["dataset_label"] = [dataset_label(d, c) for d, c in zip(rows["dataset"], rows["classes"], strict=True)]

    known = dataset_rank()
    table_keys = sorted(
        rows.set_index(TABLE).index.unique(), key=lambda k: (known.index(k[0]) if k[0] in known else 99, k)
    )
    found = confounded(rows, setting_values, settings, lambda s: _on_test(setting_values, s))
    joined = found.groupby("row")["fields"].agg("; ".join).to_dict()
    rows["confounded"] = [joined.get(i, "") for i in rows.index]
    tables = []
    for ds, setting in table_keys:
        sub = rows[(rows["dataset"] == ds) & (rows["setting"] == setting)]
        title = f"Table: {dataset_name(ds)}"
        if varying:
            title += f" ({setting_text(setting_values.loc[setting], varying)})"
        if _on_test(setting_values, setting):
            title += " [best epoch chosen ON THE TEST SPLIT: replicates the paper, biased upwards]"
        tables.append(ReportTable(title, sub, _table_notes(sub, excluded, ds, setting, setting_values, settings)))
        tables[-1].notes += [n for k, n in teacher_notes if k == (ds, setting)]
        tables[-1].notes += confound_notes(found, rows, sub.index)
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
        wrapped = textwrap.fill(setting_text(setting_values.loc[setting], varying), PANEL_TITLE_WIDTH)
        suffix = f"\n{wrapped}" if varying else ""
        panel_titles[key] = f"{dataset_label(ds, classes)}, {int(qubits)} qubit{suffix}"
    per_seed = per_seed.assign(label=_figure_labels(per_seed))
    if epochs is not None:
        epochs = epochs.drop_duplicates(["trial_id", "epoch"], keep="last").merge(
            ok[["trial_id", *CELL, *VARIANT]], on="trial_id", how="inner"
        )
        epochs = epochs.assign(label=_figure_labels(epochs))
    return Report(name, _csv_frame(rows, settings), tables, notes, per_seed, epochs, panel_titles)


def _figure_labels(df: pd.DataFrame) -> list[str]:
    show = {c: df.loc[df["teacher"] != "none", c].nunique(dropna=False) > 1
            for c in ("temperature", "lam", "kd_form", "teacher_recipe") if c in df}  # fmt: skip
    return [
        "baseline" if r.teacher == "none" else teacher_name(r.teacher) + kd_suffix(r, show) for r in df.itertuples()
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
        notes.append(f"Student settings: {setting_text(setting_values.loc[setting], settings)}.")
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
    extra = [c for c in ("val_mean", "val_std", "n_params", "confounded") if c in rows]
    cols = [*first, *VARIANT, *settings, *CSV_NUMBERS, *extra]
    counts = ["n_classes", "qubits", "n", "baseline_n", "n_pairs", "n_teachers"]  # NaN where a row has none
    counts += ["n_params"] if "n_params" in rows else []
    return rows[cols].astype(dict.fromkeys(counts, "Int64")).reset_index(drop=True)
