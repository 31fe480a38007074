"""The statistics: per-seed accuracies, means, and the paired comparison with the baseline."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from sweep.tables.common import CELL, TABLE, VARIANT
from sweep.tables.labels import dataset_label, teacher_kind


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


def student_rows(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def teacher_rows(ok: pd.DataFrame, teachers: pd.DataFrame | None) -> tuple[pd.DataFrame, list[tuple]]:
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
        ((r.dataset, r.setting), f"{teacher_kind(r.teacher)} {dataset_label(r.dataset, r.classes)} pools "
         f"{r.n_teachers} teacher models from only {r.n_seeds} seed(s): they were trained with different settings.")
        for r in mixed.itertuples()
    ]  # fmt: skip
    return rows.drop(columns="n_seeds"), notes
