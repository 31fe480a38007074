"""Teachers: trained once on digits (one epoch), cached, rebuilt from weights when
their logits file is damaged, and looked up by source index."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

import workers.teachers.logits as logits
from workers.data import Split, load_dataset, per_class_sample, student_splits
from workers.teacher_settings import TeacherSettings
from workers.teachers.cache import cache_folder, teacher_key
from workers.teachers.logits import get_teacher
from workers.teachers.models import AlexNetMNIST, LeNet5

CLASSES = (2, 5, 8)  # not 0..C-1, so original and remapped labels differ
SETTINGS = TeacherSettings(epochs=1)


def _no_training(*args, **kwargs):
    raise AssertionError("train_teacher was called; the cache should have been used")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", CLASSES)


@pytest.fixture(scope="module")
def lenet_cache(digits, tmp_path_factory):
    """A cache dir holding one LeNet teacher, trained exactly once."""
    cache = tmp_path_factory.mktemp("cache")
    calls = []
    real = logits.train_teacher

    def spy(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logits, "train_teacher", spy)
        first = get_teacher(digits, "lenet", SETTINGS, cache)
    return cache, first, calls


@pytest.fixture
def own_cache(lenet_cache, tmp_path):
    """A private copy of the trained cache, for tests that damage it."""
    cache, first, _ = lenet_cache
    dst = tmp_path / "cache"
    shutil.copytree(cache, dst)
    return dst, first


def _accuracy(logits, labels):
    return float((np.asarray(logits).argmax(1) == labels.numpy()).mean())


# ------------------------------------------------------------- first training
def test_first_call_trains_once_and_writes_the_cache(digits, lenet_cache):
    cache, first, calls = lenet_cache
    assert calls == ["lenet"]
    assert first.cached is False
    folder = cache_folder(cache, digits, "lenet", SETTINGS)
    assert first.path == folder
    assert Path(folder.parent) == cache / "teachers" / "digits" / "2-5-8"
    assert folder.name == f"lenet-seed0-{first.key_hash}"
    for f in ("weights.safetensors", "logits.parquet", "meta.json"):
        assert (folder / f).is_file(), f
    assert not list(Path(folder).glob("*.tmp"))  # no temporary files left behind

    assert first.train_logits.shape == (len(digits.train), 3)
    assert first.test_logits.shape == (len(digits.test), 3)
    assert np.isfinite(first.train_logits).all() and np.isfinite(first.test_logits).all()
    assert first.test_acc == pytest.approx(_accuracy(first.test_logits, digits.test.labels))

    meta = json.loads((folder / "meta.json").read_text())
    assert meta["hash"] == first.key_hash
    assert meta["key"] == first.key
    assert meta["key"]["classes"] == list(CLASSES) and meta["key"]["epochs"] == 1
    assert meta["test_acc"] == pytest.approx(first.test_acc)
    assert meta["test_samples"] == len(digits.test)


def test_logits_parquet_layout(digits, lenet_cache):
    _, first, _ = lenet_cache
    df = pd.read_parquet(first.path / "logits.parquet")
    assert list(df.columns) == ["split", "index", "label", "logit_2", "logit_5", "logit_8"]
    assert len(df) == len(digits.train) + len(digits.test)
    tr, te = df[df.split == "train"], df[df.split == "test"]
    assert len(tr) == len(digits.train) and len(te) == len(digits.test)
    assert np.array_equal(tr["index"].to_numpy(), digits.train.index)
    assert np.array_equal(te["index"].to_numpy(), digits.test.index)
    assert np.array_equal(tr["label"].to_numpy(), np.asarray(CLASSES)[digits.train.labels.numpy()])
    assert np.array_equal(te["label"].to_numpy(), np.asarray(CLASSES)[digits.test.labels.numpy()])
    cols = ["logit_2", "logit_5", "logit_8"]
    assert np.array_equal(tr[cols].to_numpy(), first.train_logits)
    assert np.array_equal(te[cols].to_numpy(), first.test_logits)


def test_weights_are_safetensors_of_the_model(digits, lenet_cache):
    _, first, _ = lenet_cache
    state = load_file(first.path / "weights.safetensors")
    model = LeNet5(len(CLASSES))
    expected = model.state_dict()
    assert set(state) == set(expected)
    for k, v in expected.items():
        assert state[k].shape == v.shape, k
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        out = model(digits.test.images).numpy()
    np.testing.assert_allclose(out, first.test_logits, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------- caching
def test_second_call_is_cached_and_trains_nothing(digits, lenet_cache, monkeypatch):
    cache, first, _ = lenet_cache
    monkeypatch.setattr(logits, "train_teacher", _no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid cache reads without complaint
        again = get_teacher(digits, "lenet", SETTINGS, cache)
    assert again.cached is True
    assert again.key_hash == first.key_hash and again.path == first.path
    assert np.array_equal(again.train_logits, first.train_logits)
    assert np.array_equal(again.test_logits, first.test_logits)
    assert again.test_acc == pytest.approx(first.test_acc)


def test_different_settings_use_different_folders(digits, own_cache):
    cache, first = own_cache
    variants = [
        SETTINGS,
        TeacherSettings(epochs=2),
        TeacherSettings(epochs=1, seed=1),
        TeacherSettings(epochs=1, lr=5e-4),
        TeacherSettings(epochs=1, batch_size=64),
    ]
    folders = [cache_folder(cache, digits, "lenet", s) for s in variants]
    hashes = [teacher_key(digits, "lenet", s)[1] for s in variants]
    assert len(set(folders)) == len(variants) and len(set(hashes)) == len(variants)
    # the default epochs resolve to a number, and that number is what is hashed
    assert (
        teacher_key(digits, "lenet", TeacherSettings(epochs=40))[1]
        == (teacher_key(digits, "lenet", TeacherSettings())[1])
    )
    other_classes = load_dataset("digits", (2, 5))
    assert cache_folder(cache, other_classes, "lenet", SETTINGS).parent.name == "2-5"

    seeded = get_teacher(digits, "lenet", TeacherSettings(epochs=1, seed=1), cache)
    assert seeded.cached is False
    assert seeded.path != first.path and seeded.key_hash != first.key_hash
    assert seeded.path.name.startswith("lenet-seed1-")
    assert not np.allclose(seeded.train_logits, first.train_logits)
    # the first entry is still there and still valid
    assert get_teacher(digits, "lenet", SETTINGS, cache).cached is True


def _garbage(path, digits):
    path.write_bytes(b"this is not a parquet file \x00\x01\x02" * 10)


def _wrong_columns(path, digits):
    df = pd.read_parquet(path).rename(columns={"logit_8": "logit_9"})
    df.to_parquet(path)


def _missing_column(path, digits):
    pd.read_parquet(path).drop(columns=["label"]).to_parquet(path)


def _wrong_rows(path, digits):
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


def _nan_logits(path, digits):
    table = pq.read_table(path)
    col = table.column("logit_5").to_numpy().copy()
    col[3] = np.nan
    i = table.schema.get_field_index("logit_5")
    pq.write_table(table.set_column(i, "logit_5", pa.array(col, pa.float32())), path)


@pytest.mark.parametrize("damage", [_garbage, _wrong_columns, _missing_column, _wrong_rows, _nan_logits])
def test_damaged_logits_are_rebuilt_from_weights(digits, own_cache, monkeypatch, damage):
    cache, first = own_cache
    path = cache_folder(cache, digits, "lenet", SETTINGS) / "logits.parquet"
    damage(path, digits)
    monkeypatch.setattr(logits, "train_teacher", _no_training)
    with pytest.warns(UserWarning, match="failed its check"):
        rebuilt = get_teacher(digits, "lenet", SETTINGS, cache)
    assert rebuilt.cached is False
    np.testing.assert_allclose(rebuilt.train_logits, first.train_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rebuilt.test_logits, first.test_logits, rtol=1e-5, atol=1e-5)
    assert rebuilt.test_acc == pytest.approx(first.test_acc)
    # the file was rewritten whole: the next call reads it without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = get_teacher(digits, "lenet", SETTINGS, cache)
    assert again.cached is True
    assert list(pd.read_parquet(path).columns)[3:] == ["logit_2", "logit_5", "logit_8"]


def test_unknown_arch_is_rejected(digits, tmp_path):
    with pytest.raises(ValueError, match="unknown teacher"):
        get_teacher(digits, "resnet", SETTINGS, tmp_path)


# ------------------------------------------------------------------ for_split
def test_for_split_matches_direct_lookup(digits, lenet_cache):
    _, first, _ = lenet_cache
    train, test = student_splits(digits, 10, 7, seed=3)
    df = pd.read_parquet(first.path / "logits.parquet").set_index(["split", "index"])
    cols = ["logit_2", "logit_5", "logit_8"]
    for which, full, sample, table in (
        ("train", digits.train, train, first.train_logits),
        ("test", digits.test, test, first.test_logits),
    ):
        got = first.for_split(full, sample, which)
        assert isinstance(got, torch.Tensor) and got.shape == (len(sample), 3)
        row_of = {int(ix): r for r, ix in enumerate(full.index)}
        direct = np.stack([table[row_of[int(ix)]] for ix in sample.index])
        assert np.array_equal(got.numpy(), direct)
        from_file = df.loc[[(which, int(ix)) for ix in sample.index], cols].to_numpy()
        assert np.array_equal(got.numpy(), from_file)


def test_for_split_rejects_a_sample_from_elsewhere(digits, lenet_cache):
    _, first, _ = lenet_cache
    sample = per_class_sample(digits.train, 3, seed=0)
    # an index that falls between two of the split's indices
    gaps = np.setdiff1d(np.arange(digits.train.index.max()), digits.train.index)
    bad_index = sample.index.copy()
    bad_index[0] = gaps[gaps > digits.train.index.min()][0]
    bad = Split(sample.images, sample.labels, np.sort(bad_index))
    with pytest.raises(ValueError, match="not a subset"):
        first.for_split(digits.train, bad, "train")


def test_for_split_rejects_an_index_past_the_end(digits, lenet_cache):
    _, first, _ = lenet_cache
    sample = per_class_sample(digits.train, 3, seed=0)
    bad_index = sample.index.copy()
    bad_index[-1] = digits.train.index.max() + 1
    bad = Split(sample.images, sample.labels, bad_index)
    with pytest.raises(ValueError, match="not a subset"):
        first.for_split(digits.train, bad, "train")


# ------------------------------------------------------------------- ensemble
def test_ensemble_is_log_mean_softmax_of_lenet_and_alexnet(tmp_path, monkeypatch):
    """AlexNet is heavy: one test covers it, the ensemble, and their caches."""
    ds = load_dataset("digits", (3, 6))
    ens = get_teacher(ds, "ensemble", SETTINGS, tmp_path)
    assert ens.cached is False
    assert not (ens.path / "weights.safetensors").exists()  # its weights are its members
    assert (ens.path / "logits.parquet").is_file() and (ens.path / "meta.json").is_file()
    assert ens.path.name.startswith("ensemble-seed0-")

    monkeypatch.setattr(logits, "train_teacher", _no_training)
    lenet = get_teacher(ds, "lenet", SETTINGS, tmp_path)
    alex = get_teacher(ds, "alexnet", SETTINGS, tmp_path)
    assert lenet.cached and alex.cached  # the ensemble trained and cached both members
    assert ens.key["members"] == {"lenet": lenet.key_hash, "alexnet": alex.key_hash}
    assert alex.key["lr"] == 1e-4 and lenet.key["lr"] == 1e-3

    state = load_file(alex.path / "weights.safetensors")
    assert set(state) == set(AlexNetMNIST(2).state_dict())

    for attr in ("train_logits", "test_logits"):
        p = (torch.softmax(torch.as_tensor(getattr(lenet, attr), dtype=torch.float64), 1)
             + torch.softmax(torch.as_tensor(getattr(alex, attr), dtype=torch.float64), 1)) / 2  # fmt: skip
        np.testing.assert_allclose(getattr(ens, attr), torch.log(p).numpy(), rtol=1e-5, atol=1e-5)
        assert np.allclose(np.exp(getattr(ens, attr)).sum(1), 1.0, atol=1e-5)
    assert ens.test_acc == pytest.approx(_accuracy(ens.test_logits, ds.test.labels))

    again = get_teacher(ds, "ensemble", SETTINGS, tmp_path)
    assert again.cached is True
    assert np.array_equal(again.test_logits, ens.test_logits)
    assert again.test_acc == pytest.approx(ens.test_acc)


def test_ensemble_logits_stay_finite_where_both_members_are_certain():
    from workers.teachers.logits import ensemble_logits

    a = np.array([[300.0, 0.0, -300.0]], dtype=np.float32)
    b = np.array([[250.0, 10.0, -400.0]], dtype=np.float32)
    out = ensemble_logits([a, b])
    assert np.isfinite(out).all()
    assert np.allclose(np.exp(out).sum(1), 1.0)
    with np.errstate(divide="ignore"):
        naive = np.log((torch.softmax(torch.as_tensor(a), 1) + torch.softmax(torch.as_tensor(b), 1)).numpy() / 2)
    assert not np.isfinite(naive).all()  # what the float32 mean of softmaxes would have given


def test_fused_adam_is_its_own_teacher_the_same_update_rounded_apart(digits, lenet_cache):
    """``optimizer: adam-fused`` hashes apart from ``adam`` (whose key is what it always was:
    every cached teacher keeps its folder), actually runs torch's fused step, and trains
    the same model up to rounding."""
    cache, first, _ = lenet_cache
    fused = TeacherSettings(epochs=1, optimizer="adam-fused")
    key, digest = teacher_key(digits, "lenet", fused)
    assert key["optimizer"] == "adam-fused" and digest != first.key_hash
    assert teacher_key(digits, "lenet", SETTINGS)[0]["optimizer"] == "adam"
    steps = []
    real = torch.optim.Adam

    class Spy(real):
        def step(self, *args, **kwargs):
            steps.append(self.defaults["fused"])
            return super().step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim, "Adam", Spy)
        fast = get_teacher(digits, "lenet", fused, cache)
    assert steps and all(steps), "every step through the fused kernel"
    assert not fast.cached and fast.path != first.path
    assert json.loads(fast.row(digits, "2,5,8")["settings"])["optimizer"] == "adam-fused"
    diff = np.abs(fast.train_logits - first.train_logits).max()
    assert 0 < diff < 1e-2 * np.abs(first.train_logits).max(), diff
    assert abs(_accuracy(fast.test_logits, digits.test.labels) - first.test_acc) <= 0.02


# ------------------------------------------------- every file of an entry, damaged
def _truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


_DAMAGES = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": _truncate,
    "garbage": lambda p: p.write_bytes(b"\x89garbage\x00\xff" * 40),
}
_META_DAMAGES = {
    **_DAMAGES,
    "not-an-object": lambda p: p.write_text("[1, 2, 3]"),
    "other-key": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "hash": "0123456789ab"})),
    "wrong-type": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "best_epoch": "three"})),
    "not-utf8": lambda p: p.write_bytes(b'{"hash": "\xff\xfe"}'),
}


@pytest.mark.parametrize("damage", list(_META_DAMAGES), ids=list(_META_DAMAGES))
def test_damaged_meta_is_a_warning_and_a_rebuild_from_the_weights(digits, own_cache, monkeypatch, damage):
    cache, first = own_cache
    folder = Path(cache_folder(cache, digits, "lenet", SETTINGS))
    _META_DAMAGES[damage](folder / "meta.json")
    monkeypatch.setattr(logits, "train_teacher", _no_training)  # the weights load: no retraining
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = get_teacher(digits, "lenet", SETTINGS, cache)
    assert rebuilt.cached is False
    if damage != "missing":
        assert len(caught) == 1 and "meta.json failed its check" in str(caught[0].message)
    np.testing.assert_allclose(rebuilt.test_logits, first.test_logits, rtol=1e-5, atol=1e-5)
    assert json.loads((folder / "meta.json").read_text())["hash"] == first.key_hash
    assert get_teacher(digits, "lenet", SETTINGS, cache).cached is True


@pytest.mark.parametrize("damage", list(_DAMAGES), ids=list(_DAMAGES))
def test_damaged_weights_and_logits_retrain_never_a_wrong_teacher(digits, own_cache, damage):
    """Weights that do not load with logits that fail too: the teacher is trained again (the
    same seed gives the same teacher), with one warning per damaged file, no traceback."""
    cache, first = own_cache
    folder = Path(cache_folder(cache, digits, "lenet", SETTINGS))
    _DAMAGES[damage](folder / "weights.safetensors")
    _DAMAGES[damage](folder / "logits.parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = get_teacher(digits, "lenet", SETTINGS, cache)
    messages = [str(w.message) for w in caught]
    if damage != "missing":
        assert any("logits.parquet failed its check" in m for m in messages), messages
        assert any("weights.safetensors do not load" in m for m in messages), messages
    assert again.cached is False
    np.testing.assert_allclose(again.test_logits, first.test_logits, rtol=1e-5, atol=1e-5)
    assert load_file(folder / "weights.safetensors").keys() == first_keys(first)


def first_keys(first):
    return load_file(Path(first.path) / "weights.safetensors").keys()


def test_per_architecture_optimizer_keys_only_the_named_teacher(digits):
    """``adam,alexnet=adam-fused``: AlexNet's key takes the fused kernel, LeNet's stays the
    key (and its trials the hashes) it had with plain ``adam``."""
    from workers.config import TrialConfig
    from workers.errors import ConfigError
    from workers.teacher_settings import parse_optimizer

    mixed = TeacherSettings(epochs=1, optimizer="adam,alexnet=adam-fused,ensemble=adam-fused")
    plain = TeacherSettings(epochs=1)
    assert teacher_key(digits, "lenet", mixed) == teacher_key(digits, "lenet", plain)
    assert teacher_key(digits, "alexnet", mixed)[0]["optimizer"] == "adam-fused"
    assert teacher_key(digits, "alexnet", mixed)[1] != teacher_key(digits, "alexnet", plain)[1]
    assert parse_optimizer("adam-fused,lenet=adam") == ("adam-fused", {"lenet": "adam"})
    lenet_trial = TrialConfig(teacher="lenet", teacher_settings=mixed).validate()
    assert lenet_trial.config_hash() == TrialConfig(teacher="lenet", teacher_settings=plain).validate().config_hash()
    alex = TrialConfig(teacher="alexnet", teacher_settings=mixed).validate()
    assert alex.config_hash() != TrialConfig(teacher="alexnet", teacher_settings=plain).validate().config_hash()
    for bad, words in [("sgd", "'sgd'"), ("resnet=adam-fused", "names no teacher"), ("adam,adam-fused", "ARCH=VALUE"),
                       ("", "unknown value ''"), ("alexnet=sgd", "'sgd'")]:  # fmt: skip
        with pytest.raises(ConfigError, match="teacher_optimizer") as info:
            TrialConfig(teacher="lenet", teacher_settings=TeacherSettings(optimizer=bad)).validate()
        assert words in str(info.value)


def test_epochs_and_lr_per_teacher_key_each_teacher_by_its_own_values():
    """``epochs: "10,alexnet=5"`` (and ``lr`` likewise): each teacher's cache key and each
    trial's hash hold only that teacher's values, so changing AlexNet's leaves LeNet's trials
    and cache entry as they were; bad texts are one line naming the field."""
    from workers.config import TrialConfig
    from workers.errors import ConfigError

    digits = load_dataset("digits", (0, 1, 2))
    per = TeacherSettings(epochs="10,alexnet=5", lr="3e-3,alexnet=3e-4")
    flat = TeacherSettings(epochs=10, lr=3e-3)
    assert (per.resolved_epochs("digits", "lenet"), per.resolved_epochs("digits", "alexnet")) == (10, 5)
    assert (per.resolved_lr("lenet"), per.resolved_lr("alexnet")) == (3e-3, 3e-4)
    only_alex = TeacherSettings(epochs="alexnet=5")  # no default: the recipe's for the others
    assert only_alex.resolved_epochs("digits", "lenet") == TeacherSettings().resolved_epochs("digits", "lenet")
    assert teacher_key(digits, "lenet", per) == teacher_key(digits, "lenet", flat)
    assert teacher_key(digits, "alexnet", per)[0]["epochs"] == 5
    assert teacher_key(digits, "alexnet", per)[0]["lr"] == 3e-4

    def trial_hash(teacher, settings):
        return TrialConfig(teacher=teacher, teacher_settings=settings).validate().config_hash()

    assert trial_hash("lenet", per) == trial_hash("lenet", flat)
    assert trial_hash("alexnet", per) == trial_hash("alexnet", TeacherSettings(epochs=5, lr=3e-4))
    other = TeacherSettings(epochs="10,alexnet=6", lr="3e-3,alexnet=3e-4")
    assert trial_hash("lenet", other) == trial_hash("lenet", per) and trial_hash("alexnet", other) != trial_hash(
        "alexnet", per
    )
    # an ensemble assembled from its members is decided by both members' values
    assert trial_hash("ensemble", other) != trial_hash("ensemble", per)
    for field, bad, words in [("epochs", "10,5", "ARCH=VALUE"), ("epochs", "resnet=3", "names no teacher"),
                              ("epochs", "alexnet=2.5", "'2.5'"), ("epochs", "alexnet=0", "'0'"),
                              ("lr", "1e-3,alexnet=-1", "'-1'"), ("lr", "fast", "'fast'")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"^teacher_{field}: ") as info:
            TrialConfig(teacher="lenet", teacher_settings=TeacherSettings(**{field: bad})).validate()
        assert words in str(info.value) and "\n" not in str(info.value)
