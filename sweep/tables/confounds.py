"""Comparisons that differ in more than the teacher, shown as such (issue 23.3).

A table pairs a distilled row only with the baseline of its own settings group (same head,
shots, protocol: :data:`sweep.tables.common.SETTINGS`), so its Δ is the teacher's. The
paper's notebooks sometimes compared across such a difference (the FashionMNIST 3-qubit
baselines ran the softmax head, their distilled runs the sigmoid pair), or carried a
defect in the distillation term; the paper reports each such "+ for Student" as the
teacher's. In a table that replicates the paper (``report_epoch: best_test``), each
distilled row gets, beside its same-setting comparison, the comparison with every baseline
of the same dataset, classes and qubits whose settings differ in at most
:data:`MAX_FIELDS` fields, flagged ``confounded: <fields that differ>``; a distilled row
with a ``kd_defect`` is flagged for that too.
"""

from __future__ import annotations

import pandas as pd

from sweep.tables.labels import num_text

#: A baseline that differs in more fields than this is another experiment, not the paper's
#: comparison made across one confound.
MAX_FIELDS = 2


def _differ(setting_values: pd.DataFrame, a, b, settings: list[str]) -> list[str]:
    va, vb = setting_values.loc[a], setting_values.loc[b]
    return [c for c in settings if not (pd.isna(va[c]) and pd.isna(vb[c])) and va[c] != vb[c]]


def confounded(rows: pd.DataFrame, setting_values: pd.DataFrame, settings: list[str], replica) -> pd.DataFrame:
    """One row per (distilled row, baseline it was or may be compared with across a confound):
    the distilled row's index, its fields that differ, the baseline's mean and n, and the
    difference of means (unpaired: the runs differ in more than their seed's draw).
    ``replica(setting)`` says whether a settings group replicates the paper."""
    base = rows[(rows["category"] == "Student") & (rows["teacher"] == "none")]
    out = []
    for i, r in rows[rows["category"] == "Distillation"].iterrows():
        if not replica(r["setting"]):
            continue
        defect = [f"kd_defect={r['kd_defect']}"] if r.get("kd_defect", "") else []
        same = base[(base["dataset"] == r["dataset"]) & (base["classes"] == r["classes"])
                    & (base["qubits"] == r["qubits"])]  # fmt: skip
        for _, b in same.iterrows():
            own = b["setting"] == r["setting"]
            fields = [] if own else _differ(setting_values, r["setting"], b["setting"], settings)
            if len(fields) > MAX_FIELDS or not (fields or defect):
                continue
            shown = [f"{c}={num_text(setting_values.loc[r['setting'], c])} "
                     f"vs {num_text(setting_values.loc[b['setting'], c])}" for c in fields]  # fmt: skip
            out.append({"row": i, "fields": ", ".join(shown + defect), "baseline_mean": b["mean"],
                        "baseline_n": b["n"], "diff": r["mean"] - b["mean"], "same_setting": not fields})  # fmt: skip
    return pd.DataFrame(out, columns=["row", "fields", "baseline_mean", "baseline_n", "diff", "same_setting"])


def notes(found: pd.DataFrame, rows: pd.DataFrame, index) -> list[str]:
    """The table's lines for its distilled rows in ``index``: the flagged comparison, and the
    same-setting one beside it (or that there is none, and which control would make it)."""
    lines = []
    for i, group in found[found["row"].isin(index)].groupby("row", sort=False):
        r = rows.loc[i]
        what = f"{r['architecture']} {r['dataset_label']}"
        own = (f"same-setting comparison: {r['plus_for_student']:+.2f} against its baseline ({r['baseline_mean']:.2f}, "
               f"n={int(r['baseline_n'])})" if pd.notna(r["baseline_mean"])
               else "no same-setting baseline: add one to the spec (the control) to compare")  # fmt: skip
        for g in group.itertuples():
            if g.same_setting:  # the baseline is right; the distillation term is not the teacher's alone
                lines.append(
                    f"{what}: its comparison with its baseline, {g.diff:+.2f}, is CONFOUNDED: {g.fields} "
                    "(the notebook's term, not distillation alone); the spec's control runs it without."
                )
                continue
            at = f"the baseline at {g.baseline_mean:.2f} (n={int(g.baseline_n)})"
            lines.append(f"{what}: the paper's comparison with {at} is {g.diff:+.2f}, CONFOUNDED: {g.fields}; {own}.")
    return lines
