"""Comparisons that differ in more than the teacher (issue 23.3): a replica table shows the
paper's comparison flagged "CONFOUNDED: <fields>" beside the same-setting one, and
specs/paper-code.yaml holds a same-setting control for every flagged cell."""

import math
from pathlib import Path

import pandas as pd
import pytest

from sweep.grid import expand
from sweep.results import TRIALS, append_rows
from sweep.spec import load_spec
from sweep.tables import table_rows, write_tables

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _row(seed, teacher, acc, head="sigmoid-pair", report_epoch="best_test", kd_defect="", shots=5000):
    distills = teacher != "none"
    tag = f"{teacher}-{head}-{report_epoch}-{kd_defect}-{shots}-{seed}"
    return {"trial_id": tag, "config_hash": tag, "dataset": "fashionmnist", "classes": "0-5", "n_classes": 6,
            "teacher": teacher, "student": "cnn-angle", "qubits": 3, "seed": seed, "head": head,
            "temperature": 3.0 if distills else math.nan, "lam": 0.9 if distills else math.nan,
            "kd_form": "additive" if distills else "", "kd_defect": kd_defect,
            "teacher_recipe": "paper-code" if distills else "", "backend": "aer", "shots": shots,
            "report_epoch": report_epoch, "selection": "first", "test_acc": acc, "status": "ok",
            "started_at": f"2026-01-01T00:00:{seed:02d}"}  # fmt: skip


def _write(tmp_path, rows):
    append_rows(tmp_path / TRIALS, rows)
    return write_tables(tmp_path)["markdown"].read_text()


def test_the_papers_comparison_is_flagged_beside_the_same_setting_control(tmp_path):
    rows = [_row(s, "none", 0.65, head="softmax-freqs") for s in range(3)]  # the paper's baseline
    rows += [_row(s, "lenet", 0.77) for s in range(3)]  # its distilled run: another head
    rows += [_row(s, "none", 0.75 + s / 100) for s in range(3)]  # the control: the distilled run's head
    md = _write(tmp_path, rows)
    flagged = [line for line in md.splitlines() if "CONFOUNDED" in line]
    assert len(flagged) == 1, flagged
    assert "the paper's comparison with the baseline at 65.00 (n=3) is +12.00" in flagged[0]
    assert "CONFOUNDED: head=sigmoid-pair vs softmax-freqs" in flagged[0]
    assert "same-setting comparison: +1.00 against its baseline (76.00, n=3)" in flagged[0]
    t = table_rows(tmp_path)
    distill = t[t["category"] == "Distillation"].iloc[0]
    assert distill["confounded"] == "head=sigmoid-pair vs softmax-freqs"
    assert distill["diff"] == pytest.approx(1.0) and distill["n_pairs"] == 3  # paired with the control only
    csv = pd.read_csv(tmp_path / "tables.csv")
    assert "confounded" in csv.columns


def test_without_a_control_the_table_says_one_is_missing(tmp_path):
    rows = [_row(s, "none", 0.65, head="softmax-freqs") for s in range(2)]
    rows += [_row(s, "lenet", 0.77) for s in range(2)]
    md = _write(tmp_path, rows)
    (line,) = [line for line in md.splitlines() if "CONFOUNDED" in line]
    assert "no same-setting baseline: add one to the spec (the control) to compare" in line


def test_a_defective_term_is_flagged_and_more_than_two_differences_are_not_the_papers_comparison(tmp_path):
    rows = [_row(s, "none", 0.70) for s in range(2)]
    rows += [_row(s, "lenet", 0.70, kd_defect="teacher-ce") for s in range(2)]
    # differs from the baseline in head, shots and the protocol's epoch: another experiment
    rows += [_row(s, "alexnet", 0.9, head="softmax-freqs", shots=3000, report_epoch="last") for s in range(2)]
    md = _write(tmp_path, rows)
    flagged = [line for line in md.splitlines() if "CONFOUNDED" in line]
    assert len(flagged) == 1 and "CONFOUNDED: kd_defect=teacher-ce" in flagged[0]
    assert "its comparison with its baseline, +0.00" in flagged[0]


def test_honest_tables_flag_nothing(tmp_path):
    rows = [_row(s, "none", 0.65, head="softmax-freqs", report_epoch="last") for s in range(2)]
    rows += [_row(s, "lenet", 0.77, report_epoch="last") for s in range(2)]
    assert "CONFOUNDED" not in _write(tmp_path, rows)


def _identity(cfg, *drop):
    d = cfg.identity()
    for k in ("teacher", "temperature", "lam", "kd_form", "teacher_settings", *drop):
        d.pop(k, None)
    return repr(sorted(d.items()))


def test_every_confounded_cell_of_the_paper_code_spec_has_its_control():
    """For each distilled setting: a baseline equal in every setting but the teacher's; for each
    defective term: the same teacher without it."""
    trials = expand(load_spec(SPECS / "paper-code.yaml")).trials
    baselines = {_identity(c, "kd_defect") for c in trials if c.teacher == "none"}
    plain = {(c.teacher, _identity(c, "kd_defect")) for c in trials if c.teacher != "none" and c.kd_defect == "none"}
    distilled = [c for c in trials if c.teacher != "none"]
    assert distilled and {c.kd_defect for c in distilled} >= {"none", "teacher-ce", "zeroed", "six-classes"}
    for c in distilled:
        assert _identity(c, "kd_defect") in baselines, f"no same-setting baseline for {c.dataset} {c.classes} {c}"
        assert (c.teacher, _identity(c, "kd_defect")) in plain, f"no defect-free control for {c}"
