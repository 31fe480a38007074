"""The paper as its released notebooks ran it: the CNN + angle-encoding student, its head,
the notebooks' shift rule, first-N selection, the reported epoch, the named defects, the
paper-code teacher recipe, and the one resolved configuration behind hashes and columns."""

import json
import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector
from test_data import write_idx_dataset

import workers.data as data
from sweep.results import TRIALS, append_rows
from sweep.tables import table_rows, write_tables
from workers.backends import AerBackend, StatevectorBackend
from workers.backends.noise import to_qiskit
from workers.circuits import build_angle_circuit, product_state_probabilities
from workers.config import TrialConfig
from workers.data import Split, load_dataset, per_class_sample, student_splits
from workers.errors import ConfigError
from workers.student import AngleStudent, ClassicalControl, Head, build_student
from workers.teacher_settings import TeacherSettings
from workers.teachers.logits import get_teacher
from workers.teachers.models import make_model
from workers.trial import config_columns, reported_epoch, run_trial


def _angles(n_qubits, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, n_qubits, generator=g, dtype=torch.float64) * 2 - 1) * math.pi


# ------------------------------------------------------------------ the circuit
@pytest.mark.parametrize("n", [3, 4])
def test_angle_circuit_is_the_product_state_on_every_simulator(n):
    c = build_angle_circuit(n)
    a = _angles(n)
    closed = product_state_probabilities(a).numpy()
    qc, enc, _ = to_qiskit(c)
    ref = np.array([Statevector(qc.assign_parameters(dict(zip(enc, row.tolist(), strict=True)))).probabilities()
                    for row in a])  # fmt: skip
    empty = torch.zeros(0, dtype=torch.float64)
    sv = StatevectorBackend(c).probabilities(a, empty).numpy()
    aer = AerBackend(c, shots=0).probabilities(a, empty).numpy()
    for probs in (closed, sv, aer):
        assert np.abs(probs - ref).max() < 1e-12
    # P(qubit k reads 1) = (1 + sin a_k) / 2, qubit 0 the least significant bit of the index.
    bit0 = ref[:, 1::2].sum(1)
    assert np.allclose(bit0, (1 + np.sin(a[:, 0].numpy())) / 2)


