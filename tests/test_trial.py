"""A trial end to end on the embedded digits set, and the CLI around it."""

import math

import numpy as np
import pandas as pd
import pytest

from sweep.cli import main
from workers.config import TrialConfig
from workers.teacher_settings import TeacherSettings
from workers.trial import run_trial

#: The documented trials.parquet columns (README, "Result schema").
TRIAL_COLUMNS = {
    "trial_id", "config_hash", "dataset", "classes", "n_classes", "teacher", "qubits",
    "temperature", "lam", "kd_form", "seed", "backend", "shots", "noise", "epochs", "lr",
    "batch_size", "samples_per_class", "test_samples_per_class", "n_train", "n_test",
    "val_samples_per_class", "n_val", "val_acc", "val_loss",
    "reduction", "ansatz", "layers", "head", "head_scale", "test_acc", "test_loss",
    "train_acc", "train_loss", "teacher_test_acc", "teacher_key", "teacher_seed",
    "teacher_cached", "teacher_wall_s", "circuit_executions", "shots_total", "wall_s",
    "status", "error", "started_at", "host", "code_version", "torch_version",
    "qiskit_version", "qiskit_aer_version", "numpy_version",
    # the student kind and the protocol (the paper's released notebooks)
    "student", "kd_defect", "shift_rule", "selection", "normalize", "report_epoch", "selects_on_test",
    "learn_scale", "teacher_recipe", "teacher_keep", "n_params", "reported_epoch", "last_test_acc",
    "teacher_best_test_acc",
    # what ran: executor, measurement and gradient apart, and where the torch executor ran
    "gradient", "device", "executor", "measurement",
    # noise in training and in scoring, and the circuit as transpiled (a device's layout)
    "test_noise", "noise_scale", "layout", "transpiled_depth", "two_qubit_gates",
    "test_layout", "test_transpiled_depth", "test_two_qubit_gates",
}  # fmt: skip
EPOCH_COLUMNS = {"trial_id", "epoch", "train_loss", "train_ce", "train_kl", "train_acc", "test_loss",
                 "test_acc", "val_loss", "val_acc", "head_scale", "circuit_executions", "wall_s"}  # fmt: skip


def small(tmp_path, **kw):
    base = dict(dataset="digits", classes="0-3", backend="statevector", epochs=3,
                samples_per_class=20, test_samples_per_class=20, batch_size=16,
                cache_dir=str(tmp_path / "cache"), teacher_settings=TeacherSettings(epochs=3))  # fmt: skip
    base.update(kw)
    return TrialConfig(**base)


def test_statevector_trial_is_deterministic_for_a_seed(tmp_path):
    a = run_trial(small(tmp_path, teacher="none", seed=3))
    b = run_trial(small(tmp_path, teacher="none", seed=3))
    c = run_trial(small(tmp_path, teacher="none", seed=4))
    strip = lambda es: [{k: v for k, v in e.items() if k not in ("trial_id", "wall_s")} for e in es]  # noqa: E731
    assert strip(a.epochs) == strip(b.epochs)
    assert a.row["test_acc"] == b.row["test_acc"]
    assert strip(a.epochs) != strip(c.epochs)
    assert a.row["trial_id"] != b.row["trial_id"]
    assert a.row["config_hash"] == b.row["config_hash"] != c.row["config_hash"]


def test_trial_row_has_the_schema_and_learns(tmp_path):
    res = run_trial(small(tmp_path, teacher="lenet", epochs=4))
    row = res.row
    assert set(row) == TRIAL_COLUMNS
    assert [e["epoch"] for e in res.epochs] == [1, 2, 3, 4]
    assert set(res.epochs[0]) == EPOCH_COLUMNS
    assert row["status"] == "ok" and row["test_acc"] == res.epochs[-1]["test_acc"]
    assert row["n_train"] == row["n_test"] == 80
    assert row["test_acc"] > 0.5  # chance is 0.25
    assert res.epochs[-1]["train_loss"] < res.epochs[0]["train_loss"]
    assert 0 < row["teacher_test_acc"] <= 1 and row["teacher_cached"] is False
    assert row["shots_total"] == 0 and row["circuit_executions"] == 4 * (80 + 80)
    assert not math.isnan(res.epochs[0]["train_kl"])
    assert res.teacher["teacher_key"] == row["teacher_key"]


def test_validation_split_is_held_out_and_leaves_training_as_it_was(tmp_path):
    plain = run_trial(small(tmp_path, teacher="none", epochs=2))
    held = run_trial(small(tmp_path, teacher="none", epochs=2, val_samples_per_class=10))
    assert math.isnan(plain.row["val_acc"]) and plain.row["n_val"] == 0
    assert held.row["n_val"] == 40 and 0 <= held.row["val_acc"] <= 1
    assert all(0 <= e["val_acc"] <= 1 for e in held.epochs)
    # Same training samples, init and order: the held-out rows change nothing but the report.
    assert held.row["test_acc"] == plain.row["test_acc"]
    assert held.row["train_loss"] == plain.row["train_loss"]
    assert held.row["config_hash"] != plain.row["config_hash"]


