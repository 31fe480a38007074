"""A teacher from a reference (issue 21.2): ``teacher: PKG.MODULE:CALLABLE`` or ``torchvision:NAME``,
trained by the teacher recipe and cached like a built-in, its key holding the reference and the
hash of its source; every bad reference one line naming ``teacher``, exit 2, nothing written."""

from __future__ import annotations

import sys

import pytest
from usercode import user_module

from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.kinds import user_teacher
from workers.teacher_settings import TeacherSettings

MODULE = "qkd_user_teachers"

SOURCE = '''
import torch
from torch import nn


def probe(n_classes, image_shape):
    """A linear probe: flatten, one linear layer."""
    c, h, w = image_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes))


def raises(n_classes, image_shape):
    raise RuntimeError("no model today\\nsecond line")


def not_a_module(n_classes, image_shape):
    return [n_classes]


def wrong_width(n_classes, image_shape):
    c, h, w = image_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes + 1))


def breaks(n_classes, image_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(5, n_classes))


BROKEN = 1
'''


@pytest.fixture
def teachers_module(tmp_path, monkeypatch):
    """The user's module on sys.path; forgotten afterwards (its import and every check)."""
    with user_module(tmp_path, monkeypatch, MODULE, SOURCE, (user_teacher,)) as path:
        yield path


def small(tmp_path, **kw) -> TrialConfig:
    base = dict(dataset="digits", classes="0-3", backend="statevector", qubits=2, epochs=1, batch_size=16,
                samples_per_class=8, test_samples_per_class=6, cache_dir=str(tmp_path / "cache"),
                teacher_settings=TeacherSettings(epochs=2, lr=0.01))  # fmt: skip
    return TrialConfig(**{**base, **kw})


#: Cache keys of the built-in teachers on digits 0-3, computed by the code before references
#: existed (commit 949b4c7): default settings, and paper-code with a fused AlexNet.
BUILT_IN_KEYS = {
    "lenet": ("63612efca7de", "959f874967f0"),
    "alexnet": ("fcf6f1623b15", "7d48d56f949b"),
    "ensemble": ("16b6b1ec4e90", "df756b6687b3"),
    "qnn": ("eb9236036a68", "81a7eb756c5d"),
}


def test_built_in_teacher_keys_and_trial_hashes_are_unchanged():
    from workers.data import load_dataset
    from workers.teachers.cache import teacher_key

    ds = load_dataset("digits", (0, 1, 2, 3))
    paper = TeacherSettings(recipe="paper-code", optimizer="adam,alexnet=adam-fused")
    for arch, (default, paper_code) in BUILT_IN_KEYS.items():
        key, digest = teacher_key(ds, arch, TeacherSettings())
        assert (digest, teacher_key(ds, arch, paper)[1]) == (default, paper_code)
        assert "source" not in key and "data" not in key
    assert TrialConfig().config_hash() == "b24e3fc005591ed0"  # as pinned in test_circuit_student


def test_a_reference_teacher_trains_caches_and_keys_on_its_source(tmp_path, teachers_module):
    from workers.refs import resolve, source_hash
    from workers.trial import run_trial

    ref = f"{MODULE}:probe"
    cfg = small(tmp_path, teacher=ref).validate()
    first = run_trial(cfg)
    assert first.row["status"] == "ok" and not first.row["teacher_cached"]
    assert first.teacher["teacher"] == ref and first.teacher["n_params"] == 28 * 28 * 4 + 4
    assert first.teacher["test_acc"] > 0.5  # a linear probe learns four digits
    settings = first.teacher["settings"]
    assert ref in settings and source_hash(resolve(ref)) in settings
    again = run_trial(small(tmp_path, teacher=ref, seed=1).validate())
    assert again.row["teacher_cached"] and again.row["teacher_key"] == first.row["teacher_key"]
    # a reference is part of the trial's identity; built-in hashes stay (test above)
    assert cfg.config_hash() != small(tmp_path, teacher="lenet").config_hash()

    # editing the callable's source is a new teacher
    teachers_module.write_text(teachers_module.read_text().replace('"""A linear probe', '"""A probe, edited'))
    sys.modules.pop(MODULE, None)
    user_teacher.cache_clear()
    edited = run_trial(small(tmp_path, teacher=ref, seed=1).validate())
    assert not edited.row["teacher_cached"] and edited.row["teacher_key"] != first.row["teacher_key"]


