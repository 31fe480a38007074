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

The package, by job: :mod:`~sweep.tables.load` reads a folder (a path or a URI),
:mod:`~sweep.tables.stats` computes, :mod:`~sweep.tables.labels` names,
:mod:`~sweep.tables.build` assembles the report, :mod:`~sweep.tables.render` writes
Markdown and LaTeX and :mod:`~sweep.tables.figures` draws; ``qkd-sweep tables`` is
parsed in :mod:`sweep.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sweep.tables.build import build_report
from sweep.tables.common import FIGURES, Report
from sweep.tables.figures import accuracy_figure, loss_figure
from sweep.tables.render import latex_text, markdown_text
from workers.io import Location, atomic_write, location

__all__ = ["markdown_tables", "run", "table_rows", "write_tables"]


def table_rows(results_dir: str | Path) -> pd.DataFrame:
    """The rows of tables.csv as a DataFrame (percent points), for answers in pandas without files."""
    return build_report(results_dir).rows


def markdown_tables(results_dir: str | Path) -> str:
    """The tables as Markdown, for printing at the end of a sweep."""
    return markdown_text(build_report(results_dir))


def write_tables(results_dir: str | Path | Location, out_dir: str | Path | Location | None = None) -> dict:
    """Write the tables and figures (into ``results_dir`` unless ``out_dir``, a path or a URI);
    returns what was written (paths on a local disk, else :class:`~workers.io.Location`)."""
    return _write(build_report(results_dir), out_dir if out_dir is not None else results_dir)


def _write(report: Report, out_dir: str | Path | Location) -> dict:
    out = location(out_dir)
    written = {"markdown": out / "tables.md", "latex": out / "tables.tex", "csv": out / "tables.csv"}
    md, tex = markdown_text(report), latex_text(report)
    atomic_write(written["markdown"], lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    atomic_write(written["latex"], lambda tmp: Path(tmp).write_text(tex, encoding="utf-8"))
    atomic_write(written["csv"], lambda tmp: report.rows.to_csv(tmp, index=False))
    stale = []
    if not report.tables:  # an earlier run's figures would no longer match the tables
        stale = list(FIGURES.values())
    else:
        if report.epochs is not None:
            written["loss_curves"] = out / FIGURES["loss_curves"]
            loss_figure(report, written["loss_curves"])
        else:
            stale.append(FIGURES["loss_curves"])
        written["accuracy_bars"] = out / FIGURES["accuracy_bars"]
        accuracy_figure(report, written["accuracy_bars"])
    for rel in stale:
        (out / rel).delete()
    return {k: v.local_path if v.is_local else v for k, v in written.items()}


def run(args: argparse.Namespace) -> int:
    """Print the tables and the files written; a folder without ok trials is reported, not an error."""
    report = build_report(args.results_dir)
    written = _write(report, args.out if args.out is not None else args.results_dir)
    print(markdown_text(report))
    for path in written.values():
        print(f"wrote {path}")
    return 0
