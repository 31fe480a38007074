"""One circuit description, two backends, held to each other and to Qiskit's own Statevector."""

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from workers.backends import AerBackend, StatevectorBackend
from workers.backends.noise import to_qiskit
from workers.circuits import amplitude_angles, build_circuit, encoding_params
from workers.errors import ConfigError
from workers.noise_spec import parse_noise

CASES = [(n, a) for n in (2, 3, 4) for a in ("h-ry", "ry", "hea")]


def _inputs(circuit, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, circuit.dim, generator=g, dtype=torch.float64)
    w = torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 2 * np.pi
    return encoding_params(circuit, feats), w


def _qiskit_probs(circuit, enc, w):
    qc, ep, wp = to_qiskit(circuit)
    out = []
    for row in enc:
        values = dict(zip(ep + wp, [*row.tolist(), *w.tolist()], strict=True))
        out.append(Statevector(qc.assign_parameters(values)).probabilities())
    return np.array(out)


@pytest.mark.parametrize("n,ansatz", CASES)
def test_backends_agree_with_qiskit_statevector(n, ansatz):
    c = build_circuit(n, ansatz, layers=2)
    enc, w = _inputs(c)
    ref = _qiskit_probs(c, enc, w)
    sv = StatevectorBackend(c).probabilities(enc, w).numpy()
    aer = AerBackend(c, shots=0).probabilities(enc, w).numpy()
    assert np.abs(sv - ref).max() < 1e-9
    assert np.abs(aer - ref).max() < 1e-9
    assert np.allclose(sv.sum(1), 1.0)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_amplitude_encoding_prepares_the_normalized_vector(n):
    # With every trainable angle at zero the "ry" ansatz is the identity, so the
    # state is exactly the encoded one: amplitudes, signs included.
    c = build_circuit(n, "ry")
    g = torch.Generator().manual_seed(n)
    feats = torch.randn(5, 2**n, generator=g, dtype=torch.float64)
    enc = encoding_params(c, feats)
    qc, ep, wp = to_qiskit(c)
    target = torch.tanh(feats)
    target = (target / target.norm(dim=1, keepdim=True)).numpy()
    for row, want in zip(enc, target, strict=True):
        values = dict(zip(ep + wp, [*row.tolist(), *[0.0] * c.n_weights], strict=True))
        amps = Statevector(qc.assign_parameters(values)).data
        assert np.abs(amps.imag).max() < 1e-12
        assert np.abs(amps.real - want).max() < 1e-9


def test_encoding_angle_count_and_tree_shape():
    c = build_circuit(3, "h-ry")
    assert c.n_enc == 7 and c.n_weights == 3
    assert c.enc_matrix.shape == (7, 7)
    # Tree angles of a basis vector: everything points left except nothing.
    a = torch.zeros(1, 8, dtype=torch.float64)
    a[0, 5] = 1.0  # |101>: qubit 2 = 1, qubit 1 = 0, qubit 0 = 1
    alpha = amplitude_angles(a)
    assert torch.allclose(alpha[0, 0], torch.tensor(np.pi, dtype=torch.float64))


def test_hea_layers_change_the_circuit_and_paper_circuits_have_one_layer():
    assert build_circuit(3, "hea", 1).n_weights == 3
    assert build_circuit(3, "hea", 3).n_weights == 9
    assert build_circuit(3, "h-ry", 5).n_weights == 3
    names = {g.name for g in build_circuit(3, "h-ry").gates[-6:]}
    assert names == {"h", "ry"}


@pytest.mark.parametrize("ansatz", ["h-ry", "hea"])
def test_parameter_shift_gradient_matches_finite_differences(ansatz):
    c = build_circuit(3, ansatz, layers=2)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(c.n_weights, generator=g, dtype=torch.float64) * 6).requires_grad_()
    upstream = torch.randn(3, 8, generator=g, dtype=torch.float64)
    backend = AerBackend(c, shots=0)

    def f(x, ww):
        return float((backend.probabilities(encoding_params(c, x), ww) * upstream).sum())

    (backend.probabilities(encoding_params(c, feats), w) * upstream).sum().backward()
    h = 1e-6
    fd_w = np.array(
        [
            (f(feats.detach(), w.detach() + h * e) - f(feats.detach(), w.detach() - h * e)) / (2 * h)
            for e in torch.eye(c.n_weights, dtype=torch.float64)
        ]
    )
    assert np.abs(w.grad.numpy() - fd_w).max() < 1e-6
    # The gradient reaches the features through the encoding (chain rule).
    fd_x = np.zeros((3, 8))
    for i in range(3):
        for j in range(8):
            e = torch.zeros(3, 8, dtype=torch.float64)
            e[i, j] = h
            fd_x[i, j] = (f(feats.detach() + e, w.detach()) - f(feats.detach() - e, w.detach())) / (2 * h)
    assert np.abs(feats.grad.numpy() - fd_x).max() < 1e-6
    assert np.abs(fd_x).max() > 1e-3  # a real signal, not zeros agreeing with zeros


