"""A user's own experiment for qkd-sweep: a circuit, a teacher and a dataset, each a plain
callable that a spec names by reference (``my_experiment:NAME``); nothing in the project
is edited. ``specs/user-example.yaml`` runs them (``make sweep SPEC=specs/user-example.yaml``).

The three contracts (README, "Your own circuit / teacher / dataset"):

* circuit: ``fn(n_qubits) -> qiskit.QuantumCircuit`` over two ParameterVectors, ``x`` (data,
  filled by the student's encoder) and ``w`` (trained);
* teacher: ``fn(n_classes, image_shape) -> torch.nn.Module`` giving N x n_classes scores;
* dataset: ``fn() -> (train_images, train_labels, test_images, test_labels)``, images
  N x C x H x W floats, labels integers.
"""

from __future__ import annotations

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import real_amplitudes
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def circuit(n_qubits: int) -> QuantumCircuit:
    """Angle encoding, Ry(x[k]) on qubit k, then Qiskit's RealAmplitudes ansatz (2 repetitions)
    on the weights: the library circuit's own parameters renamed to ``w``."""
    ansatz = real_amplitudes(n_qubits, reps=2)
    x = ParameterVector("x", n_qubits)
    w = ParameterVector("w", ansatz.num_parameters)
    qc = QuantumCircuit(n_qubits)
    for k in range(n_qubits):
        qc.ry(x[k], k)
    qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w, strict=True))), inplace=True)
    return qc


def small_cnn(n_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """Two 3x3 convolutions with 2x2 max-pooling and a linear layer: a teacher for small images."""
    channels, height, width = image_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), n_classes),
    )  # fmt: skip


def digits8x8() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits at their own size (1 x 8 x 8, pixels in [0, 1]),
    split in half per class by a fixed seed (no download)."""
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=0.5, stratify=bunch.target, random_state=0
    )
    return torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), torch.from_numpy(y_test)
