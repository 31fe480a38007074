"""Reading a results folder (a local path or a URI, through :mod:`sweep.results`) and
marking each row's reason to be left out."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweep.results import EPOCHS, TEACHERS, TRIALS, read_table
from sweep.tables.common import SETTINGS
from workers.io import Location, location


def load_results(results_dir: str | Path | Location) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The folder's trials, epochs and teachers (a local path or a URI; a table in parts,
    as a running or killed sweep leaves it, reads as one)."""
    d = location(results_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"results folder not found: {d}")
    # exists, not is_file: during a sweep (or after a killed one) trials and epochs are folders of parts
    if not (d / TRIALS).exists():
        raise FileNotFoundError(f"no {TRIALS} in {d} (run a sweep into it first)")
    return read_table(d / TRIALS), read_table(d / EPOCHS), read_table(d / TEACHERS)


def prepare_trials(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
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
