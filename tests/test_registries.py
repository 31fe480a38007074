"""The registries of datasets, teachers and students: a new kind is a few lines; CIFAR10 from
its python batches; the QNN teacher; the classical student sized to the quantum one."""

import hashlib
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import workers.data as data
import workers.student as student
import workers.teachers.logits as logits
import workers.teachers.models as models
from workers.config import TrialConfig
from workers.data import DataError, load_dataset, register_dataset
from workers.errors import ConfigError
from workers.kinds import DATASETS, STUDENT_KINDS, TEACHERS, DatasetKind, StudentKind, TeacherKind
from workers.teacher_settings import TeacherSettings
from workers.trial import run_trial


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    data._raw.cache_clear()
    yield
    data._raw.cache_clear()


#: Teacher settings under which a small teacher learns the tiny sets (enough steps).
LEARNS = TeacherSettings(epochs=15, lr=0.01)


def small(tmp_path, **kw):
    base = dict(dataset="digits", classes="0-3", backend="statevector", shots=0, epochs=2,
                samples_per_class=12, test_samples_per_class=12, batch_size=16,
                cache_dir=str(tmp_path / "cache"), teacher_settings=TeacherSettings(epochs=2))  # fmt: skip
    base.update(kw)
    return TrialConfig(**base)


# ---------------------------------------------------------------------------- a kind in a few lines