def test_pi4_unnormalized_shift_is_sqrt2_times_the_gradient():
    c = build_angle_circuit(3)
    a = _angles(3, batch=4, seed=2)
    upstream = torch.randn(4, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    empty = torch.zeros(0, dtype=torch.float64)

    def grad(rule):
        x = a.clone().requires_grad_()
        (AerBackend(c, shots=0, shift_rule=rule).probabilities(x, empty) * upstream).sum().backward()
        return x.grad.numpy()

    h = 1e-6
    fd = np.zeros((4, 3))
    for i in range(4):
        for k in range(3):
            e = torch.zeros(4, 3, dtype=torch.float64)
            e[i, k] = h
            fd[i, k] = float(
                ((product_state_probabilities(a + e) - product_state_probabilities(a - e)) * upstream).sum()
            )
    fd /= 2 * h
    assert np.abs(fd).max() > 1e-2  # a real signal
    assert np.abs(grad("exact") - fd).max() < 1e-7
    assert np.abs(grad("pi4-unnormalized") - math.sqrt(2) * fd).max() < 1e-7


# ------------------------------------------------------------------ students and heads
def test_student_kinds_build_with_the_notebooks_parameter_counts():
    cfg = TrialConfig(student="cnn-angle", backend="statevector", teacher="none").validate().resolved()
    quantum = build_student(cfg, torch.zeros(4, 1, 28, 28), seed=0, shot_seed=0)
    assert isinstance(quantum, AngleStudent)
    # conv 1->10 (260) + conv 10->20 (5020) + FC 320->50 (16050) + FC 50->3 (153); the notebooks
    # print 21493, which counts two layers they define and never use (Linear 3->1 and 1->3).
    assert quantum.n_params == 21483 == 21493 - (3 + 1) - (3 + 3)
    assert quantum.weights.numel() == 0  # no trainable gate
    control_cfg = TrialConfig(student="cnn-classical", teacher="none").validate().resolved()
    control = build_student(control_cfg, torch.zeros(1), seed=0, shot_seed=0)
    assert isinstance(control, ClassicalControl) and control.backend is None
    assert control.n_params == 21483 + 3 * 8 + 8
    x = torch.rand(6, 1, 28, 28)
    for model in (quantum, control):
        model.eval()
        p = model.probabilities(x)
        assert p.shape == (6, 8) and torch.allclose(p.sum(1), torch.ones(6, dtype=p.dtype))
        assert model(x).shape == (6, 16)
    # The same seed builds the same CNN: initialization is a function of the seed alone.
    again = build_student(cfg, torch.zeros(1), seed=0, shot_seed=5)
    assert all(torch.equal(p, q) for p, q in zip(quantum.parameters(), again.parameters(), strict=True))


def test_sigmoid_pair_head_scores_both_halves_and_has_no_scale():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    out = Head("sigmoid-pair", n_classes=3)(p)
    z = torch.sigmoid(p)
    assert torch.equal(out, torch.cat([z, 1 - z], 1))
    assert out.argmax(1).item() == 0  # the argmax runs over all 2 * 2**Q scores
    assert list(Head("sigmoid-pair", 3).parameters()) == [] and math.isnan(Head("sigmoid-pair", 3).scale)
    assert torch.allclose(Head("softmax-freqs", 3)(p), torch.softmax(p, 1))


# ------------------------------------------------------------------ data
def _split(labels, seed=0):
    labels = np.asarray(labels)
    images = torch.as_tensor(np.random.default_rng(seed).random((len(labels), 1, 28, 28)), dtype=torch.float32)
    return Split(images, torch.as_tensor(labels), np.arange(len(labels)) * 3 + 7)


def test_first_selection_is_the_split_filtered_in_order():
    labels = np.random.default_rng(4).integers(0, 3, size=90)
    split = _split(labels)
    for seed in (0, 1, 99):
        got = per_class_sample(split, 5, seed, selection="first")
        want = np.sort(np.concatenate([np.flatnonzero(labels == c)[:5] for c in range(3)]))
        assert np.array_equal(got.index, split.index[want])
    random_draws = {tuple(per_class_sample(split, 5, s).index) for s in (0, 1, 2)}
    assert len(random_draws) == 3  # random selection does move with the seed


def test_first_n_from_real_idx_files_and_pixels_unnormalized(tmp_path):
    data._raw.cache_clear()
    xtr, ytr, xte, yte = write_idx_dataset(tmp_path, "MNIST", 12, 8, seed=5)
    ds = load_dataset("mnist", (0, 1, 2, 3, 4, 5), str(tmp_path), download=False, normalize=False)
    train, test = student_splits(ds, 4, 3, seed=123, selection="first")
    for split, labels, k in ((train, ytr, 4), (test, yte, 3)):
        want = np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(6)]))
        assert np.array_equal(split.index, want)
    first = train.index[0]
    assert torch.allclose(train.images[0, 0], torch.as_tensor(xtr[first] / 255.0, dtype=torch.float32))
    assert not ds.normalized and ds.with_normalization(True).normalized
    data._raw.cache_clear()


# ------------------------------------------------------------------ the protocol
def test_reported_epoch_rules():
    epochs = [{"epoch": e, "test_acc": t, "val_acc": v} for e, t, v in [(1, 0.5, 0.9), (2, 0.8, 0.7), (3, 0.8, 0.6)]]
    assert reported_epoch(epochs, "last")["epoch"] == 3
    assert reported_epoch(epochs, "best_test")["epoch"] == 2  # the first of equal bests
    assert reported_epoch(epochs, "best_val")["epoch"] == 1


