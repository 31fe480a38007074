"""The paper's tables from synthetic results folders, checked against hand calculations."""

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweep.cli import tables_parser as add_parser
from sweep.tables import markdown_tables, run, table_rows, write_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: Student test accuracies (fractions) per (classes, qubits, teacher): {seed: acc}.
ACC = {
    ("0-5", 3, "none"): {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.95},
    # seed 3 has no lenet run and seed 4 no baseline: both are left out of the pairing
    ("0-5", 3, "lenet"): {0: 0.93, 1: 0.92, 2: 0.95, 4: 0.99},
    ("0-5", 3, "alexnet"): {0: 0.91, 1: 0.94, 2: 0.93, 3: 0.96},
    ("0-7", 4, "none"): {0: 0.80, 1: 0.84, 2: 0.82},
    ("0-7", 4, "lenet"): {0: 0.83, 1: 0.84, 2: 0.86},
    ("0-7", 4, "alexnet"): {0: 0.81, 1: 0.85, 2: 0.80},
}
#: teacher_key -> (classes, arch, teacher seed, test accuracy)
TEACHER_MODELS = {
    "t-le-05-0": ("0-5", "lenet", 0, 0.995),
    "t-le-05-1": ("0-5", "lenet", 1, 0.991),
    "t-ax-05-0": ("0-5", "alexnet", 0, 0.997),
    "t-le-07-0": ("0-7", "lenet", 0, 0.990),
    "t-ax-07-0": ("0-7", "alexnet", 0, 0.995),
}

STUDENT = dict(
    backend="aer", shots=5000, noise="", epochs=3, lr=0.001, batch_size=32, samples_per_class=150,
    test_samples_per_class=150, reduction="fc", layers=1, head="linear",
)  # fmt: skip


def trial(classes, qubits, teacher, seed, acc, status="ok", **kw):
    distill = teacher != "none"
    tkey = ""
    if distill:  # the 0-5 LeNet students alternate between two teacher seeds
        tseed = seed % 2 if (classes, teacher) == ("0-5", "lenet") else 0
        tkey = next(k for k, v in TEACHER_MODELS.items() if v[:3] == (classes, teacher, tseed))
    row = dict(
        trial_id="-".join(map(str, (kw.get("dataset", "mnist"), classes, qubits, teacher, seed, status, *kw.values()))),
        dataset=kw.pop("dataset", "mnist"), classes=classes, n_classes=int(classes[-1]) + 1, teacher=teacher,
        qubits=qubits, temperature=3.0 if distill else math.nan, lam=0.9 if distill else math.nan,
        kd_form="hinton" if distill else "", seed=seed, test_acc=acc, test_loss=0.5, train_acc=acc,
        train_loss=1.0, teacher_test_acc=TEACHER_MODELS[tkey][3] if distill else math.nan, teacher_key=tkey,
        teacher_seed=TEACHER_MODELS[tkey][2] if distill else -1, status=status, error="",
        started_at=f"2026-01-01T00:00:{seed:02d}", ansatz="h-ry" if qubits == 3 else "ry", **STUDENT,
    )  # fmt: skip
    row.update(kw)
    row["config_hash"] = row["trial_id"]
    return row


def write_folder(path, rows, epochs=True):
    path.mkdir(parents=True, exist_ok=True)
    trials = pd.DataFrame(rows)
    trials.to_parquet(path / "trials.parquet")
    teachers = pd.DataFrame(
        [dict(teacher_key=k, dataset="mnist", classes=c, teacher=a, teacher_seed=s, test_acc=acc, n_test=6000)
         for k, (c, a, s, acc) in TEACHER_MODELS.items()]
    )  # fmt: skip
    teachers.to_parquet(path / "teachers.parquet")
    if epochs:
        ep = pd.DataFrame(
            [dict(trial_id=r["trial_id"], epoch=e, train_loss=2.0 / e, test_loss=1.0 / e + 0.01 * r["seed"],
                  train_acc=r["test_acc"], test_acc=r["test_acc"]) for r in rows for e in (1, 2, 3)]
        )  # fmt: skip
        ep.to_parquet(path / "epochs.parquet")
    return path


