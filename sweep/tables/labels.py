"""How rows, teachers, students and datasets are named, and the paper's row order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweep.tables.common import CATEGORIES, FIRST_TEACHERS, STUDENT_NAMES, TABLE
from workers.kinds import DATASETS, STUDENT_KINDS
from workers.kinds import TEACHERS as TEACHER_KINDS


def dataset_name(dataset: str) -> str:
    """A registered dataset's label (a package's too); a reference to the user's as written."""
    return DATASETS[dataset].label if dataset in DATASETS else str(dataset)


def dataset_label(dataset: str, classes: str) -> str:
    return f"{dataset_name(dataset)} {classes}"


def teacher_name(teacher: str) -> str:
    """A registered teacher's label; a reference (``PKG.MODULE:CALLABLE``, ``torchvision:NAME``)
    as written; an unknown name (a kind since removed) title-cased."""
    if teacher in TEACHER_KINDS:
        return TEACHER_KINDS[teacher].label
    return str(teacher) if ":" in str(teacher) else str(teacher).title()


def teacher_kind(teacher: str) -> str:
    """A teacher row's name: ``Classical, LeNet``; ``Quantum, QNN 8 qubit``."""
    quantum = teacher in TEACHER_KINDS and TEACHER_KINDS[teacher].quantum
    return f"{'Quantum' if quantum else 'Classical'}, {teacher_name(teacher)}"


def teacher_rank() -> list[str]:
    return [*FIRST_TEACHERS, *(t for t in TEACHER_KINDS if t not in FIRST_TEACHERS)]


def dataset_rank() -> list[str]:
    return list(DATASETS)


def num_text(x) -> str:
    return f"{x:g}" if isinstance(x, float | np.floating) else str(x)


def kd_suffix(r, show: dict[str, bool]) -> str:
    parts = [f"T={num_text(r.temperature)}"] if show["temperature"] else []
    parts += [f"λ={num_text(r.lam)}"] if show["lam"] else []
    parts += [r.kd_form] if show["kd_form"] and r.kd_form else []
    parts += [f"{r.teacher_recipe} recipe"] if show.get("teacher_recipe") and r.teacher_recipe else []
    # A released notebook's defect is named wherever its row appears.
    parts += [f"notebook defect: {r.kd_defect}"] if getattr(r, "kd_defect", "") else []
    return f" ({', '.join(parts)})" if parts else ""


def student_name(r) -> str:
    q = int(r.qubits)
    n_params = getattr(r, "n_params", math.nan)
    p = f"{int(n_params):,}" if pd.notna(n_params) and n_params >= 0 else "?"
    kind = getattr(r, "student", "amplitude") or "amplitude"
    own = STUDENT_KINDS[kind].label if kind in STUDENT_KINDS else ""  # a package's kind names itself
    name = STUDENT_NAMES.get(kind) or own or "{q} qubit"
    circuit = getattr(r, "ansatz", "") or "the user's circuit"  # a circuit student's ansatz is its reference
    return name.format(q=q, d=2**q, p=p, c=circuit)


def architecture(r, show: dict[str, bool]) -> str:
    student = student_name(r) if r.category != "Teacher" else ""
    if r.category == "Student":
        return student
    if r.category == "Teacher":
        return teacher_kind(r.teacher)
    return f"Teacher: {teacher_name(r.teacher)}{kd_suffix(r, show)}, Student: {student}"


def setting_text(values: pd.Series, cols: list[str]) -> str:
    return ", ".join(f"{c}={num_text(values[c]) if values[c] != '' else '-'}" for c in cols)


def paper_order(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's order: Student, Teacher, Distillation; AlexNet, LeNet, Ensemble; then qubits, classes."""
    known = teacher_rank()
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