def test_resolved_form_decides_hash_and_columns():
    # layers mean nothing for the paper's one-layer circuit: same experiment, same hash, same column
    a, b = TrialConfig(ansatz="h-ry", layers=2), TrialConfig(ansatz="h-ry", layers=5)
    assert a.config_hash() == b.config_hash() and config_columns(a)["layers"] == 1
    assert TrialConfig(ansatz="hea", layers=2).config_hash() != TrialConfig(ansatz="hea", layers=5).config_hash()
    # a default given explicitly is the same experiment as the default left out
    assert TrialConfig(head="linear", head_scale=10.0, reduction="fc").config_hash() == TrialConfig().config_hash()
    # a classical control runs no circuit: backend and shots are moot
    c1 = TrialConfig(student="cnn-classical", backend="aer", shots=5000)
    c2 = TrialConfig(student="cnn-classical", backend="statevector")
    assert c1.config_hash() == c2.config_hash()
    cols = config_columns(c1)
    assert (cols["backend"], cols["shots"], cols["reduction"], cols["head"]) == ("", 0, "", "sigmoid-pair")
    assert config_columns(TrialConfig(student="cnn-angle"))["ansatz"] == "h-angle"
    # every field the protocol adds is a column and changes the hash
    base = TrialConfig(student="cnn-angle", teacher="none")
    for change in ({"selection": "first"}, {"normalize": False}, {"report_epoch": "best_test"},
                   {"shift_rule": "pi4-unnormalized"}, {"head": "softmax-freqs"}):  # fmt: skip
        other = TrialConfig(**{**base.to_dict(), **change, "teacher_settings": base.teacher_settings})
        assert other.config_hash() != base.config_hash(), change
        assert all(config_columns(other)[k] == v for k, v in change.items())


def test_selection_on_the_test_split_is_marked_in_the_row():
    assert config_columns(TrialConfig(report_epoch="best_test"))["selects_on_test"]
    assert not config_columns(TrialConfig())["selects_on_test"]
    kept_best = TrialConfig(teacher_settings=TeacherSettings(recipe="paper-code", keep="best_test"))
    assert config_columns(kept_best)["selects_on_test"]  # the teacher's weights were chosen on the test split
    assert not config_columns(TrialConfig(teacher_settings=TeacherSettings(recipe="paper-code")))["selects_on_test"]


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"student": "cnn-angle", "reduction": "pca"}, "reduction"),
        ({"student": "cnn-angle", "ansatz": "hea"}, "ansatz"),
        ({"student": "transformer"}, "student"),
        ({"report_epoch": "best_val"}, "report_epoch"),
        ({"report_epoch": "best"}, "report_epoch"),
        ({"shift_rule": "pi4-unnormalized", "backend": "statevector"}, "shift_rule"),
        ({"student": "cnn-classical", "noise": "depolarizing:0.01"}, "noise"),
        ({"teacher": "none", "kd_defect": "teacher-ce"}, "kd_defect"),
        ({"selection": "last"}, "selection"),
        ({"teacher_settings": TeacherSettings(recipe="notebook")}, "teacher_recipe"),
        ({"teacher_settings": TeacherSettings(keep="best")}, "teacher_keep"),
    ],
)
def test_protocol_fields_are_validated_by_name(changes, field):
    with pytest.raises(ConfigError) as info:
        TrialConfig(**changes).validate()
    assert info.value.field == field and "\n" not in str(info.value)


def _small(tmp_path, **kw):
    base = dict(dataset="digits", classes="0-3", student="cnn-angle", backend="statevector", epochs=3,
                batch_size=4, samples_per_class=12, test_samples_per_class=10, lr=0.01, kd_form="additive",
                cache_dir=str(tmp_path / "cache"),
                teacher_settings=TeacherSettings(recipe="paper-code", epochs=2))  # fmt: skip
    return TrialConfig(**{**base, **kw})


