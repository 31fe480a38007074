"""A user's Qiskit circuit compiled once and run by the complex torch executor (issue 21).

Every probability is held to ``qiskit.quantum_info.Statevector`` of the circuit as the
user wrote it, bound (an independent simulator); every gradient to central finite
differences and to autograd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, ParameterVector
from qiskit.quantum_info import Statevector

from workers.backends.complex_sv import ComplexStatevectorExecutor, _fuse_pays
from workers.backends.shift import parameter_shift_jacobian, shift_probabilities
from workers.usercircuit import SUPPORTED_GATES, CircuitError, compile_circuit, load_user_circuit

PARAMETRIZED = [g for g, (_, k) in SUPPORTED_GATES.items() if k]


def reference(uc, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.array([Statevector(uc.bound(row, w)).probabilities() for row in x])


def ours(uc, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    ex = ComplexStatevectorExecutor(uc)
    return ex.probabilities(torch.as_tensor(x), torch.as_tensor(w)).numpy()


def expression(rng, x, w, n_x: int, n_w: int):
    """A random angle: a vector element, or an expression of them, or a constant."""
    i, j, k = rng.integers(n_x), rng.integers(n_x), rng.integers(n_w)
    choices = [
        lambda: x[i],
        lambda: w[k],
        lambda: 2 * x[i] - 0.3,
        lambda: x[i] * x[j],
        lambda: (math.pi - x[i]) * (math.pi - x[j]),
        lambda: x[i].sin() + w[k],
        lambda: w[k] * x[i],
        lambda: w[k] ** 2 - 0.5 * w[k],
        lambda: float(rng.uniform(-3, 3)),
    ]
    return choices[rng.integers(len(choices))]()


def add_gate(qc: QuantumCircuit, name: str, qubits, angles) -> None:
    getattr(qc, name)(*angles, *qubits)


def random_circuit(n: int, n_gates: int, seed: int, n_x: int = 3, n_w: int = 4) -> QuantumCircuit:
    """``n_gates`` gates drawn from the whole set (the 2-qubit ones when n > 1), angles random
    expressions; every x element used once first, so the vector is whole."""
    rng = np.random.default_rng(seed)
    x, w = ParameterVector("x", n_x), ParameterVector("w", n_w)
    qc = QuantumCircuit(n)
    for i in range(n_x):
        qc.ry(x[i], i % n)
    names = [g for g, (q, _) in SUPPORTED_GATES.items() if q <= n]
    order = list(names) + [names[i] for i in rng.integers(len(names), size=max(0, n_gates - len(names)))]
    for name in order:
        nq, na = SUPPORTED_GATES[name]
        qubits = [int(q) for q in rng.choice(n, size=nq, replace=False)]
        add_gate(qc, name, qubits, [expression(rng, x, w, n_x, n_w) for _ in range(na)])
    return qc


# ---------------------------------------------------------------------- probabilities


@pytest.mark.parametrize("name", list(SUPPORTED_GATES))
def test_each_gate_matches_statevector(name):
    """Each gate alone on a random entangled state, on non-neighbouring qubits given high-to-low."""
    rng = np.random.default_rng(list(SUPPORTED_GATES).index(name))
    x, w = ParameterVector("x", 6), ParameterVector("w", 3)
    qc = QuantumCircuit(3)
    for q in range(3):  # a generic complex state first
        qc.u(x[2 * q], x[2 * q + 1], w[q] + 0.7 * q, q)
    qc.cx(0, 1)
    qc.cx(1, 2)
    nq, na = SUPPORTED_GATES[name]
    angles = [w[k] + 0.5 * x[k] for k in range(na)]
    add_gate(qc, name, [2, 0][:nq] if nq == 2 else [1], angles)
    uc = compile_circuit(qc, 3)
    assert [g.name for g in uc.gates][-1] == name
    xs, ws = rng.uniform(-np.pi, np.pi, (5, 6)), rng.uniform(-np.pi, np.pi, 3)
    np.testing.assert_allclose(ours(uc, xs, ws), reference(uc, xs, ws), atol=1e-10, rtol=0)


def library_circuit(kind: str, n: int) -> QuantumCircuit:
    """A user-style circuit from qiskit.circuit.library: the feature map's parameters renamed
    to x, the ansatz's to w (assign_parameters with ParameterVector elements)."""
    from qiskit.circuit.library import efficient_su2, real_amplitudes, z_feature_map, zz_feature_map

    fm = zz_feature_map(n, reps=2) if n > 1 else z_feature_map(1, reps=2)  # zz needs two qubits
    ansatz = {"real_amplitudes": real_amplitudes, "efficient_su2": efficient_su2}[kind](n, reps=2)
    x, w = ParameterVector("x", fm.num_parameters), ParameterVector("w", ansatz.num_parameters)
    qc = fm.assign_parameters(dict(zip(fm.parameters, x, strict=True)))
    return qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w, strict=True))))


