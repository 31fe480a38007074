"""Every student circuit, described once, as data.

A :class:`Circuit` is a list of gates over two kinds of named parameters:

* ``enc[k]``: data-dependent angles of the amplitude encoding, one per Ry gate;
* ``w[k]``: the trainable angles of the ansatz, one per Ry gate.

The backends (:mod:`workers.backends`) compile the same description to a
Qiskit circuit for Aer and to batched torch operations. Because every angle
sits alone in its own Ry gate, the two-term parameter-shift rule is exact for
all of them, encoding angles included, and the chain rule carries the gradient
through :func:`amplitude_angles` into the classical layer before the encoding.

Amplitude encoding of a real vector ``a`` of length ``2**n`` (qubit 0 is the
least significant bit of the basis index, as in Qiskit) is the Mottonen tree:
a rotation of qubit ``n-1``, then rotations of qubit ``n-2`` uniformly
controlled by qubit ``n-1``, and so on down to qubit 0. The tree's angles
(:func:`amplitude_angles`) are ``2*atan2(|right half|, |left half|)`` of each
block, and at the leaves ``2*atan2(a[2j+1], a[2j])``, which carries the signs.
Each uniformly controlled Ry is decomposed into plain Ry and CNOT gates; the
Ry angles are a fixed linear map (:attr:`Circuit.enc_matrix`) of the tree's.

The paper's students (its Fig. 5 is not in the text; this is our reading):

* ``h-ry`` (the paper's 3-qubit circuit, "Hadamard gates and Ry gates"): H on
  every qubit, then a trainable Ry on every qubit.
* ``ry`` (the paper's 4-qubit circuit, "a sequence of Ry gates"): a trainable
  Ry on every qubit.

Neither has entangling gates, so stacking layers adds nothing (Ry angles on one
qubit add up, and H Ry(a) H = Ry(-a)): they take one layer whatever ``layers``
says. ``hea`` is the hardware-efficient alternative: ``layers`` times a Ry on
every qubit followed by a CNOT ring.

The paper's released notebooks ran another circuit (:func:`build_angle_circuit`,
``h-angle``): angle encoding, H on every qubit, then Ry(``enc[k]``) on qubit k,
with no trainable gate. Its state is a product state, P(qubit k reads 1) =
(1 + sin enc[k]) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GATES_1Q = ("h", "x", "ry")
GATES_2Q = ("cx", "cz")


@dataclass(frozen=True)
class Gate:
    """One gate: its name, the qubits it acts on (control first), and its angle."""

    name: str
    qubits: tuple[int, ...]
    param: tuple[str, int] | None = None  # ("enc", k) or ("w", k), only for "ry"


@dataclass(frozen=True)
class Circuit:
    """A student circuit: amplitude encoding followed by an ansatz."""

    n_qubits: int
    gates: tuple[Gate, ...]
    n_enc: int
    n_weights: int
    ansatz: str
    #: (n_enc x 2**n - 1): encoding Ry angles = enc_matrix @ tree angles (amplitude
    #: encoding); the identity for angle encoding, whose angles are the features.
    enc_matrix: np.ndarray
    #: ``amplitude`` (the Mottonen tree of 2**n features) or ``angle`` (one angle per qubit).
    encoding: str = "amplitude"

    @property
    def dim(self) -> int:
        return 2**self.n_qubits

    @property
    def n_params(self) -> int:
        return self.n_enc + self.n_weights


def _encoding_gates(n: int) -> tuple[list[Gate], np.ndarray]:
    """The Mottonen tree as Ry and CNOT gates, and the map from tree angles to Ry angles."""
    n_alpha = 2**n - 1
    gates: list[Gate] = []
    rows: list[np.ndarray] = []

    def ucry(target: int, controls: list[int], coeff: np.ndarray) -> None:
        # coeff[j] expresses the angle for control state j (bit m = controls[m])
        # as a linear combination of the tree angles.
        if not controls:
            gates.append(Gate("ry", (target,), ("enc", len(rows))))
            rows.append(coeff[0])
            return
        half = len(coeff) // 2
        c0, c1 = coeff[:half], coeff[half:]  # last control = 0 / = 1
        # X Ry(b) X = Ry(-b): the two halves see (c0+c1)/2 +/- (c0-c1)/2.
        ucry(target, controls[:-1], (c0 + c1) / 2)
        gates.append(Gate("cx", (controls[-1], target)))
        ucry(target, controls[:-1], (c0 - c1) / 2)
        gates.append(Gate("cx", (controls[-1], target)))

    offset = 0
    for t in reversed(range(n)):
        k = n - 1 - t  # number of controls: qubits t+1 .. n-1
        coeff = np.zeros((2**k, n_alpha))
        coeff[np.arange(2**k), offset + np.arange(2**k)] = 1.0
        ucry(t, list(range(t + 1, n)), coeff)
        offset += 2**k
    return gates, np.array(rows)


def amplitude_angles(amplitudes: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Tree angles (B x 2**n - 1) that prepare the normalized real ``amplitudes`` (B x 2**n).

    Differentiable: the gradient flows back to the amplitudes (and so to
    whatever layer produced them). ``eps`` keeps norms of all-zero blocks
    differentiable.
    """
    b, dim = amplitudes.shape
    n = dim.bit_length() - 1
    if 2**n != dim:
        raise ValueError(f"amplitude vector length {dim} is not a power of two")
    out = []
    for t in reversed(range(n)):
        blocks = amplitudes.reshape(b, 2 ** (n - 1 - t), 2, 2**t)
        if t == 0:
            left, right = blocks[:, :, 0, 0], blocks[:, :, 1, 0]
        else:
            left = torch.sqrt((blocks[:, :, 0, :] ** 2).sum(-1) + eps)
            right = torch.sqrt((blocks[:, :, 1, :] ** 2).sum(-1) + eps)
        out.append(2 * torch.atan2(right, left))
    return torch.cat(out, dim=1)


