"""Kinds from an installed package (issue 21.3): a distribution that declares entry points in
``qkd_sweep.datasets``, ``qkd_sweep.teachers`` and ``qkd_sweep.students`` adds a dataset, a
teacher and a student kind with no edit here; ``--help``, validation, a trial and the tables'
labels read them. The package is a fake distribution (a ``*.dist-info`` with ``entry_points.txt``
beside the package) in a temporary folder on the path, as ``pip install`` would leave it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import workers.kinds as kinds
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.kinds import DATASETS, STUDENT_KINDS, TEACHERS
from workers.teacher_settings import TeacherSettings

PACKAGE = "qkd_plugin_pkg"

KINDS = f'''
"""The package's kinds: metadata only (no torch); the builders load when first used."""
from workers.kinds import DatasetKind, StudentKind, TeacherKind

BLOBS = DatasetKind("blobs", "Blobs", (1, 6, 6), 10, "four bright corners and a centre, noisy",
                    n_classes=4, load="{PACKAGE}.impl:load")
PROBE = TeacherKind("probe", "Linear probe", description="one linear layer", build="{PACKAGE}.impl:probe")
SOFTMAX = StudentKind("plugin-softmax", False, "linear", False, "", "a linear layer and a softmax (a control)",
                      label="Plugin softmax, {{q}}-qubit size", build="{PACKAGE}.impl:softmax")
NOT_A_KIND = 3
'''

IMPL = """
import math

import numpy as np
import torch
from torch import nn

from workers.student import Head, StudentModel


def load(data_root, download):
    rng = np.random.default_rng(0)

    def split(n):
        y = np.repeat(np.arange(4), n)
        x = rng.uniform(0, 0.3, size=(len(y), 6, 6)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, 3 * (c // 2) : 3 * (c // 2) + 3, 3 * (c % 2) : 3 * (c % 2) + 3] += 0.7
        return x, y

    return (*split(30), *split(20))


def probe(n_classes, image_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), n_classes))


class Softmax(StudentModel):
    def __init__(self, cfg, shape):
        super().__init__()
        self.layer = nn.Linear(math.prod(shape), 2**cfg.qubits, dtype=torch.float64)
        self.head = Head(cfg.head, cfg.n_classes, scale=cfg.head_scale, learn_scale=cfg.learn_scale)

    def probabilities(self, images):
        return torch.softmax(self.layer(images.flatten(1).to(torch.float64)), dim=1)


def softmax(cfg, train_images, seed, shot_seed):
    return Softmax(cfg, tuple(train_images.shape[1:]))
"""

ENTRY_POINTS = f"""
[qkd_sweep.datasets]
blobs = {PACKAGE}:BLOBS

[qkd_sweep.teachers]
probe = {PACKAGE}:PROBE
broken = {PACKAGE}:NO_SUCH_NAME

[qkd_sweep.students]
plugin-softmax = {PACKAGE}:SOFTMAX
wrong-kind = {PACKAGE}:NOT_A_KIND
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The package and its dist-info in a folder on sys.path; the registries as they were afterwards."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(KINDS))
    (pkg / "impl.py").write_text(textwrap.dedent(IMPL))
    info = tmp_path / f"{PACKAGE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    saved = {id(r): dict(r) for r in (DATASETS, TEACHERS, STUDENT_KINDS)}
    seen = set(kinds._SEEN_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for registry in (DATASETS, TEACHERS, STUDENT_KINDS):
        registry.clear()
        registry.update(saved[id(registry)])
    kinds._SEEN_ENTRY_POINTS.clear()
    kinds._SEEN_ENTRY_POINTS.update(seen)
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]


def test_help_lists_a_package_s_kinds(plugin):
    cli = Path(sys.executable).with_name("qkd-sweep")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    top = subprocess.run([str(cli), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert top.returncode == 0
    assert "datasets: mnist, fashionmnist, digits, cifar10, cifar10-rgb, blobs" in top.stdout
    assert "teachers: none, lenet, alexnet, ensemble, qnn, probe" in top.stdout
    assert "students: amplitude, cnn-angle, cnn-classical, classical, circuit, plugin-softmax" in top.stdout
    # the entries that are not kinds are left out, each with one warning
    assert "broken" not in top.stdout and "wrong-kind" not in top.stdout
    assert f"entry point broken = {PACKAGE}:NO_SUCH_NAME (qkd_sweep.teachers) does not load" in top.stderr
    assert f"entry point wrong-kind = {PACKAGE}:NOT_A_KIND (qkd_sweep.students) is int, not a StudentKind" in top.stderr
    trial = subprocess.run([str(cli), "trial", "--help"], capture_output=True, text=True, env=env, timeout=120)
    flat = " ".join(trial.stdout.split())
    assert "cifar10-rgb, blobs;" in flat and "qnn, probe;" in flat
    assert "plugin-softmax: a linear layer and a softmax (a control)" in flat
    # without the package on the path, none of it
    bare = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=120)
    assert "blobs" not in bare.stdout and "probe" not in bare.stdout


def test_a_package_s_kinds_validate_and_run(tmp_path, plugin):
    from sweep.tables.labels import dataset_label, student_name, teacher_kind
    from workers.trial import run_trial

    with pytest.warns(UserWarning) as caught:
        added = kinds.discover_kinds()
    assert sorted(str(w.message).split(" (")[0] for w in caught) == [
        f"entry point broken = {PACKAGE}:NO_SUCH_NAME",
        f"entry point wrong-kind = {PACKAGE}:NOT_A_KIND",
    ]
    assert added == ["blobs", "probe", "plugin-softmax"]
    assert kinds.discover_kinds() == []  # each entry point is read once per process
    assert "torch" in sys.modules  # (this test process has it anyway; the kinds module itself imports none)
    assert f"{PACKAGE}.impl" not in sys.modules  # builders load when first used

    cfg = TrialConfig(dataset="blobs", classes="0-3", teacher="probe", student="plugin-softmax", qubits=2,
                      epochs=3, lr=0.05, batch_size=8, cache_dir=str(tmp_path / "cache"),
                      teacher_settings=TeacherSettings(epochs=10, lr=0.05)).validate()  # fmt: skip
    assert cfg.resolved().samples_per_class == 10  # the kind's default
    res = run_trial(cfg)
    assert res.row["status"] == "ok" and res.row["dataset"] == "blobs" and res.row["student"] == "plugin-softmax"
    assert res.teacher["teacher"] == "probe" and res.teacher["test_acc"] > 0.9
    assert res.row["n_params"] == 36 * 4 + 4 + 1
    assert dataset_label("blobs", "0-3") == "Blobs 0-3" and teacher_kind("probe") == "Classical, Linear probe"

    class Row:
        student, qubits, n_params = "plugin-softmax", 2, 149

    assert student_name(Row) == "Plugin softmax, 2-qubit size"
    with pytest.raises(ConfigError, match=r"^classes: '0-5'"):  # its labels run 0..3
        TrialConfig(dataset="blobs", classes="0-5").validate()