@pytest.mark.parametrize(
    ("kind", "n"),
    [("real_amplitudes", 1), ("efficient_su2", 2), ("real_amplitudes", 3), ("efficient_su2", 4),
     ("real_amplitudes", 5), ("efficient_su2", 6), ("efficient_su2", 8)],
)  # fmt: skip
def test_library_circuits_match_statevector(kind, n):
    uc = compile_circuit(library_circuit(kind, n), n)
    rng = np.random.default_rng(n)
    xs, ws = rng.uniform(0, np.pi, (3, uc.n_x)), rng.uniform(-np.pi, np.pi, uc.n_weights)
    np.testing.assert_allclose(ours(uc, xs, ws), reference(uc, xs, ws), atol=1e-10, rtol=0)


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (8, 5)])
def test_random_circuit_over_the_whole_set(n, seed):
    qc = random_circuit(n, 48, seed)
    uc = compile_circuit(qc, n)
    assert len(uc.gates) >= 40
    used = {g.name for g in uc.gates}
    assert used == {g for g, (q, _) in SUPPORTED_GATES.items() if q <= n}
    rng = np.random.default_rng(seed)
    xs, ws = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, 4)
    np.testing.assert_allclose(ours(uc, xs, ws), reference(uc, xs, ws), atol=1e-10, rtol=0)


def test_fused_and_gate_by_gate_paths_agree():
    """A batch large enough to fuse the weights' run into one matrix, one sample that does not,
    and the rows path (every row its own angles) give the same probabilities."""
    uc = compile_circuit(library_circuit("efficient_su2", 3), 3)
    ex = ComplexStatevectorExecutor(uc)
    rng = np.random.default_rng(7)
    xs, ws = rng.uniform(0, np.pi, (64, uc.n_x)), rng.uniform(-np.pi, np.pi, uc.n_weights)
    batch = ex.probabilities(torch.as_tensor(xs), torch.as_tensor(ws)).numpy()
    single = np.concatenate([ex.run_samples(xs[i : i + 1], ws) for i in range(3)])
    rows = ex.run_angles(uc.angles.numpy(xs, ws))
    runs = [arg for kind, arg in ex._segments if kind == "run"]
    assert any(_fuse_pays(64, uc.dim, len(r)) for r in runs) and not any(_fuse_pays(1, uc.dim, len(r)) for r in runs)
    np.testing.assert_allclose(batch[:3], single, atol=1e-13, rtol=0)
    np.testing.assert_allclose(batch, rows, atol=1e-13, rtol=0)
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-13)


def test_encoding_runs_first_and_the_ansatz_is_one_run():
    """Transpiling interleaves Ry(x[k]) with the ansatz's first gates; the executor moves the data
    gates (which commute with the weight gates on other qubits) first, leaving one run to fuse."""
    from qiskit.circuit.library import efficient_su2

    x, ansatz = ParameterVector("x", 4), efficient_su2(4, reps=2)
    w = ParameterVector("w", ansatz.num_parameters)
    qc = QuantumCircuit(4)
    for k in range(4):
        qc.ry(x[k], k)
    uc = compile_circuit(qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w, strict=True)))), 4)
    data = set(uc.angles.data_slots.tolist())
    assert uc.gates[0].slots[0] in data and uc.gates[1].slots[0] not in data  # x[0], then the ansatz's ry
    ex = ComplexStatevectorExecutor(uc)
    assert [kind for kind, _ in ex._segments] == ["data"] * 4 + ["run"]
    xs, ws = np.random.default_rng(12).uniform(-2, 2, (3, 4)), np.linspace(-2, 2, uc.n_weights)
    np.testing.assert_allclose(ours(uc, xs, ws), reference(uc, xs, ws), atol=1e-10, rtol=0)