def _ansatz_gates(name: str, n: int, layers: int) -> list[Gate]:
    gates: list[Gate] = []
    w = 0

    def ry_layer() -> None:
        nonlocal w
        for q in range(n):
            gates.append(Gate("ry", (q,), ("w", w)))
            w += 1

    if name == "h-ry":
        gates.extend(Gate("h", (q,)) for q in range(n))
        ry_layer()
    elif name == "ry":
        ry_layer()
    elif name == "hea":
        for _ in range(layers):
            ry_layer()
            if n > 1:
                pairs = [(q, (q + 1) % n) for q in range(n)] if n > 2 else [(0, 1)]
                gates.extend(Gate("cx", pair) for pair in pairs)
    else:
        raise ValueError(f"ansatz: unknown ansatz {name!r}")
    return gates


def build_circuit(n_qubits: int, ansatz: str, layers: int = 2) -> Circuit:
    """Amplitude encoding of 2**n_qubits features followed by ``ansatz``."""
    enc_gates, enc_matrix = _encoding_gates(n_qubits)
    ans = _ansatz_gates(ansatz, n_qubits, layers)
    n_w = sum(1 for g in ans if g.param is not None)
    return Circuit(
        n_qubits=n_qubits,
        gates=tuple(enc_gates + ans),
        n_enc=len(enc_matrix),
        n_weights=n_w,
        ansatz=ansatz,
        enc_matrix=enc_matrix,
    )


def build_angle_circuit(n_qubits: int) -> Circuit:
    """The released notebooks' circuit: H on every qubit, then Ry(``enc[k]``) on qubit k."""
    gates = [Gate("h", (q,)) for q in range(n_qubits)]
    gates += [Gate("ry", (q,), ("enc", q)) for q in range(n_qubits)]
    return Circuit(
        n_qubits=n_qubits, gates=tuple(gates), n_enc=n_qubits, n_weights=0,
        ansatz="h-angle", enc_matrix=np.eye(n_qubits), encoding="angle",
    )  # fmt: skip


def product_state_probabilities(angles: torch.Tensor) -> torch.Tensor:
    """Outcome probabilities (B x 2**n) of :func:`build_angle_circuit` in closed form,
    an independent reference for the simulators: qubit k reads 1 with (1 + sin a_k) / 2,
    and qubit 0 is the least significant bit of the outcome index."""
    p1 = (1 + torch.sin(angles.to(torch.float64))) / 2  # (B, n)
    n = angles.shape[1]
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n)[None, :]) & 1  # (2**n, n)
    return torch.where(bits.bool()[None], p1[:, None, :], 1 - p1[:, None, :]).prod(-1)


def encoding_params(circuit: Circuit, features: torch.Tensor) -> torch.Tensor:
    """Encoding Ry angles (B x n_enc) for raw features: tanh, L2-normalize, tree angles."""
    x = torch.tanh(features.to(torch.float64))
    amps = x / torch.sqrt((x**2).sum(dim=1, keepdim=True) + 1e-12)
    alpha = amplitude_angles(amps)
    return alpha @ torch.as_tensor(circuit.enc_matrix, dtype=alpha.dtype).T