def test_validation_split_on_aer_leaves_every_other_number_as_it_was(tmp_path):
    # The validation split's shots come from their own stream: with shots, scoring it
    # must not shift the draws that training and the test split see.
    kw = dict(teacher="none", backend="aer", shots=100, epochs=2, samples_per_class=6, test_samples_per_class=6)
    plain = run_trial(small(tmp_path, **kw))
    held = run_trial(small(tmp_path, **kw, val_samples_per_class=4))
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "head_scale"):
        assert [e[key] for e in held.epochs] == [e[key] for e in plain.epochs], key
    assert all(0 <= e["val_acc"] <= 1 for e in held.epochs)
    assert held.row["shots_total"] > plain.row["shots_total"]  # the validation split was measured, with shots


def test_seed_streams_of_earlier_runs_are_unchanged():
    # Streams are appended, never reordered: a committed row re-runs to the same number.
    from workers.trial import _seeds

    for seed in (0, 7):
        old = [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(seed).spawn(4)]
        s = _seeds(seed)
        assert [s["data"], s["init"], s["order"], s["shots"]] == old
        assert len(set(s.values())) == len(s)


def test_a_teacher_changes_the_training_but_not_the_samples(tmp_path):
    base = run_trial(small(tmp_path, teacher="none"))
    kd = run_trial(small(tmp_path, teacher="lenet"))
    lam0 = run_trial(small(tmp_path, teacher="lenet", lam=0.0))
    assert base.row["n_train"] == kd.row["n_train"]
    assert kd.epochs[0]["train_loss"] != base.epochs[0]["train_loss"]
    # lam = 0 is the baseline's loss on the baseline's samples from the same start.
    assert lam0.epochs[-1]["test_acc"] == base.epochs[-1]["test_acc"]
    assert lam0.row["teacher_cached"] is True
    assert math.isnan(base.row["lam"]) and math.isnan(base.row["teacher_test_acc"])


def test_aer_trial_counts_its_quantum_cost(tmp_path):
    cfg = small(tmp_path, teacher="none", backend="aer", shots=200, epochs=1,
                samples_per_class=4, test_samples_per_class=4)  # fmt: skip
    row = run_trial(cfg).row
    n_params = 7 + 3  # 3-qubit encoding tree + h-ry weights
    assert row["circuit_executions"] == 16 * (1 + 2 * n_params) + 16
    assert row["shots_total"] == 200 * row["circuit_executions"]


def _cli(tmp_path, *extra):
    return ["trial", "--dataset", "digits", "--classes", "0-3", "--backend", "statevector",
            "--epochs", "2", "--samples-per-class", "15", "--test-samples-per-class", "15",
            "--teacher-epochs", "2", "--out", str(tmp_path / "out"), "-q", *extra]  # fmt: skip


def test_cli_appends_rows_and_reuses_the_cached_teacher(tmp_path, capsys):
    assert main(_cli(tmp_path, "--teacher", "lenet")) == 0
    first = capsys.readouterr().out
    assert "trained now" in first and "test_acc" in first
    assert main(_cli(tmp_path, "--teacher", "lenet", "--seed", "1")) == 0
    assert "cached logits" in capsys.readouterr().out
    assert main(_cli(tmp_path, "--teacher", "none")) == 0
    out = tmp_path / "out"
    trials = pd.read_parquet(out / "trials.parquet")
    epochs = pd.read_parquet(out / "epochs.parquet")
    teachers = pd.read_parquet(out / "teachers.parquet")
    assert list(trials.teacher) == ["lenet", "lenet", "none"]
    assert list(trials.teacher_cached) == [False, True, False]
    assert len(epochs) == 6 and set(epochs.trial_id) == set(trials.trial_id)
    assert len(teachers) == 1  # one teacher, upserted by key
    assert trials.test_acc.between(0, 1).all()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--teacher", "resnet"], "teacher: unknown value 'resnet'"),
        (["--qubits", "2", "--classes", "0-5"], "qubits: 2 qubits give 4 basis states"),
        (["--lam", "2"], "lam: must lie in [0, 1]"),
        (["--classes", "0-x"], "classes: "),
        (["--samples-per-class", "500"], "samples_per_class: class 0 has only"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, needle):
    assert main(_cli(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "trials.parquet").exists()


def test_cli_missing_mnist_offline_names_files_and_root(tmp_path, capsys):
    args = ["trial", "--dataset", "mnist", "--data-root", str(tmp_path / "nowhere"),
            "--no-download", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train-images-idx3-ubyte" in err and str(tmp_path / "nowhere") in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("teacher", ["none", "lenet"])
def test_paper_settings_on_aer_reach_well_above_chance(tmp_path, teacher):
    """The issue's CLI line: digits 0-5, 3 qubits, T=3, lam=0.9, Aer, 5000 shots, 10 epochs."""
    cfg = TrialConfig(dataset="digits", classes="0-5", teacher=teacher, backend="aer",
                      shots=5000, epochs=10, seed=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    res = run_trial(cfg)
    assert res.row["status"] == "ok"
    assert res.row["test_acc"] > 0.8  # chance is 1/6
    assert res.row["shots_total"] == 5000 * res.row["circuit_executions"]