def _stripes(root: str, download: bool):
    """A 10-class set of 2 x 12 x 12 images, a class's stripe bright in channel c % 2."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.repeat(np.arange(10), n)
        x = rng.uniform(0, 0.2, size=(len(y), 2, 12, 12)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, c % 2, c, :] = 1.0
        return x, y

    return (*split(20), *split(15))


def test_a_dataset_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "LOADERS", dict(data.LOADERS))
    monkeypatch.setitem(DATASETS, "stripes", DATASETS["digits"])  # restored after the test
    register_dataset(DatasetKind("stripes", "Stripes", (2, 12, 12), 8), _stripes)
    ds = load_dataset("stripes", (0, 1, 2, 3))
    assert tuple(ds.train.images.shape[1:]) == (2, 12, 12) and len(ds.train) == 80 and len(ds.test) == 60
    cfg = small(tmp_path, dataset="stripes", teacher="lenet", teacher_settings=LEARNS)  # LeNet for 2 x 12 x 12
    res = run_trial(cfg)
    assert res.row["status"] == "ok" and res.row["n_train"] == 4 * 12 and res.row["dataset"] == "stripes"
    assert res.teacher["dataset"] == "stripes" and res.teacher["test_acc"] > 0.5
    # fc on 2 x 12 x 12 pixels to 8 features, the circuit's 3 angles and the head's scale
    assert res.row["n_params"] == 288 * 8 + 8 + 3 + 1
    # its default samples per class come from the registration
    assert TrialConfig(dataset="stripes").resolved().samples_per_class == 8
    assert "stripes" in str(pytest.raises(ConfigError, TrialConfig(dataset="stripez").validate).value)


class _Linear(nn.Module):
    def __init__(self, n_classes, shape):
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), n_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_a_teacher_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setitem(TEACHERS, "linear", TeacherKind("linear", "Linear probe"))
    monkeypatch.setitem(models.MODELS["default"], "linear", _Linear)
    monkeypatch.setattr(models, "ARCHS", (*models.ARCHS, "linear"))
    res = run_trial(small(tmp_path, teacher="linear", teacher_settings=LEARNS))
    assert res.row["status"] == "ok" and res.teacher["teacher"] == "linear"
    assert res.teacher["n_params"] == 28 * 28 * 4 + 4 and res.teacher["test_acc"] > 0.5
    again = run_trial(small(tmp_path, teacher="linear", seed=1, teacher_settings=LEARNS))
    assert again.row["teacher_cached"] and again.row["teacher_key"] == res.row["teacher_key"]


def test_an_ensemble_is_a_table_of_members(tmp_path, monkeypatch):
    monkeypatch.setitem(TEACHERS, "linear", TeacherKind("linear", "Linear probe"))
    monkeypatch.setitem(TEACHERS, "duo", TeacherKind("duo", "LeNet + probe", members=("lenet", "linear")))
    monkeypatch.setitem(models.MODELS["default"], "linear", _Linear)
    monkeypatch.setattr(models, "ARCHS", (*models.ARCHS, "linear", "duo"))
    ds = load_dataset("digits", (0, 1, 2, 3))
    ts = TeacherSettings(epochs=2)
    duo = logits.get_teacher(ds, "duo", ts, tmp_path)
    parts = [logits.get_teacher(ds, m, ts, tmp_path) for m in ("lenet", "linear")]
    assert all(p.cached for p in parts)  # trained as the duo's members, then found in the cache
    np.testing.assert_allclose(duo.test_logits, logits.ensemble_logits([p.test_logits for p in parts]))
    assert duo.n_params == sum(p.n_params for p in parts)
    assert set(duo.key["members"]) == {"lenet", "linear"}


class _Constant(student._Student):
    """Uniform probabilities over 2**Q outcomes and a trainable bias: a student in a few lines."""

    def __init__(self, cfg):
        super().__init__()
        self.n_classes = cfg.n_classes
        self.bias = nn.Parameter(torch.zeros(2**cfg.qubits, dtype=torch.float64))
        self.head = student.Head("linear", cfg.n_classes)

    def probabilities(self, images):
        return torch.softmax(self.bias.expand(len(images), -1), dim=1)


def test_a_student_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setitem(STUDENT_KINDS, "constant", StudentKind("constant", False, "linear", False))
    monkeypatch.setitem(student.BUILDERS, "constant", lambda cfg, images, seed, shot_seed: _Constant(cfg))
    res = run_trial(small(tmp_path, student="constant", teacher="none"))
    assert res.row["status"] == "ok" and res.row["student"] == "constant"
    assert res.row["n_params"] == 8 + 1 and res.row["executor"] == "" and res.row["shots"] == 0


# ---------------------------------------------------------------------------- CIFAR10


def _batch(rng, labels):
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(labels):  # a class-specific bright row in the red channel: learnable
        images[i, 0, 3 * int(c) : 3 * int(c) + 2, :] = 255
    return {"batch_label": b"generated", "labels": [int(c) for c in labels],
            "data": images.reshape(len(labels), 3072), "filenames": [b"x.png"] * len(labels)}  # fmt: skip


def write_cifar10(root, per_class_per_batch=3, test_per_class=4, seed=0):
    """CIFAR10's python batches (five training batches, the test batch and batches.meta) under
    ``root/cifar-10-batches-py``, as torchvision reads them: pickled dicts of uint8 rows of
    3072 values (1024 red, 1024 green, 1024 blue, row-major) and a list of labels. Returns
    {file: md5} of what was written, and the images (N x 3 x 32 x 32) of train and test."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = test_per_class if name == "test_batch" else per_class_per_batch
        batches[name] = _batch(rng, rng.permutation(np.repeat(np.arange(10), n)))
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    written = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in folder.iterdir()}

    def images(batches):
        return np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32), np.concatenate(
            [b["labels"] for b in batches]
        )

    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return written, images(train), images([batches["test_batch"]])


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """Generated CIFAR10 files, with torchvision told their checksums (the published MD5s
    are those of the real files)."""
    from torchvision.datasets import CIFAR10

    md5, train, test = write_cifar10(tmp_path / "data")
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return tmp_path / "data", train, test


def test_cifar10_reads_the_python_batches_in_colour_and_as_luminance(cifar):
    root, (xtr, ytr), (xte, yte) = cifar
    rgb = load_dataset("cifar10-rgb", tuple(range(10)), str(root), download=False, normalize=False)
    gray = load_dataset("cifar10", (0, 1, 2), str(root), download=False, normalize=False)
    assert tuple(rgb.train.images.shape) == (150, 3, 32, 32) and tuple(rgb.test.images.shape) == (40, 3, 32, 32)
    np.testing.assert_allclose(rgb.train.images.numpy(), xtr / 255.0, atol=1e-6)
    np.testing.assert_array_equal(rgb.test.labels.numpy(), yte)
    rows = np.flatnonzero(np.isin(ytr, (0, 1, 2)))
    luma = np.tensordot(np.array(data.LUMA), xtr[rows] / 255.0, axes=([0], [1]))
    assert tuple(gray.train.images.shape) == (len(rows), 1, 32, 32)
    np.testing.assert_allclose(gray.train.images[:, 0].numpy(), luma, atol=1e-5)
    np.testing.assert_array_equal(gray.train.index, rows)


