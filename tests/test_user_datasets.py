"""A dataset from a reference (issue 21.2): ``dataset: PKG.MODULE:CALLABLE`` returns (train_images,
train_labels, test_images, test_labels); the class subset, per-class selection and normalization
apply as for MNIST, the models take the arrays' shape, rows and tables name it by the reference,
and bad arrays are one line naming ``dataset`` (or ``classes``), exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from usercode import user_module

import workers.data as data
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.kinds import user_dataset
from workers.teacher_settings import TeacherSettings

MODULE = "qkd_user_datasets"

SOURCE = '''
import numpy as np
import torch


def _split(n, seed):
    """Four classes of 3 x 12 x 12 images: class c is bright in row 2c of channel c % 3."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n)
    x = rng.uniform(0, 0.2, size=(len(y), 3, 12, 12)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, c % 3, 2 * c, :] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def stripes():
    return (*_split(20, 0), *_split(15, 1))


def gray():
    """N x H x W images (one channel), numpy arrays."""
    xtr, ytr, xte, yte = stripes()
    return xtr[:, 0].numpy(), ytr.numpy(), xte[:, 0].numpy(), yte.numpy()


def short_labels():
    xtr, ytr, xte, yte = stripes()
    return xtr, ytr[:-1], xte, yte


def other_shape():
    xtr, ytr, xte, yte = stripes()
    return xtr, ytr, xte[:, :, :10], yte


def float_labels():
    xtr, ytr, xte, yte = stripes()
    return xtr, ytr.float(), xte, yte


def int_images():
    xtr, ytr, xte, yte = stripes()
    return (xtr * 255).to(torch.uint8), ytr, xte, yte


def three():
    return stripes()[:3]


def raises():
    raise OSError("no such file: data.npz")


def no_test_threes():
    xtr, ytr, xte, yte = stripes()
    keep = yte != 3
    return xtr, ytr, xte[keep], yte[keep]