def test_slot_circuit_is_the_description():
    """The description, rebuilt as Qiskit gates over slot parameters, prepares the user's state:
    the compile lost nothing (and Aer can run shifted rows of slot angles on it)."""
    uc = compile_circuit(random_circuit(3, 40, 11), 3)
    rng = np.random.default_rng(11)
    xs, ws = rng.uniform(-2, 2, (2, 3)), rng.uniform(-2, 2, 4)
    angles = uc.angles.numpy(xs, ws)
    sc = uc.slot_circuit()
    for row, a in zip(xs, angles, strict=True):
        got = Statevector(sc.assign_parameters(a)).probabilities()
        np.testing.assert_allclose(got, Statevector(uc.bound(row, ws)).probabilities(), atol=1e-10)


def test_real_circuit_runs_on_real_amplitudes():
    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.ry(x[0], 0)
    qc.ry(x[1] * w[0], 1)
    qc.cx(0, 1)
    qc.cry(w[1], 1, 0)
    qc.swap(0, 1)
    qc.z(1)
    uc = compile_circuit(qc, 2)
    ex = ComplexStatevectorExecutor(uc)
    assert ex.real and ex.dtype == torch.float64
    xs, ws = np.random.default_rng(0).uniform(-2, 2, (5, 2)), np.array([0.3, -1.1])
    np.testing.assert_allclose(ours(uc, xs, ws), reference(uc, xs, ws), atol=1e-12, rtol=0)


def notebook_circuit(n_qubits: int) -> QuantumCircuit:
    """The released notebooks' student written as a user would: H everywhere, Ry(x[k]) on k."""
    x = ParameterVector("x", n_qubits)
    qc = QuantumCircuit(n_qubits)
    qc.h(range(n_qubits))
    for k in range(n_qubits):
        qc.ry(x[k], k)
    qc.measure_all()
    return qc