def test_teacher_ce_defect_trains_exactly_as_the_baseline(tmp_path):
    """Both LeNet -> 4-qubit notebooks added CE(teacher logits, labels): with the same seed the
    run is the baseline, epoch for epoch; a correct distillation term is not."""
    base = run_trial(_small(tmp_path, teacher="none"))
    defect = run_trial(_small(tmp_path, teacher="lenet", kd_defect="teacher-ce"))
    real = run_trial(_small(tmp_path, teacher="lenet"))
    for key in ("test_acc", "train_ce", "train_acc"):
        assert [e[key] for e in defect.epochs] == [e[key] for e in base.epochs], key
    assert defect.epochs[0]["train_loss"] > base.epochs[0]["train_loss"]  # the constant is there
    assert [e["train_ce"] for e in real.epochs] != [e["train_ce"] for e in base.epochs]
    assert defect.row["kd_defect"] == "teacher-ce" and real.row["kd_defect"] == "none"


def test_best_test_row_reports_its_epoch_and_the_last(tmp_path):
    res = run_trial(_small(tmp_path, teacher="none", report_epoch="best_test", epochs=4))
    accs = [e["test_acc"] for e in res.epochs]
    assert res.row["test_acc"] == max(accs) and res.row["last_test_acc"] == accs[-1]
    assert res.row["reported_epoch"] == 1 + accs.index(max(accs))
    assert res.row["selects_on_test"] and res.row["report_epoch"] == "best_test"


