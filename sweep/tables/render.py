"""The report as Markdown and as LaTeX."""

from __future__ import annotations

import math

import pandas as pd

from sweep.tables.common import Report


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


def markdown_text(report: Report) -> str:
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


def latex_text(report: Report) -> str:
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