def paper_rows():
    rows = [trial(c, q, t, s, a) for (c, q, t), seeds in ACC.items() for s, a in seeds.items()]
    # Left out, and reported: a diverged run and one pruned by the scheduler (with an accuracy that would show).
    rows.append(trial("0-5", 3, "alexnet", 7, math.nan, status="nan_loss", error="loss is NaN at epoch 2"))
    rows.append(trial("0-7", 4, "lenet", 9, 0.10, status="pruned"))
    return rows


@pytest.fixture
def results(tmp_path):
    return write_folder(tmp_path / "results" / "demo", paper_rows())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Written once for the module (into a folder of its own): drawing the figures is the slow part."""
    results = write_folder(tmp_path_factory.mktemp("results") / "demo", paper_rows())
    out = tmp_path_factory.mktemp("elsewhere")
    return results, out, write_tables(results, out)


@pytest.fixture
def csv(written):
    return pd.read_csv(written[2]["csv"], keep_default_na=False, na_values=[""])


def row(csv, category, teacher, classes, qubits=None):
    sel = (csv["category"] == category) & (csv["teacher"] == teacher) & (csv["classes"] == classes)
    if qubits is not None:
        sel &= csv["qubits"] == qubits
    assert sel.sum() == 1, csv[sel]
    return csv[sel].iloc[0]


def pct(seeds: dict) -> np.ndarray:
    return np.array(list(seeds.values())) * 100


@pytest.mark.parametrize("key", list(ACC))
def test_student_means_and_stds_are_over_ok_seeds(csv, key):
    classes, qubits, teacher = key
    r = row(csv, "Student" if teacher == "none" else "Distillation", teacher, classes, qubits)
    expected = pct(ACC[key])
    assert r["n"] == len(expected)  # the pruned 0-7 LeNet row (10%) and the NaN row are not counted
    assert r["mean"] == pytest.approx(expected.mean(), abs=1e-9)
    assert r["std"] == pytest.approx(expected.std(ddof=1), abs=1e-9)


def test_plus_for_student_is_the_difference_of_means(csv):
    for classes, qubits, teacher in [k for k in ACC if k[2] != "none"]:
        r = row(csv, "Distillation", teacher, classes, qubits)
        base = pct(ACC[(classes, qubits, "none")]).mean()
        assert r["plus_for_student"] == pytest.approx(pct(ACC[(classes, qubits, teacher)]).mean() - base, abs=1e-9)
        assert r["baseline_mean"] == pytest.approx(base, abs=1e-9)
    assert csv.loc[csv["category"] != "Distillation", "plus_for_student"].isna().all()


def test_paired_comparison_matches_ttest_rel_over_shared_seeds(csv):
    r = row(csv, "Distillation", "lenet", "0-5", 3)
    shared = [0, 1, 2]  # seed 3 lacks a LeNet run, seed 4 a baseline
    a = np.array([ACC[("0-5", 3, "lenet")][s] for s in shared]) * 100
    b = np.array([ACC[("0-5", 3, "none")][s] for s in shared]) * 100
    d = a - b
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert r["n_pairs"] == 3 and r["n"] == 4
    assert r["diff"] == pytest.approx(d.mean(), abs=1e-9)
    assert r["ci_low"] == pytest.approx(d.mean() - half, abs=1e-9)
    assert r["ci_high"] == pytest.approx(d.mean() + half, abs=1e-9)
    assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    # The paired difference is not the difference of means when seeds are unmatched.
    assert abs(r["diff"] - r["plus_for_student"]) > 0.1


def test_teacher_rows_average_the_teacher_models_used(csv):
    le = row(csv, "Teacher", "lenet", "0-5")
    assert (
        le["n"] == 2 and le["mean"] == pytest.approx(99.3) and le["std"] == pytest.approx(np.std([99.5, 99.1], ddof=1))
    )
    ax = row(csv, "Teacher", "alexnet", "0-7")
    assert ax["n"] == 1 and ax["mean"] == pytest.approx(99.5)
    assert (csv["category"] == "Teacher").sum() == 4  # one per classes x architecture, not per qubits


def test_markdown_has_the_papers_labels_layout_and_exclusions(results):
    md = markdown_tables(results)
    assert "## Table: MNIST" in md
    for label in ("Quantum, 3 qubit", "Quantum, 4 qubit", "Classical, LeNet", "Classical, AlexNet",
                  "Teacher: LeNet, Student: Quantum, 3 qubit", "Teacher: AlexNet, Student: Quantum, 4 qubit",
                  "MNIST 0-5", "MNIST 0-7", "+ for Student", "Accuracy (%)"):  # fmt: skip
        assert label in md, label
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Category"))
    assert [c.strip() for c in header.strip("|").split("|")][:4] == [
        "Category",
        "Architecture",
        "Dataset",
        "Accuracy (%)",
    ]
    # Blocks in the paper's order, each category named once.
    table = [line for line in lines if line.startswith("|")]
    firsts = [line.split("|")[1].strip() for line in table[2:]]
    assert [c for c in firsts if c] == ["Student", "Teacher", "Distillation"]
    base = pct(ACC[("0-5", 3, "none")])
    student = next(line for line in table if "Quantum, 3 qubit" in line and "Teacher:" not in line)
    assert f"{base.mean():.2f} ± {base.std(ddof=1):.2f}" in student
    lenet = next(line for line in table if "Teacher: LeNet, Student: Quantum, 3 qubit" in line)
    plus = pct(ACC[("0-5", 3, "lenet")]).mean() - base.mean()
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in lenet.split("|")], strict=True))
    assert cells["+ for Student"] == f"{plus:.2f}%" and cells["n"] == "4" and cells["pairs"] == "3"
    assert cells["Paired Δ [95% CI]"].startswith(f"+{(93 + 92 + 95) / 3 - (90 + 92 + 91) / 3:.2f} [")
    assert "Excluded 2 trial(s): 1 nan_loss, 1 pruned." in md
    assert "1 of 4 seed(s) have no baseline run" in md


def test_files_are_written_and_pngs_are_valid(written):
    results, out, written = written
    assert set(written) == {"markdown", "latex", "csv", "loss_curves", "accuracy_bars"}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0 and path.is_relative_to(out)
    for key in ("loss_curves", "accuracy_bars"):
        assert written[key].read_bytes()[:8] == PNG_MAGIC
        assert written[key].stat().st_size > 10_000  # panels were drawn, not an empty canvas
    tex = written["latex"].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"Accuracy (\%)" in tex and r"$\pm$" in tex
    assert tex.count(r"\begin{table}") == 1
    assert written["markdown"].read_text() == markdown_tables(results)
    on_disk, in_memory = pd.read_csv(written["csv"]), table_rows(results)
    assert list(on_disk.columns) == list(in_memory.columns)
    for col in ("mean", "std", "n", "plus_for_student", "diff", "ci_low", "ci_high", "p_value", "n_pairs"):
        np.testing.assert_allclose(on_disk[col], in_memory[col].astype(float), rtol=1e-12, equal_nan=True)
    assert not (results / "tables.md").exists()


def test_missing_epochs_skips_only_the_loss_figure(tmp_path):
    results = write_folder(tmp_path / "r", paper_rows(), epochs=False)
    written = write_tables(results)
    assert "loss_curves" not in written and written["accuracy_bars"].is_file()
    assert "No epochs.parquet" in written["markdown"].read_text()


def test_other_student_settings_are_never_averaged_together(tmp_path):
    rows = [trial("0-5", 3, t, s, 0.9 + 0.01 * s, backend="aer") for t in ("none", "lenet") for s in range(3)]
    sv = dict(backend="statevector", shots=0)
    rows += [trial("0-5", 3, t, s, 0.5 + 0.01 * s, **sv) for t in ("none", "lenet") for s in range(3)]
    results = write_folder(tmp_path / "r", rows)
    csv = table_rows(results)
    students = csv[csv["category"] == "Student"].set_index("backend")
    assert students.loc["aer", "mean"] == pytest.approx(91.0) and students.loc["statevector", "mean"] == pytest.approx(
        51.0
    )
    md = markdown_tables(results)
    assert "## Table: MNIST (backend=aer, shots=5000)" in md and "## Table: MNIST (backend=statevector, shots=0)" in md
    # Each distillation row is compared with the baseline of its own backend.
    assert csv.loc[csv["category"] == "Distillation", "plus_for_student"].tolist() == pytest.approx([0.0, 0.0])


def test_distillation_settings_get_separate_rows_named_by_what_differs(tmp_path):
    rows = [trial("0-5", 3, "none", s, 0.90) for s in range(2)]
    rows += [trial("0-5", 3, "lenet", s, 0.92, lam=0.9) for s in range(2)]
    rows += [trial("0-5", 3, "lenet", s, 0.80, lam=0.5) for s in range(2)]
    results = write_folder(tmp_path / "r", rows)
    md = markdown_tables(results)
    assert "Teacher: LeNet (λ=0.5), Student: Quantum, 3 qubit" in md
    assert "Teacher: LeNet (λ=0.9), Student: Quantum, 3 qubit" in md
    csv = table_rows(results).query("category == 'Distillation'").set_index("lam")
    assert csv.loc[0.5, "mean"] == pytest.approx(80.0) and csv.loc[0.9, "mean"] == pytest.approx(92.0)


def test_single_seed_uses_the_papers_columns(tmp_path):
    rows = [trial("0-5", 3, "none", 0, 0.9656), trial("0-5", 3, "alexnet", 0, 0.9744)]
    rows += [trial("0-5", 3, "none", 0, 0.5, dataset="digits"), trial("0-5", 3, "lenet", 0, 0.6, dataset="digits")]
    results = write_folder(tmp_path / "r", rows)
    md = markdown_tables(results)
    # One table per dataset, in the paper's order, digits after the paper's datasets.
    assert md.index("## Table: MNIST") < md.index("## Table: Digits") and "| Digits 0-5 " in md
    header = next(line for line in md.splitlines() if line.startswith("| Category"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Category", "Architecture", "Dataset", "Accuracy (%)", "+ for Student",
    ]  # fmt: skip
    assert "| 97.44 " in md and "0.88%" in md  # the paper's Table 1 AlexNet row


def test_rerun_of_the_same_config_counts_once(tmp_path):
    rows = [trial("0-5", 3, "none", s, 0.9) for s in range(2)]
    again = dict(rows[0], trial_id="rerun", test_acc=0.5, started_at="2026-01-02T00:00:00")
    results = write_folder(tmp_path / "r", [*rows, again])
    r = table_rows(results).iloc[0]
    assert r["n"] == 2 and r["mean"] == pytest.approx(70.0)  # the latest run of seed 0 (50%) replaces 90%
    assert "1 rerun of the same config (older row)" in markdown_tables(results)


def test_no_ok_trials_writes_a_message_and_no_figures(tmp_path):
    results = write_folder(tmp_path / "r", [trial("0-5", 3, "none", 0, math.nan, status="error")])
    (results / "figures").mkdir()
    (results / "figures" / "accuracy_bars.png").write_bytes(b"stale")
    written = write_tables(results)
    assert set(written) == {"markdown", "latex", "csv"}
    assert "No ok trials" in written["markdown"].read_text() and "1 error" in written["markdown"].read_text()
    assert not (results / "figures" / "accuracy_bars.png").exists()
    assert pd.read_csv(written["csv"]).empty


def test_missing_folder_or_trials_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        write_tables(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="trials.parquet"):
        markdown_tables(tmp_path / "empty")


def test_cli_prints_the_tables_and_the_paths(tmp_path, capsys):
    results = write_folder(tmp_path / "r", [trial("0-5", 3, t, s, 0.9) for t in ("none", "lenet") for s in (0, 1)])
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tables", str(results), "--out", str(tmp_path / "o")])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "## Table: MNIST" in out and "Teacher: LeNet, Student: Quantum, 3 qubit" in out
    for name in ("tables.md", "tables.tex", "tables.csv", "figures/loss_curves.png", "figures/accuracy_bars.png"):
        assert f"wrote {tmp_path / 'o' / name}" in out and (tmp_path / "o" / name).is_file()
    assert not (results / "tables.md").exists()
    # No ok trial: a message, exit status 0.
    empty = write_folder(tmp_path / "e", [trial("0-5", 3, "none", 0, math.nan, status="nan_loss")])
    assert run(parser.parse_args(["tables", str(empty)])) == 0
    assert "No ok trials" in capsys.readouterr().out


def test_the_papers_circuits_for_3_and_4_qubits_share_a_table(tmp_path):
    # "paper" resolves to h-ry on 3 qubits and ry on 4: one setting, as in the paper's Table 1.
    rows = [trial("0-7", 3, "none", s, 0.9, ansatz="h-ry") for s in range(2)]
    rows += [trial("0-7", 4, "none", s, 0.8, ansatz="ry") for s in range(2)]
    rows += [trial("0-7", 3, "none", s, 0.7, ansatz="ry") for s in range(2)]  # not the paper's 3-qubit circuit
    md = markdown_tables(write_folder(tmp_path / "r", rows))
    titles = [line for line in md.splitlines() if line.startswith("## Table")]
    assert titles == ["## Table: MNIST (ansatz=paper)", "## Table: MNIST (ansatz=ry)"]
    paper = md.split("## Table: MNIST (ansatz=paper)")[1].split("## Table")[0]
    assert "Quantum, 3 qubit" in paper and "Quantum, 4 qubit" in paper and "| 90.00" in paper and "| 80.00" in paper


def test_figure_panel_titles_wrap_to_the_panel_width(tmp_path):
    from sweep.tables.build import build_report
    from sweep.tables.common import PANEL_TITLE_WIDTH

    # Six settings vary across the groups, as in specs/readings-mnist.yaml: one line of
    # "lr=..., samples_per_class=..., reduction=..., ..." is wider than a panel.
    groups = [dict(lr=0.001), dict(lr=0.01), dict(samples_per_class=1500), dict(reduction="pca"),
              dict(ansatz="hea", layers=4), dict(head="log")]  # fmt: skip
    rows = [trial("0-5", 3, t, s, 0.9, **g) for g in groups for t in ("none", "lenet") for s in range(2)]
    titles = list(build_report(write_folder(tmp_path / "r", rows)).panel_titles.values())
    assert len(titles) == len(groups)
    for title in titles:
        first, *settings = title.split("\n")
        assert first == "MNIST 0-5, 3 qubit"
        assert len(settings) > 1 and all(len(line) <= PANEL_TITLE_WIDTH for line in settings), title
        text = " ".join(settings)
        for name in ("lr=", "samples_per_class=", "reduction=", "ansatz=", "layers=", "head="):
            assert name in text, (name, title)
    assert len(set(titles)) == len(groups)


def test_a_results_folder_behind_a_uri_is_tabled(tmp_path):
    """The roll-up reads and writes through workers.io: an fsspec memory:// folder (as an
    s3:// or gs:// results root would be) gets the same tables as the local copy."""
    fsspec = pytest.importorskip("fsspec")
    from workers.io import location

    local = write_folder(tmp_path / "r", paper_rows())
    remote = location("memory://qkd-tables-test/r")
    for name in ("trials.parquet", "epochs.parquet", "teachers.parquet"):
        (remote / name).write_bytes((local / name).read_bytes())
    try:
        written = write_tables("memory://qkd-tables-test/r")
        write_tables(local)
        for name in ("tables.md", "tables.tex", "tables.csv"):
            assert (remote / name).read_text() == (local / name).read_text()
        assert (remote / "figures" / "accuracy_bars.png").read_bytes().startswith(PNG_MAGIC)
        assert str(written["csv"]) == "memory://qkd-tables-test/r/tables.csv"
        pd.testing.assert_frame_equal(table_rows("memory://qkd-tables-test/r"), table_rows(local))
    finally:
        fsspec.filesystem("memory").rm("/qkd-tables-test", recursive=True)
