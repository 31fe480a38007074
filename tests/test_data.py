"""Datasets: tiny IDX files read through torchvision, the digits split, per-class samples.

Nothing here downloads or reads the real MNIST: the IDX files are written by
:func:`write_idx_dataset` into a temporary folder.
"""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import workers.data as data
from workers.data import (
    DataError,
    Dataset,
    Split,
    load_dataset,
    per_class_sample,
    student_splits,
    validation_split,
)
from workers.kinds import DATASETS

RAW_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def _idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def _make_split(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 2 + 2 * int(c)  # a bright bar at a class-specific row: learnable
        images[i, row : row + 2, 4:24] = 200 + rng.integers(0, 56)
    return images, labels


def write_idx_dataset(root, folder, n_train_per_class, n_test_per_class, seed):
    """Write valid raw IDX files of a tiny 10-class set under ``root/<folder>/raw``.

    Returns the raw arrays ``(train_images, train_labels, test_images, test_labels)``
    (uint8, as written) so that tests can check what torchvision reads back.
    """
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xtr, ytr = _make_split(rng, n_train_per_class)
    xte, yte = _make_split(rng, n_test_per_class)
    _idx_images(raw / "train-images-idx3-ubyte", xtr)
    _idx_labels(raw / "train-labels-idx1-ubyte", ytr)
    _idx_images(raw / "t10k-images-idx3-ubyte", xte)
    _idx_labels(raw / "t10k-labels-idx1-ubyte", yte)
    return xtr, ytr, xte, yte


@pytest.fixture(autouse=True)
def _fresh_raw_cache():
    data._raw.cache_clear()
    yield
    data._raw.cache_clear()


# --------------------------------------------------------------- IDX datasets
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_load_idx_dataset(tmp_path, name, folder):
    xtr, ytr, xte, yte = write_idx_dataset(tmp_path, folder, 6, 4, seed=1)
    classes = (2, 5, 7)
    ds = load_dataset(name, classes, data_root=str(tmp_path), download=False)
    assert ds.name == name and ds.classes == classes

    mean = (xtr.astype(np.float32) / 255.0).mean()
    std = (xtr.astype(np.float32) / 255.0).std()
    assert abs(mean) > 0.05  # the data is not already centred: the checks below mean something
    for split, x, y, n_per in ((ds.train, xtr, ytr, 6), (ds.test, xte, yte, 4)):
        n = n_per * len(classes)
        assert split.images.shape == (n, 1, 28, 28)
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert len(split) == n and split.index.shape == (n,)
        # the index is each sample's position in its source split, in order
        assert np.array_equal(split.index, np.flatnonzero(np.isin(y, classes)))
        assert set(y[split.index].tolist()) == set(classes)
        # labels remapped to 0..C-1 in sorted class order
        assert np.array_equal(split.labels.numpy(), np.searchsorted(classes, y[split.index]))
        assert sorted(set(split.labels.tolist())) == [0, 1, 2]
        # normalized with the training split's mean and std (test split too)
        expected = (x[split.index].astype(np.float32) / 255.0 - mean) / std
        np.testing.assert_allclose(split.images[:, 0].numpy(), expected, atol=1e-5)


def test_all_classes_normalized_to_zero_mean_unit_std(tmp_path):
    write_idx_dataset(tmp_path, "MNIST", 5, 3, seed=2)
    ds = load_dataset("mnist", tuple(range(10)), data_root=str(tmp_path), download=False)
    assert len(ds.train) == 50 and len(ds.test) == 30
    assert abs(float(ds.train.images.mean())) < 1e-4
    assert abs(float(ds.train.images.std(unbiased=False)) - 1.0) < 1e-3


def test_two_class_remap(tmp_path):
    """Class i of the remap is the i-th class of the (sorted) tuple the caller gives."""
    _, ytr, _, _ = write_idx_dataset(tmp_path, "MNIST", 3, 2, seed=3)
    ds = load_dataset("mnist", (1, 4), data_root=str(tmp_path), download=False)
    assert np.array_equal(ds.train.labels.numpy(), (ytr[ds.train.index] == 4).astype(np.int64))


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_missing_files_offline_raise_one_line_data_error(tmp_path, name, folder):
    with pytest.raises(DataError) as err:
        load_dataset(name, (0, 1), data_root=str(tmp_path), download=False)
    msg = str(err.value)
    assert "\n" not in msg
    for f in RAW_NAMES:
        assert f in msg
    assert str(tmp_path / folder / "raw") in msg


def test_some_files_missing_names_only_those(tmp_path):
    write_idx_dataset(tmp_path, "MNIST", 2, 2, seed=0)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", (0, 1), data_root=str(tmp_path), download=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-images-idx3-ubyte" not in msg and "train-labels-idx1-ubyte" not in msg
    assert str(raw) in msg


def test_fashionmnist_files_are_not_read_from_the_mnist_folder(tmp_path):
    write_idx_dataset(tmp_path, "MNIST", 2, 2, seed=0)
    with pytest.raises(DataError, match="FashionMNIST"):
        load_dataset("fashionmnist", (0, 1), data_root=str(tmp_path), download=False)


def test_unknown_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar", (0, 1), data_root=str(tmp_path), download=False)


# ------------------------------------------------------------ per-class draws
def _split(labels, offset):
    """A Split whose images identify each sample (value = offset + row) and whose
    index is a source position (2 * row + offset), so provenance can be checked."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    values = torch.arange(n, dtype=torch.float32) + offset
    images = values.view(n, 1, 1, 1).expand(n, 1, 28, 28).clone()
    return Split(images, torch.as_tensor(labels), np.arange(n) * 2 + offset)


def _dataset(train_counts, test_counts, classes=(3, 7, 9)):
    def labels(counts):
        return np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))

    return Dataset("toy", classes, _split(labels(train_counts), 0), _split(labels(test_counts), 100000))


def _counts(split, n_classes):
    return np.bincount(split.labels.numpy(), minlength=n_classes)


def test_per_class_sample_counts_sorted_and_seeded():
    ds = _dataset([20, 30, 25], [10, 10, 10])
    a = per_class_sample(ds.train, 7, seed=5)
    assert np.array_equal(_counts(a, 3), [7, 7, 7])
    assert np.all(np.diff(a.index) > 0)  # sorted rows, no repeats
    # rows are really the split's rows: images, labels and index travel together
    rows = (a.index // 2).astype(int)
    assert np.array_equal(a.labels.numpy(), ds.train.labels.numpy()[rows])
    assert torch.equal(a.images, ds.train.images[torch.as_tensor(rows)])
    b = per_class_sample(ds.train, 7, seed=5)
    assert np.array_equal(a.index, b.index) and torch.equal(a.images, b.images)
    c = per_class_sample(ds.train, 7, seed=6)
    assert not np.array_equal(a.index, c.index)


def test_student_splits_counts_provenance_and_seed():
    ds = _dataset([20, 30, 25], [12, 15, 11])
    train, test = student_splits(ds, 8, 5, seed=0)
    assert np.array_equal(_counts(train, 3), [8, 8, 8])
    assert np.array_equal(_counts(test, 3), [5, 5, 5])
    assert np.all(np.diff(train.index) > 0) and np.all(np.diff(test.index) > 0)
    # train samples come from the training split, test samples from the test split
    assert np.isin(train.index, ds.train.index).all()
    assert np.isin(test.index, ds.test.index).all()
    assert float(train.images.max()) < 100000 <= float(test.images.min())
    train2, test2 = student_splits(ds, 8, 5, seed=0)
    assert np.array_equal(train.index, train2.index) and np.array_equal(test.index, test2.index)
    train3, test3 = student_splits(ds, 8, 5, seed=1)
    assert not np.array_equal(train.index, train3.index)
    assert not np.array_equal(test.index, test3.index)


def test_too_few_train_samples_names_option_and_original_class():
    ds = _dataset([20, 3], [10, 10], classes=(3, 7))
    with pytest.raises(DataError) as err:
        student_splits(ds, 5, 2, seed=0)
    msg = str(err.value)
    assert msg.startswith("samples_per_class:")
    assert "class 7 " in msg and "class 1 " not in msg
    assert "\n" not in msg


def test_too_few_test_samples_names_test_option():
    ds = _dataset([20, 20], [10, 4], classes=(3, 7))
    with pytest.raises(DataError) as err:
        student_splits(ds, 5, 6, seed=0)
    msg = str(err.value)
    assert msg.startswith("test_samples_per_class:")
    assert "class 7 " in msg


def test_take_available_takes_what_there_is():
    ds = _dataset([20, 3], [10, 4], classes=(3, 7))
    train, test = student_splits(ds, 5, 6, seed=0, take_available=True)
    assert np.array_equal(_counts(train, 2), [5, 3])
    assert np.array_equal(_counts(test, 2), [6, 4])


def test_per_class_sample_without_classes_names_remapped_label():
    ds = _dataset([20, 3], [10, 10], classes=(3, 7))
    with pytest.raises(DataError, match=r"^samples_per_class: class 1 "):
        per_class_sample(ds.train, 5, seed=0)


# -------------------------------------------------------------------- digits
def test_digits_split_counts_shape_and_stability():
    from sklearn.datasets import load_digits

    n = np.bincount(load_digits().target, minlength=10)
    classes = (0, 1, 2, 3, 4, 5)
    ds = load_dataset("digits", classes)
    assert ds.train.images.shape[1:] == (1, 28, 28)
    assert ds.test.images.shape[1:] == (1, 28, 28)
    assert ds.train.images.dtype == torch.float32
    assert np.array_equal(_counts(ds.train, 6), (n[:6] + 1) // 2)
    assert np.array_equal(_counts(ds.test, 6), n[:6] // 2)
    assert len(ds.train) + len(ds.test) == n[:6].sum()
    assert abs(float(ds.train.images.mean())) < 0.2  # normalized (raw pixels are in [0, 1])
    data._raw.cache_clear()
    again = load_dataset("digits", classes)
    assert np.array_equal(ds.train.index, again.train.index)
    assert np.array_equal(ds.test.index, again.test.index)
    assert torch.equal(ds.train.images, again.train.images)
    assert torch.equal(ds.test.labels, again.test.labels)


def test_digits_train_and_test_are_disjoint_images():
    """sklearn's 1797 digits are all distinct, so distinct resized images mean the
    two splits partition the set: no image in both, none left out."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert len({r.tobytes() for r in bunch.images.reshape(len(bunch.target), -1)}) == len(bunch.target)
    xtr, ytr, xte, yte = data._raw_digits()
    train_keys = {r.tobytes() for r in xtr}
    test_keys = {r.tobytes() for r in xte}
    assert len(train_keys) == len(xtr) and len(test_keys) == len(xte)
    assert not train_keys & test_keys
    assert len(xtr) + len(xte) == len(bunch.target)
    assert np.array_equal(np.bincount(ytr, minlength=10), (np.bincount(bunch.target) + 1) // 2)
    assert np.array_equal(np.bincount(yte, minlength=10), np.bincount(bunch.target) // 2)
    assert xtr.min() >= 0 and xtr.max() <= 1 and xtr.shape[1:] == (28, 28)


def test_digits_read_without_sklearn_are_load_digits_and_fall_back_to_it(monkeypatch):
    """The bundled CSV read directly gives ``load_digits``'s arrays exactly, without
    importing scikit-learn; with the file missing, ``load_digits`` itself is used."""
    code = ("import sys; from workers.data import digits_arrays; x, y = digits_arrays(); "
            "print(x.shape, y.shape, 'sklearn' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(1797,", "8,", "8)", "(1797,)", "False"], out.stdout
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = data.digits_arrays()
    assert np.array_equal(images, bunch.images) and images.dtype == bunch.images.dtype
    assert np.array_equal(labels, bunch.target) and labels.dtype == np.int64
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    fallback_images, fallback_labels = data.digits_arrays()
    assert np.array_equal(fallback_images, bunch.images) and np.array_equal(fallback_labels, bunch.target)


def test_digits_default_samples_fit_every_class():
    per = DATASETS["digits"].samples_per_class
    ds = load_dataset("digits", tuple(range(10)))
    train, test = student_splits(ds, per, per, seed=0)
    assert np.array_equal(_counts(train, 10), [per] * 10)
    assert np.array_equal(_counts(test, 10), [per] * 10)
    assert _counts(ds.test, 10).min() >= per


def test_validation_split_is_disjoint_from_train_and_test_and_seeded():
    ds = load_dataset("digits", (0, 1, 2))
    train, test = student_splits(ds, 20, 10, seed=4)
    val = validation_split(ds, train, 15, seed=4)
    assert len(val) == 45 and np.bincount(val.labels.numpy()).tolist() == [15, 15, 15]
    assert not set(val.index) & set(train.index)
    assert set(val.index) <= set(ds.train.index)  # from the training split, never the test split
    assert np.array_equal(validation_split(ds, train, 15, seed=4).index, val.index)
    assert not np.array_equal(validation_split(ds, train, 15, seed=5).index, val.index)
    with pytest.raises(DataError, match="val_samples_per_class: class"):
        validation_split(ds, train, 500, seed=4)