def test_torchvision_resnet18_trains_a_tiny_run_on_digits(tmp_path):
    from workers.data import load_dataset
    from workers.teachers.logits import get_teacher
    from workers.teachers.models import make_model

    model = make_model("torchvision:resnet18", 2, shape=(1, 28, 28))
    assert model.conv1.in_channels == 1 and model.fc.out_features == 2  # no download, adapted to 1 channel
    cfg = TrialConfig(dataset="digits", classes="0-1", teacher="torchvision:resnet18").validate()
    ds = load_dataset("digits", cfg.class_labels)
    t = get_teacher(ds, cfg.teacher, TeacherSettings(epochs=1, batch_size=64), tmp_path / "cache")
    assert t.train_logits.shape == (len(ds.train), 2) and t.test_acc > 0.5
    assert t.key["arch"] == "torchvision:resnet18" and t.key["source"].startswith("torchvision ")
    assert ":" not in t.path.name  # a folder name without the reference's colon
    again = get_teacher(ds, cfg.teacher, TeacherSettings(epochs=1, batch_size=64), tmp_path / "cache")
    assert again.cached and again.key_hash == t.key_hash


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        ("missing", f"teacher: '{MODULE}:missing' cannot be imported: '{MODULE}' has no attribute 'missing'"),
        ("BROKEN", f"teacher: '{MODULE}:BROKEN' is int, not a callable"),
        ("raises", f"teacher: {MODULE}:raises(n_classes=4, image_shape=(1, 28, 28)) raised RuntimeError: second line"),
        ("not_a_module", f"teacher: {MODULE}:not_a_module(n_classes=4, image_shape=(1, 28, 28)) returned list, "
                         "not a torch.nn.Module"),
        ("wrong_width", f"teacher: {MODULE}:wrong_width's model gives shape (2, 5) on a batch of 2 images 1x28x28 "
                        "(eval mode), not (2, 4): one score per class"),
        ("breaks", f"teacher: {MODULE}:breaks's model fails on a batch of 2 images 1x28x28 (eval mode): "
                   "RuntimeError: "),  # torch's own words follow
    ],
)  # fmt: skip
def test_a_bad_teacher_reference_is_one_line_naming_the_field(tmp_path, teachers_module, fn, words, capsys):
    from sweep.cli import main

    ref = f"{MODULE}:{fn}"
    with pytest.raises(ConfigError) as err:
        small(tmp_path, teacher=ref).validate()
    message = str(err.value)
    assert message.startswith(words) and err.value.field == "teacher" and "\n" not in message
    out = tmp_path / "out"
    code = main(["trial", "--teacher", ref, "--classes", "0-3", "--qubits", "2", "--out", str(out)])
    assert code == 2 and capsys.readouterr().err == f"qkd-sweep: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("no_such_module_qkd:fn",
         "teacher: 'no_such_module_qkd:fn' cannot be imported: ModuleNotFoundError: "
         "No module named 'no_such_module_qkd'"),
        ("torchvision:resnet1",
         "teacher: torchvision:resnet1(n_classes=4, image_shape=(1, 28, 28)) raised ValueError: "
         "'resnet1' is not a torchvision classification model (e.g. resnet18, mobilenet_v3_small)"),
        ("lenett", "teacher: unknown value 'lenett'; choose one of ['none', 'lenet', 'alexnet', 'ensemble', 'qnn'], "
                   "or a reference PKG.MODULE:CALLABLE"),
    ],
)  # fmt: skip
def test_unimportable_and_unknown_teachers(tmp_path, ref, words):
    with pytest.raises(ConfigError) as err:
        small(tmp_path, teacher=ref).validate()
    assert str(err.value).startswith(words) and "\n" not in str(err.value)
