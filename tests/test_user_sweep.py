"""The user's own circuit, teacher and dataset in a sweep (issue 21.2): a package in a temporary
folder, named by a spec's ``paths.python_path`` (so that this process and the Ray workers it
starts import it), runs a two-trial sweep end to end; a bad reference in a spec is one line
naming the field and the reference, exit 2, before Ray starts and with nothing written."""

from __future__ import annotations

import os
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from sweep.cli import main
from workers.kinds import user_circuit, user_dataset, user_teacher

ray = pytest.importorskip("ray")

PACKAGE = "qkd_user_kit"

SOURCE = '''
import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import real_amplitudes
from torch import nn


def circuit(n_qubits):
    """Ry(x_k) on each qubit, then Qiskit's RealAmplitudes on the weights."""
    ansatz = real_amplitudes(n_qubits, reps=1)
    x, w = ParameterVector("x", n_qubits), ParameterVector("w", ansatz.num_parameters)
    qc = QuantumCircuit(n_qubits)
    for k in range(n_qubits):
        qc.ry(x[k], k)
    qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w))), inplace=True)
    return qc


def teacher(n_classes, image_shape):
    c, h, w = image_shape
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * h * w, n_classes))


def bars():
    """Four classes of 1 x 8 x 8 images: a bright row (class 0, 1) or column (2, 3) at 2 or 5."""
    def split(n, seed):
        rng = np.random.default_rng(seed)
        y = np.repeat(np.arange(4), n)
        x = rng.uniform(0, 0.3, size=(len(y), 1, 8, 8)).astype(np.float32)
        for i, c in enumerate(y):
            at = 2 if c % 2 == 0 else 5
            if c < 2:
                x[i, 0, at, :] = 1.0
            else:
                x[i, 0, :, at] = 1.0
        return torch.from_numpy(x), torch.from_numpy(y)

    return (*split(16, 0), *split(12, 1))


def bad_teacher(n_classes, image_shape):
    return "not a model"
'''


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """The user's package in its own folder (not on sys.path until a spec names it); Ray shut
    down before and after, so that the Ray the sweep starts sees the folder; the import path
    and the per-process caches as they were afterwards."""
    folder = tmp_path / "code"
    (folder / PACKAGE).mkdir(parents=True)
    (folder / PACKAGE / "__init__.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    ray.shutdown()
    for cache in (user_circuit, user_dataset, user_teacher):
        cache.cache_clear()
    yield folder
    ray.shutdown()
    sys.modules.pop(PACKAGE, None)
    for cache in (user_circuit, user_dataset, user_teacher):
        cache.cache_clear()


def spec(tmp_path, folder, teacher: str) -> str:
    raw = {
        "name": "kit",
        "grid": {"dataset": f"{PACKAGE}:bars", "classes": "0-3", "teacher": ["none", teacher],
                 "student": "circuit", "circuit": f"{PACKAGE}:circuit", "qubits": 2, "seed": 0},
        "trial": {"backend": "statevector", "shots": "exact", "epochs": 2, "lr": 0.05, "batch_size": 8},
        "teacher": {"epochs": 3, "lr": 0.01},
        "paths": {"results": str(tmp_path / "results"), "python_path": [str(folder)]},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
    }  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_a_user_package_runs_a_two_trial_sweep(tmp_path, kit, capsys):
    assert main(["sweep", spec(tmp_path, kit, f"{PACKAGE}:teacher"), "--quiet", "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    trials = pd.read_parquet(tmp_path / "results" / "kit" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"ok"}
    assert set(trials["dataset"]) == {f"{PACKAGE}:bars"} and set(trials["ansatz"]) == {f"{PACKAGE}:circuit"}
    assert set(trials["teacher"]) == {"none", f"{PACKAGE}:teacher"}
    assert set(trials["n_train"]) == {4 * 12}  # the smallest class of either split, 12, is the default
    teachers = pd.read_parquet(tmp_path / "results" / "kit" / "teachers.parquet")
    assert list(teachers["teacher"]) == [f"{PACKAGE}:teacher"] and teachers["test_acc"].iloc[0] > 0.9
    # the tables name the dataset and the teacher by their references
    assert f"{PACKAGE}:bars 0-3" in out and f"Teacher: {PACKAGE}:teacher" in out


def test_a_bad_reference_in_a_spec_is_one_line_before_ray_starts(tmp_path, kit, capsys):
    path = spec(tmp_path, kit, f"{PACKAGE}:bad_teacher")
    assert main(["sweep", path, "--quiet", "--num-cpus", "2"]) == 2
    err = capsys.readouterr().err
    assert err == (f"qkd-sweep: error: {path}: grid.teacher: {PACKAGE}:bad_teacher(n_classes=4, image_shape=(1, 8, 8)) "
                   "returned str, not a torch.nn.Module\n")  # fmt: skip
    assert not ray.is_initialized() and not (tmp_path / "results").exists()
    assert main(["validate", path]) == 2


def test_python_path_must_name_folders(tmp_path, capsys):
    raw = {"name": "x", "grid": {"dataset": "digits"}, "paths": {"python_path": [str(tmp_path / "nowhere")]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"qkd-sweep: error: {path}: paths.python_path[0]: '{tmp_path / 'nowhere'}' is not a folder "
                   f"(a relative path starts at {tmp_path})\n")  # fmt: skip