'''


@pytest.fixture
def datasets_module(tmp_path, monkeypatch):
    with user_module(tmp_path, monkeypatch, MODULE, SOURCE, (user_dataset, data._raw)):
        yield MODULE


def small(tmp_path, **kw) -> TrialConfig:
    base = dict(dataset=f"{MODULE}:stripes", classes="0-3", backend="statevector", qubits=2, epochs=2,
                batch_size=8, lr=0.02, cache_dir=str(tmp_path / "cache"),
                teacher_settings=TeacherSettings(epochs=15, lr=0.01))  # fmt: skip
    return TrialConfig(**{**base, **kw})


def test_a_reference_dataset_runs_as_mnist_does(tmp_path, datasets_module):
    from workers.trial import run_trial

    ref = f"{MODULE}:stripes"
    cfg = small(tmp_path).validate()
    kind = user_dataset(ref)[0]
    assert (kind.shape, kind.n_classes, kind.label, kind.samples_per_class) == ((3, 12, 12), 4, ref, 15)
    assert cfg.resolved().samples_per_class == 15  # the smallest class of either split
    ds = data.load_dataset(ref, (1, 3))
    assert tuple(ds.train.images.shape) == (40, 3, 12, 12) and set(ds.train.labels.tolist()) == {0, 1}
    whole = data.load_dataset(ref, (0, 1, 2, 3))  # normalized by the whole training split's statistics
    assert abs(float(whole.train.images.mean())) < 1e-5 and abs(float(whole.train.images.std()) - 1) < 1e-3
    raw = data.load_dataset(ref, (1, 3), normalize=False)
    assert float(raw.train.images.max()) == 1.0

    res = run_trial(small(tmp_path, teacher="lenet", samples_per_class=6, test_samples_per_class=5,
                          selection="first").validate())  # fmt: skip
    assert res.row["status"] == "ok" and res.row["dataset"] == ref
    assert res.row["n_train"] == 4 * 6 and res.row["n_test"] == 4 * 5
    assert res.teacher["dataset"] == ref and res.teacher["test_acc"] > 0.9  # LeNet built for 3 x 12 x 12
    assert res.row["n_params"] == 3 * 12 * 12 * 4 + 4 + 2 + 1  # fc 432 -> 4 features, 2 angles, the scale
    assert user_dataset(ref)[2] in res.teacher["settings"]  # the arrays' hash is in the teacher's key

    gray = user_dataset(f"{MODULE}:gray")[0]
    assert gray.shape == (1, 12, 12)  # N x H x W read as one channel


def test_tables_label_it_with_the_reference(tmp_path, datasets_module):
    from sweep.tables.labels import dataset_label, teacher_name

    ref = f"{MODULE}:stripes"
    assert dataset_label(ref, "0-3") == f"{ref} 0-3"
    assert teacher_name("torchvision:resnet18") == "torchvision:resnet18" and teacher_name("lenet") == "LeNet"


@pytest.mark.parametrize(
    ("fn", "field", "words"),
    [
        ("missing", "dataset",
         f"dataset: '{MODULE}:missing' cannot be imported: '{MODULE}' has no attribute 'missing'"),
        ("raises", "dataset", f"dataset: {MODULE}:raises() raised OSError: no such file: data.npz"),
        ("three", "dataset", f"dataset: {MODULE}:three returned 3 values, not (train_images, train_labels, "
                             "test_images, test_labels)"),
        ("short_labels", "dataset", f"dataset: {MODULE}:short_labels's train_images hold 80 images but train_labels "
                                    "79 labels"),
        ("other_shape", "dataset", f"dataset: {MODULE}:other_shape's train images are 3x12x12 but its test images "
                                   "3x10x12 (C x H x W)"),
        ("float_labels", "dataset", f"dataset: {MODULE}:float_labels's train_labels are float32 of shape (80,), "
                                    "not a vector of integer labels"),
        ("int_images", "dataset", f"dataset: {MODULE}:int_images's train_images are uint8 of shape (80, 3, 12, 12), "
                                  "not floats N x C x H x W"),
        ("no_test_threes", "classes", f"classes: '0-3': {MODULE}:no_test_threes has no test images of class 3"),
    ],
)  # fmt: skip
def test_a_bad_dataset_is_one_line_naming_the_field(tmp_path, datasets_module, fn, field, words, capsys):
    from sweep.cli import main

    ref = f"{MODULE}:{fn}"
    with pytest.raises(ConfigError) as err:
        small(tmp_path, dataset=ref).validate()
    assert (str(err.value), err.value.field) == (words, field)
    out = tmp_path / "out"
    code = main(["trial", "--dataset", ref, "--classes", "0-3", "--qubits", "2", "--out", str(out)])
    assert code == 2 and capsys.readouterr().err == f"qkd-sweep: error: {words}\n"
    assert not out.exists()


def test_more_classes_than_the_dataset_has(tmp_path, datasets_module):
    with pytest.raises(ConfigError) as err:
        small(tmp_path, classes="0-5", qubits=3).validate()
    assert str(err.value) == f"classes: '0-5' asks for class 5, but {MODULE}:stripes has 4 classes (labels 0..3)"


def test_check_arrays_takes_numpy_and_tensors_alike():
    import torch

    x, y = np.zeros((4, 2, 5, 5), np.float64), np.array([0, 1, 0, 1])
    a = data.check_arrays((x, y, torch.as_tensor(x), torch.as_tensor(y)), "t")
    assert [v.dtype for v in a] == [np.float32, np.int64] * 2 and a[2].shape == (4, 2, 5, 5)
    with pytest.raises(ConfigError, match="non-finite"):
        data.check_arrays((x * np.nan, y, x, y), "t")
    with pytest.raises(ConfigError, match="negative label"):
        data.check_arrays((x, -y, x, y), "t")
