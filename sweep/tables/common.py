"""What the roll-up's modules share: the columns that split and name rows, and the report."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

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
    "circuit": "Quantum ({c}), {q} qubit",
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
class ReportTable:
    title: str
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    name: str
    rows: pd.DataFrame
    tables: list[ReportTable]
    notes: list[str]
    per_seed: pd.DataFrame
    epochs: pd.DataFrame | None
    panel_titles: dict