def test_a_cifar10_trial_builds_its_models_for_32x32(cifar, tmp_path):
    root = cifar[0]
    for dataset in ("cifar10", "cifar10-rgb"):
        cfg = small(tmp_path, dataset=dataset, classes="0-3", data_root=str(root), download=False, teacher="lenet",
                    samples_per_class=10, test_samples_per_class=4)  # fmt: skip
        res = run_trial(cfg)
        assert res.row["status"] == "ok" and res.row["n_train"] == 40 and res.row["n_test"] == 16
        # fc on 3 x 32 x 32 (colour) or 1 x 32 x 32: 2**3 outputs, plus the circuit and the head scale
        pixels = 3072 if dataset == "cifar10-rgb" else 1024
        assert res.row["n_params"] == pixels * 8 + 8 + 3 + 1


def test_cifar10_missing_or_altered_files_are_one_line(tmp_path, cifar):
    root = cifar[0]
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", (0, 1), str(root), download=False)
    assert "data_batch_3" in str(err.value) and "cifar-10-batches-py" in str(err.value)
    assert "\n" not in str(err.value)


def test_cifar10_checks_the_published_checksums(tmp_path):
    write_cifar10(tmp_path)  # real format, but not the real files: torchvision's MD5 check fails
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", (0, 1), str(tmp_path), download=False)
    assert str(err.value).startswith("data_root: CIFAR10 under") and "corrupted" in str(err.value)


# ---------------------------------------------------------------------------- the QNN teacher


@pytest.fixture(scope="module")
def qnn(tmp_path_factory):
    cache = tmp_path_factory.mktemp("qnn-cache")
    ds = load_dataset("digits", (0, 1))  # two classes: an 8-qubit circuit is the costliest teacher here
    return ds, cache, logits.get_teacher(ds, "qnn", LEARNS, cache)


def test_qnn_teacher_is_an_8_qubit_circuit_trained_and_cached(qnn, monkeypatch):
    ds, cache, t = qnn
    assert not t.cached and t.test_acc > 0.5 and np.isfinite(t.test_logits).all()
    # fc 784 -> 256, the encoding and 4 hea layers of 8 angles, the head's scale
    assert t.n_params == 784 * 256 + 256 + 4 * 8 + 1
    assert t.key["model"] == models.MODEL_VERSION["qnn"]
    monkeypatch.setattr(logits, "train_teacher", lambda *a, **k: pytest.fail("a cached teacher was retrained"))
    again = logits.get_teacher(ds, "qnn", LEARNS, cache)
    assert again.cached and again.n_params == t.n_params
    np.testing.assert_array_equal(again.test_logits, t.test_logits)
    # its weights reload into the same circuit: the logits rebuilt from them are the cached ones
    (again.path / "logits.parquet").delete()
    rebuilt = logits.get_teacher(ds, "qnn", LEARNS, cache)
    np.testing.assert_allclose(rebuilt.test_logits, t.test_logits, rtol=1e-5, atol=1e-5)


def test_a_quantum_student_distils_from_the_qnn_teacher(qnn, tmp_path):
    ds, cache, t = qnn
    res = run_trial(small(tmp_path, teacher="qnn", classes="0-1", cache_dir=str(cache), teacher_settings=LEARNS))
    assert res.row["status"] == "ok" and res.row["teacher_cached"] and res.row["teacher_key"] == t.key_hash
    assert res.teacher["n_params"] == t.n_params and res.row["teacher_test_acc"] == pytest.approx(t.test_acc)


def test_qnn_teacher_has_no_paper_code_recipe():
    with pytest.raises(ConfigError, match="teacher_recipe"):
        TrialConfig(teacher="qnn", teacher_settings=TeacherSettings(recipe="paper-code")).validate()


# ---------------------------------------------------------------------------- the classical student