def test_cnn_angle_trial_on_aer_with_the_notebooks_protocol(tmp_path):
    data._raw.cache_clear()
    write_idx_dataset(tmp_path / "data", "MNIST", 10, 6, seed=2)
    cfg = TrialConfig(dataset="mnist", classes="0-5", teacher="none", student="cnn-angle", backend="aer", shots=200,
                      shift_rule="pi4-unnormalized", selection="first", normalize=False, report_epoch="best_test",
                      batch_size=1, epochs=1, samples_per_class=3, test_samples_per_class=2,
                      data_root=str(tmp_path / "data"), download=False, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    row = run_trial(cfg).row
    # batch 1: 18 training steps of 1 + 2 * 3 circuits, then 12 test circuits
    assert row["circuit_executions"] == 18 * 7 + 12 and row["shots_total"] == 200 * row["circuit_executions"]
    assert (row["student"], row["selection"], row["normalize"], row["shift_rule"]) == (
        "cnn-angle", "first", False, "pi4-unnormalized")  # fmt: skip
    assert row["n_params"] == 21483 and row["ansatz"] == "h-angle" and row["reduction"] == ""
    data._raw.cache_clear()


# ------------------------------------------------------------------ teachers
def test_classic_lenet_and_alexnet_parameter_counts():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(make_model("lenet", 6, "paper-code")) == 44086
    assert count(make_model("lenet", 8, "paper-code")) == 44256
    assert count(make_model("lenet", 6)) != 44086  # our default LeNet is another model
    lenet = make_model("lenet", 6, "paper-code")
    assert [type(m).__name__ for m in lenet.features] == ["Conv2d", "Tanh", "AvgPool2d", "Conv2d", "Tanh", "AvgPool2d"]
    assert lenet(torch.zeros(2, 1, 28, 28)).shape == (2, 6)
    ens = make_model("ensemble", 6, "paper-code").eval()  # one model, the members' logits averaged
    with torch.no_grad():
        x = torch.rand(3, 1, 28, 28)
        assert torch.allclose(ens(x), (ens.members[0](x) + ens.members[1](x)) / 2)


def test_paper_code_teacher_scores_every_epoch_on_pixels_and_keeps_the_last(tmp_path):
    ds = load_dataset("digits", (0, 1, 2))
    settings = TeacherSettings(recipe="paper-code", epochs=3)
    lines = []
    t = get_teacher(ds, "lenet", settings, tmp_path, progress=lines.append)
    assert [line.split(" loss")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" test acc " in line and "ETA" in line for line in lines)
    assert t.key["normalization"].startswith("none") and t.key["recipe_name"] == "paper-code"
    meta = json.loads((t.path / "meta.json").read_text())
    accs = list(meta["epoch_test_accs"])
    assert len(accs) == 3 and t.best_test_acc == max(accs) and t.best_epoch == 1 + accs.index(max(accs))
    assert t.test_acc == pytest.approx(accs[-1])  # the weights distilled from are the last epoch's
    default = get_teacher(ds, "lenet", TeacherSettings(epochs=3), tmp_path)
    assert default.key_hash != t.key_hash and default.path != t.path and math.isnan(default.best_test_acc)
    again = get_teacher(ds, "lenet", settings, tmp_path)
    assert again.cached and again.best_test_acc == t.best_test_acc and again.n_params == t.n_params == 44086 - 3 * 85
    row = t.row(ds, "0-2")
    assert (row["recipe"], row["keep"], row["best_epoch"], row["n_params"]) == ("paper-code", "last", t.best_epoch,
                                                                              t.n_params)  # fmt: skip


def test_paper_code_ensemble_is_one_phase_1_job():
    from sweep.grid import Grid

    paper = TrialConfig(teacher="ensemble", teacher_settings=TeacherSettings(recipe="paper-code"))
    ours = TrialConfig(teacher="ensemble")
    assert [j.arch for j in Grid([paper]).teacher_jobs()] == ["ensemble"]
    assert [j.arch for j in Grid([ours]).teacher_jobs()] == ["alexnet", "lenet", "ensemble"]


# ------------------------------------------------------------------ tables
def _row(seed, teacher, acc, report_epoch, **kw):
    return {"trial_id": f"{teacher}-{report_epoch}-{seed}", "config_hash": f"{teacher}-{report_epoch}-{seed}",
            "dataset": "mnist", "classes": "0-5", "n_classes": 6, "teacher": teacher, "student": "cnn-angle",
            "qubits": 3, "seed": seed, "temperature": 3.0 if teacher != "none" else math.nan,
            "lam": 0.9 if teacher != "none" else math.nan, "kd_form": "additive" if teacher != "none" else "",
            "kd_defect": "", "teacher_recipe": "paper-code" if teacher != "none" else "",
            "backend": "aer", "shots": 5000, "report_epoch": report_epoch, "selection": "first",
            "test_acc": acc, "status": "ok", "started_at": f"2026-01-01T00:00:{seed:02d}", **kw}  # fmt: skip


def test_best_test_rows_are_labelled_and_never_paired_with_last_epoch_rows(tmp_path):
    rows = [_row(s, "none", 0.90 + s / 100, "last") for s in range(3)]
    rows += [_row(s, "lenet", 0.91 + s / 100, "last") for s in range(3)]
    rows += [_row(s, "none", 0.95, "best_test") for s in range(3)]
    rows += [_row(s, "lenet", 0.97, "best_test") for s in range(2)]
    rows += [_row(2, "lenet", 0.10, "best_test")]  # a run that never learned: counted, not dropped
    append_rows(tmp_path / TRIALS, rows)
    t = table_rows(tmp_path)
    distill = t[t["category"] == "Distillation"].set_index("report_epoch")
    # paired within its own protocol only: +1.00 against its own baseline, never against a last-epoch row
    assert distill.loc["last", "diff"] == pytest.approx(1.0) and distill.loc["last", "n_pairs"] == 3
    assert distill.loc["best_test", "n_pairs"] == 3
    assert distill.loc["best_test", "baseline_mean"] == pytest.approx(95.0)
    assert distill.loc["best_test", "n_collapsed"] == 1 and distill.loc["last", "n_collapsed"] == 0
    assert distill.loc["best_test", "median"] == pytest.approx(97.0)
    assert distill.loc["best_test", "min"] == pytest.approx(10.0)
    md = (write_tables(tmp_path)["markdown"]).read_text()
    labelled = [line for line in md.splitlines() if line.startswith("## ") and "ON THE TEST SPLIT" in line]
    assert len(labelled) == 1 and "report_epoch=best_test" in labelled[0]
    assert "SELECTION ON THE TEST SPLIT" in md and "Never learned" in md