@pytest.mark.parametrize("n", [3, 4])
def test_notebook_circuit_equals_h_angle(n):
    """No w vector: zero weights. Same probabilities as the built-in h-angle circuit."""
    from workers.backends.statevector import StatevectorExecutor
    from workers.circuits import build_angle_circuit

    uc = load_user_circuit(notebook_circuit, n)
    assert uc.n_weights == 0 and uc.n_x == n
    xs = torch.as_tensor(np.random.default_rng(n).uniform(-np.pi, np.pi, (16, n)))
    got = ComplexStatevectorExecutor(uc).probabilities(xs)
    want = StatevectorExecutor(build_angle_circuit(n)).probabilities(xs, torch.zeros(0, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12, rtol=0)
    assert uc.aer_circuit().count_ops()["measure"] == n  # the user's measure_all kept once


# ---------------------------------------------------------------------- gradients


def gradient_circuit() -> QuantumCircuit:
    """Every parametrized gate kind, controlled rotations and expressions included."""
    x, w = ParameterVector("x", 3), ParameterVector("w", 10)
    qc = QuantumCircuit(3)
    qc.h(range(3))
    qc.rx(2 * x[0], 0)
    qc.ry(x[1] * x[2], 1)
    qc.rz((math.pi - x[0]) * (math.pi - x[2]), 2)
    qc.u(w[0], w[1] * x[1], x[0] - w[2], 2)
    qc.crx(w[3], 0, 1)
    qc.cry(w[4] * x[0], 2, 1)
    qc.crz(w[5] + x[2], 1, 0)
    qc.cp(w[6] + x[1], 1, 2)
    qc.p(w[7].sin(), 0)
    qc.rxx(w[8], 0, 2)
    qc.ryy(w[9] ** 2, 1, 0)
    qc.rzz(x[0] + w[1], 2, 1)
    qc.sx(1)
    qc.cy(2, 0)
    return qc


def autograd_jacobians(ex, xs: np.ndarray, ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B x n_x x dim) per sample and (B x n_w x dim), by torch autograd."""
    xt, wt = torch.as_tensor(xs), torch.as_tensor(ws)
    jx, jw = torch.autograd.functional.jacobian(ex.probabilities, (xt, wt))  # (B, d, B, n_x), (B, d, n_w)
    b = len(xs)
    return jx[torch.arange(b), :, torch.arange(b)].transpose(1, 2).numpy(), jw.transpose(1, 2).numpy()


def test_autograd_matches_finite_differences():
    uc = compile_circuit(gradient_circuit(), 3)
    ex = ComplexStatevectorExecutor(uc)
    rng = np.random.default_rng(3)
    xs, ws = rng.uniform(-2, 2, (3, 3)), rng.uniform(-2, 2, 10)
    jx, jw = autograd_jacobians(ex, xs, ws)
    h = 1e-6
    for i in range(3):
        d = np.zeros(3)
        d[i] = h
        fd = (ex.run_samples(xs + d, ws) - ex.run_samples(xs - d, ws)) / (2 * h)
        np.testing.assert_allclose(jx[:, i], fd, atol=1e-8, rtol=0)
    for j in range(10):
        d = np.zeros(10)
        d[j] = h
        fd = (ex.run_samples(xs, ws + d) - ex.run_samples(xs, ws - d)) / (2 * h)
        np.testing.assert_allclose(jw[:, j], fd, atol=1e-8, rtol=0)
    assert np.abs(jw).max() > 0.05 and np.abs(jx).max() > 0.05  # the gradients are not trivially 0


def test_parameter_shift_matches_autograd():
    uc = compile_circuit(gradient_circuit(), 3)
    ex = ComplexStatevectorExecutor(uc)
    rng = np.random.default_rng(4)
    xs, ws = rng.uniform(-2, 2, (4, 3)), rng.uniform(-2, 2, 10)
    jx, jw = autograd_jacobians(ex, xs, ws)
    sx, sw = parameter_shift_jacobian(uc, ex.run_angles, xs, ws)
    np.testing.assert_allclose(sx, jx, atol=1e-12, rtol=0)
    np.testing.assert_allclose(sw, jw, atol=1e-12, rtol=0)


def test_two_term_rule_would_be_wrong_for_controlled_rotations():
    """The four-term rule is needed: two terms on a crx angle miss the right derivative."""
    from workers.backends import shift

    uc = compile_circuit(gradient_circuit(), 3)
    ex = ComplexStatevectorExecutor(uc)
    xs, ws = np.random.default_rng(5).uniform(-2, 2, (2, 3)), np.linspace(-1, 1, 10)
    right = parameter_shift_jacobian(uc, ex.run_angles, xs, ws)[1]
    four = shift.FOUR_TERM_GATES
    try:
        shift.FOUR_TERM_GATES = ()
        wrong = parameter_shift_jacobian(uc, ex.run_angles, xs, ws)[1]
    finally:
        shift.FOUR_TERM_GATES = four
    assert np.abs(wrong[:, 3] - right[:, 3]).max() > 1e-3  # w[3] is crx's angle


def test_shift_probabilities_backward_is_autograds():
    uc = compile_circuit(gradient_circuit(), 3)
    ex = ComplexStatevectorExecutor(uc)
    rng = np.random.default_rng(6)
    xs, ws = rng.uniform(-2, 2, (5, 3)), rng.uniform(-2, 2, 10)
    target = torch.as_tensor(rng.dirichlet(np.ones(8), size=5))

    def grads(fn):
        xt, wt = torch.tensor(xs, requires_grad=True), torch.tensor(ws, requires_grad=True)
        loss = -(target * torch.log(fn(xt, wt))).sum()
        loss.backward()
        return loss.item(), xt.grad.numpy(), wt.grad.numpy()

    a = grads(ex.probabilities)
    b = grads(lambda xt, wt: shift_probabilities(uc, ex.run_angles, xt, wt))
    assert a[0] == pytest.approx(b[0], abs=1e-12)
    np.testing.assert_allclose(b[1], a[1], atol=1e-10)
    np.testing.assert_allclose(b[2], a[2], atol=1e-10)


# ---------------------------------------------------------------------- bad circuits


def bad(kind: str):
    x, w = ParameterVector("x", 2), ParameterVector("w", 1)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.ry(x[1], 1)
    if kind == "opaque":
        qc.append(Gate("mygate", 1, []), [0])
    elif kind == "initialize":
        qc.initialize([0, 1, 0, 0])
    elif kind == "no-x":
        qc = QuantumCircuit(2)
        qc.ry(w[0], 0)
    elif kind == "stranger":
        from qiskit.circuit import Parameter

        qc.rz(Parameter("theta") + w[0], 1)
    elif kind == "other-vector":
        qc.rz(ParameterVector("v", 2)[1], 1)
    elif kind == "not-a-circuit":
        return lambda n: 42
    elif kind == "if-else":
        qc.measure_all()
        with qc.if_test((qc.clbits[0], 1)):
            qc.x(1)
    elif kind == "mid-measure":
        qc.measure_all()
        qc.h(0)
    return lambda n: qc


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("opaque", "gate 'mygate' has no definition"),
        ("initialize", "instruction 'reset' is not supported"),
        ("no-x", "no parameter of a ParameterVector named 'x'"),
        ("stranger", "parameter 'theta' is not an element of a ParameterVector named 'x'"),
        ("other-vector", "parameter 'v[1]' is not an element"),
        ("not-a-circuit", "returned int, not a qiskit.QuantumCircuit"),
        ("mid-measure", "gate 'h' after a measurement"),
        ("if-else", "instruction 'if_else': classical control flow is not supported"),
    ],
)
def test_bad_circuits_say_what_is_wrong(kind, words):
    with pytest.raises(CircuitError) as err:
        load_user_circuit(bad(kind), 2)
    message = str(err.value)
    assert words in message and message.startswith("circuit: ") and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_wrong_qubit_count_and_bad_reference():
    with pytest.raises(CircuitError, match="on 3 qubits, asked for 2"):
        load_user_circuit(lambda n: notebook_circuit(3), 2)
    with pytest.raises(CircuitError, match="PKG.MODULE:CALLABLE"):
        load_user_circuit("no_colon_here", 2)
    with pytest.raises(CircuitError, match="'θ\\[0\\]' is not an element of a ParameterVector named 'x'"):
        load_user_circuit("qiskit.circuit.library:real_amplitudes", 2)  # its vector is named θ


def test_single_precision_is_close():
    """complex64 (meant for a GPU) agrees with complex128 to single precision."""
    uc = compile_circuit(gradient_circuit(), 3)
    xs, ws = np.random.default_rng(8).uniform(-2, 2, (6, 3)), np.linspace(-1, 1, 10)
    single = ComplexStatevectorExecutor(uc, single=True)
    assert single.dtype == torch.complex64
    got = single.probabilities(torch.as_tensor(xs), torch.as_tensor(ws))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ours(uc, xs, ws), atol=1e-5, rtol=0)


def test_aer_runs_the_circuit_as_written():
    """The Qiskit side: the user's circuit with every qubit measured, transpiled once, a batch
    bound at run time, reads the executor's distribution within sampling error."""
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    uc = compile_circuit(library_circuit("efficient_su2", 2), 2)
    rng = np.random.default_rng(9)
    xs, ws = rng.uniform(0, np.pi, (3, uc.n_x)), rng.uniform(-np.pi, np.pi, uc.n_weights)
    sim = AerSimulator(seed_simulator=1)
    qc = transpile(uc.aer_circuit(), sim, optimization_level=0)
    shots = 20000
    result = sim.run(qc, parameter_binds=[uc.aer_binds(xs, ws)], shots=shots).result()
    want = ours(uc, xs, ws)
    for i in range(len(xs)):
        counts = result.get_counts(i)
        freq = np.array([counts.get(format(k, "02b"), 0) for k in range(4)]) / shots
        assert np.abs(freq - want[i]).max() < 0.02  # 4.5 standard errors at p = 1/2