def test_classical_student_is_the_quantum_one_with_a_layer_for_the_circuit(tmp_path):
    images = torch.zeros(20, 1, 28, 28)
    sizes = {}
    for kind in ("amplitude", "classical"):
        cfg = TrialConfig(dataset="mnist", student=kind, qubits=3, backend="statevector", shots=0).validate()
        sizes[kind] = student.build_student(cfg.resolved(), images, 0, 0).n_params
    assert sizes == {"amplitude": 784 * 8 + 8 + 3 + 1, "classical": 784 * 8 + 8 + 8 * 8 + 8 + 1}
    assert abs(sizes["classical"] / sizes["amplitude"] - 1) < 0.10  # matched within 10%
    r = TrialConfig(student="classical", backend="aer", shots=5000).validate().resolved()
    assert (r.backend, r.shots, r.gradient, r.ansatz, r.reduction) == ("", 0, "", "linear-softmax", "fc")
    with pytest.raises(ConfigError, match="ansatz"):
        TrialConfig(student="classical", ansatz="hea").validate()


def test_classical_student_trains_and_distils(tmp_path):
    base = run_trial(small(tmp_path, student="classical", teacher="none"))
    kd = run_trial(small(tmp_path, student="classical", teacher="lenet"))
    for res in (base, kd):
        assert res.row["status"] == "ok" and res.row["circuit_executions"] == 0 and res.row["executor"] == ""
        assert res.row["n_params"] == 784 * 8 + 8 + 8 * 8 + 8 + 1
    assert kd.row["teacher_key"] and not base.row["teacher_key"]
    assert kd.row["train_loss"] != base.row["train_loss"]


def test_tables_name_the_comparisons_and_pair_each_with_its_own_baseline(tmp_path):
    from sweep.tables import table_rows, write_tables

    accs = {("amplitude", "none"): 0.80, ("amplitude", "lenet"): 0.85, ("amplitude", "qnn"): 0.83,
            ("classical", "none"): 0.90, ("classical", "lenet"): 0.91}  # fmt: skip
    sizes = {"amplitude": 6284, "classical": 6353}
    tkeys = {"none": "", "lenet": "t-lenet", "qnn": "t-qnn"}
    rows = []
    for (kind, teacher), acc in accs.items():
        for seed in range(3):
            rows.append(dict(
                trial_id=f"{kind}-{teacher}-{seed}", config_hash=f"{kind}-{teacher}-{seed}", dataset="mnist",
                classes="0-5", n_classes=6, teacher=teacher, qubits=3, seed=seed, student=kind,
                temperature=3.0 if teacher != "none" else math.nan, lam=0.9 if teacher != "none" else math.nan,
                kd_form="hinton" if teacher != "none" else "", test_acc=acc + 0.01 * seed * (teacher != "none"),
                teacher_key=tkeys[teacher], teacher_seed=0 if teacher != "none" else -1, status="ok",
                n_params=sizes[kind], backend="statevector" if kind == "amplitude" else "", reduction="fc",
                ansatz="h-ry" if kind == "amplitude" else "linear-softmax", started_at=f"2026-01-01T00:00:0{seed}",
            ))  # fmt: skip
    folder = tmp_path / "cmp"
    folder.mkdir()
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    pd.DataFrame([dict(teacher_key="t-lenet", teacher="lenet", test_acc=0.995, n_params=61706),
                  dict(teacher_key="t-qnn", teacher="qnn", test_acc=0.97, n_params=200993)]).to_parquet(
        folder / "teachers.parquet")  # fmt: skip
    write_tables(folder)
    csv = table_rows(folder)
    arch = set(csv["architecture"])
    assert {"Teacher: QNN 8 qubit, Student: Quantum, 3 qubit", "Teacher: LeNet, Student: Quantum, 3 qubit",
            "Teacher: LeNet, Student: Classical, 6,353 parameters (3-qubit size)",
            "Quantum, QNN 8 qubit", "Classical, LeNet"} <= arch  # fmt: skip
    kd = csv[csv["category"] == "Distillation"].set_index("architecture")
    c2c = kd.loc["Teacher: LeNet, Student: Classical, 6,353 parameters (3-qubit size)"]
    assert c2c["baseline_mean"] == pytest.approx(90.0) and c2c["diff"] == pytest.approx(2.0)  # its own baseline
    q2q = kd.loc["Teacher: QNN 8 qubit, Student: Quantum, 3 qubit"]
    assert q2q["baseline_mean"] == pytest.approx(80.0) and q2q["diff"] == pytest.approx(4.0)
    teacher = csv[csv["architecture"] == "Quantum, QNN 8 qubit"].iloc[0]
    assert teacher["n_params"] == 200993 and teacher["mean"] == pytest.approx(97.0)