def test_parameter_shift_equals_statevector_autograd():
    c = build_circuit(4, "hea", layers=2)
    enc, w = _inputs(c, batch=4, seed=3)
    grads = []
    for backend in (StatevectorBackend(c), AerBackend(c, shots=0)):
        e, ww = enc.clone().requires_grad_(), w.clone().requires_grad_()
        (backend.probabilities(e, ww)[:, :5].log()).sum().backward()
        grads.append((e.grad, ww.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-9)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-9)


def test_one_aer_run_binds_the_batch_and_its_shifted_copies():
    c = build_circuit(3, "h-ry")
    backend = AerBackend(c, shots=100)
    enc, w = _inputs(c, batch=5)
    backend.probabilities(enc.requires_grad_(), w.requires_grad_())
    assert backend.executions == 5 * (1 + 2 * c.n_params)
    assert backend.shots_total == 100 * backend.executions
    with torch.no_grad():
        backend.probabilities(enc, w)
    assert backend.executions == 5 * (1 + 2 * c.n_params) + 5


def test_shot_frequencies_agree_with_exact_within_sampling_error():
    c = build_circuit(3, "hea")
    enc, w = _inputs(c, batch=8)
    exact = StatevectorBackend(c).probabilities(enc, w).numpy()
    shots = 5000
    freq = AerBackend(c, shots=shots, seed=7).probabilities(enc, w).numpy()
    assert np.allclose(freq.sum(1), 1.0)
    assert np.allclose(freq * shots, np.round(freq * shots), atol=1e-6)  # counts, not probabilities
    sigma = np.sqrt(exact * (1 - exact) / shots) + 1e-12
    z = np.abs(freq - exact) / sigma
    assert z[exact > 1e-3].max() < 5.0
    assert np.abs(freq - exact).max() > 0  # shots really were sampled


def test_multinomial_matches_aers_own_measurement_sampling():
    """Aer's per-shot sampling of the measured circuit and our multinomial draw from Aer's
    exact distribution are the same distribution: compare both to the exact one."""
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    c = build_circuit(3, "hea")
    enc, w = _inputs(c, batch=1, seed=5)
    exact = StatevectorBackend(c).probabilities(enc, w).numpy()[0]
    qc, ep, wp = to_qiskit(c)
    qc = qc.assign_parameters(dict(zip(ep + wp, [*enc[0].tolist(), *w.tolist()], strict=True)))
    qc.measure_all()
    shots = 20000
    sim = AerSimulator(seed_simulator=11)
    counts = sim.run(transpile(qc, sim), shots=shots).result().get_counts()
    aer_freq = np.zeros(8)
    for bits, k in counts.items():
        aer_freq[int(bits, 2)] = k / shots
    ours = AerBackend(c, shots=shots, seed=11).probabilities(enc, w).numpy()[0]
    sigma = np.sqrt(exact * (1 - exact) / shots) + 1e-12
    assert (np.abs(aer_freq - exact) / sigma).max() < 5
    assert (np.abs(ours - exact) / sigma).max() < 5


def test_depolarizing_noise_pulls_towards_uniform():
    c = build_circuit(3, "hea")
    enc, w = _inputs(c, batch=3)
    exact = AerBackend(c, shots=0).probabilities(enc, w).numpy()
    noisy = AerBackend(c, shots=0, noise="depolarizing:0.05,0.2").probabilities(enc, w).numpy()
    clean = AerBackend(c, shots=0, noise="depolarizing:0,0").probabilities(enc, w).numpy()
    uniform = np.full(8, 1 / 8)
    assert np.abs(clean - exact).max() < 1e-9
    assert (np.abs(noisy - uniform).sum(1) < np.abs(exact - uniform).sum(1)).all()


@pytest.mark.parametrize("bad", ["depolarizing", "amplitude:0.1", "depolarizing:x", "depolarizing:2"])
def test_bad_noise_spec_names_the_field(bad):
    with pytest.raises(ConfigError, match="^noise: "):
        parse_noise(bad)
