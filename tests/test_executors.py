"""Executors, measurements and gradients apart: the torch executor with shots gives Aer's numbers."""

import math

import numpy as np
import pytest
import torch

from workers.backends import Backend, StatevectorBackend, make_backend
from workers.backends.gradient import Autograd, ParameterShift
from workers.backends.measurement import Exact, Sampled
from workers.backends.statevector import StatevectorExecutor
from workers.circuits import build_angle_circuit, build_circuit, encoding_params
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.trial import run_trial

CIRCUITS = [
    build_circuit(3, "hea", 2),
    build_circuit(3, "h-ry"),
    build_circuit(4, "ry"),
    build_circuit(4, "hea", 3),
    build_angle_circuit(3),
    build_circuit(8, "hea", 2),
]


def _shifted_rows(enc, w, shift):
    base = np.concatenate([enc, np.broadcast_to(w, (len(enc), len(w)))], axis=1)
    p = base.shape[1]
    shifts = np.concatenate([np.eye(p), -np.eye(p)]) * shift
    return np.concatenate([base[:, None], base[:, None] + shifts[None]], axis=1).reshape(-1, p), p


@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: f"{c.ansatz}-{c.n_qubits}q")
def test_structured_shift_rows_equal_the_rows_run_one_by_one(circuit):
    rng = np.random.default_rng(1)
    ex = StatevectorExecutor(circuit)
    enc = rng.uniform(-3, 3, (5, circuit.n_enc))
    w = rng.uniform(-3, 3, circuit.n_weights)
    for shift in (math.pi / 2, math.pi / 4):
        rows, p = _shifted_rows(enc, w, shift)
        fast = ex.run_shifted(enc, w, shift)
        assert fast.shape == (5, 1 + 2 * p, circuit.dim)
        np.testing.assert_allclose(fast, ex.run_rows(rows).reshape(5, 1 + 2 * p, -1), atol=1e-13)


#: Where the torch executor runs in these tests: the CPU, and a GPU where torch sees one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: f"{c.ansatz}-{c.n_qubits}q")
def test_torch_and_aer_executors_agree_to_1e12_on_bound_rows(circuit, device):
    rng = np.random.default_rng(2)
    rows = rng.uniform(-math.pi, math.pi, (40, circuit.n_params))
    aer = make_backend("aer", circuit, shots=0).executor
    torch_ex = StatevectorExecutor(circuit, device)
    np.testing.assert_allclose(torch_ex.run_rows(rows), aer.run_rows(rows), atol=1e-12)
    shared = rows.copy()
    shared[:, circuit.n_enc :] = rows[0, circuit.n_enc :]  # one set of weights for the batch
    enc, w = torch.as_tensor(shared[:, : circuit.n_enc]), torch.as_tensor(shared[0, circuit.n_enc :])
    np.testing.assert_allclose(torch_ex.probabilities(enc, w).numpy(), aer.run_rows(shared), atol=1e-12)


def test_at_8_qubits_a_ry_is_a_signed_permutation_not_a_dense_matrix():
    from workers.backends.statevector import _Perm

    ex = StatevectorExecutor(CIRCUITS[-1])
    partners = [arg[1] for kind, arg in ex._rows if kind == "ry"]
    assert len(partners) == CIRCUITS[-1].n_params and all(isinstance(q, _Perm) for q in partners)
    small = StatevectorExecutor(CIRCUITS[0])
    assert not any(isinstance(arg[1], _Perm) for kind, arg in small._rows if kind == "ry")


def test_the_same_stream_draws_the_same_counts_on_both_executors():
    c = build_circuit(3, "hea", 2)
    g = torch.Generator().manual_seed(0)
    enc = encoding_params(c, torch.randn(16, 8, generator=g, dtype=torch.float64)).requires_grad_()
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(16, 8, dtype=torch.float64)
    grads = []
    for name in ("statevector", "aer"):
        backend = make_backend(name, c, shots=1000, seed=5)
        e, ww = enc.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        (backend.probabilities(e, ww) * up).sum().backward()
        with torch.no_grad():
            evaluated = backend.probabilities(e, ww)
        grads.append((e.grad, ww.grad, evaluated, backend.executions, backend.shots_total))
    (e1, w1, p1, n1, s1), (e2, w2, p2, n2, s2) = grads
    assert torch.equal(e1, e2) and torch.equal(w1, w2) and torch.equal(p1, p2)
    assert n1 == n2 == 16 * (1 + 2 * c.n_params) + 16 and s1 == s2 == 1000 * n1
    assert np.all(p1.numpy() * 1000 == np.round(p1.numpy() * 1000))  # counts over shots


@pytest.mark.parametrize("val", [0, 4], ids=["no-validation", "validation-split"])
def test_a_trial_gives_identical_numbers_on_the_torch_executor_and_on_aer(tmp_path, val):
    def trial(backend):
        return run_trial(TrialConfig(
            dataset="digits", classes="0-3", teacher="none", backend=backend, shots=500, epochs=2,
            samples_per_class=12, test_samples_per_class=10, val_samples_per_class=val, batch_size=8,
            seed=3, cache_dir=str(tmp_path / "cache"),
        ))  # fmt: skip

    sv, aer = trial("statevector"), trial("aer")
    strip = lambda es: [{k: v for k, v in e.items() if k not in ("trial_id", "wall_s")} for e in es]  # noqa: E731
    assert strip(sv.epochs) == strip(aer.epochs)
    assert len(sv.epochs) == 2 and (not val or not math.isnan(sv.epochs[-1]["val_acc"]))
    assert sv.row["test_acc"] == aer.row["test_acc"] and sv.row["shots_total"] == aer.row["shots_total"] > 0
    assert (sv.row["executor"], aer.row["executor"]) == ("statevector", "aer-direct")
    assert sv.row["measurement"] == aer.row["measurement"] == "sampled"
    assert sv.row["gradient"] == aer.row["gradient"] == "parameter-shift"
    assert sv.row["config_hash"] != aer.row["config_hash"]


def test_a_fallback_to_aer_public_run_is_in_the_row(tmp_path, monkeypatch):
    import workers.backends.aer_direct as aer_direct

    def broken(*args, **kwargs):
        raise AttributeError("no controller here")

    monkeypatch.setattr(aer_direct, "DirectAer", broken)
    res = run_trial(TrialConfig(dataset="digits", classes="0-3", teacher="none", shots=100, epochs=1,
                                samples_per_class=6, test_samples_per_class=6, cache_dir=str(tmp_path)))  # fmt: skip
    assert res.row["executor"] == "aer-public" and res.row["status"] == "ok"


def test_sampled_statevector_frequencies_follow_the_exact_probabilities():
    c = build_circuit(3, "hea", 1)
    g = torch.Generator().manual_seed(1)
    enc = encoding_params(c, torch.randn(3, 8, generator=g, dtype=torch.float64))
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64)
    exact = StatevectorBackend(c).probabilities(enc, w).detach().numpy()
    shots = 200_000
    freq = StatevectorBackend(c, shots=shots, seed=2).probabilities(enc, w).numpy()
    sd = np.sqrt(exact * (1 - exact) / shots)
    assert np.all(np.abs(freq - exact) <= 5 * sd + 1e-12)
    assert not np.array_equal(freq, exact)


def test_autograd_with_shots_is_refused_where_it_is_set_up():
    c = build_circuit(3, "h-ry")
    with pytest.raises(ValueError, match="autograd"):
        Backend(StatevectorExecutor(c), Sampled(10), Autograd())
    with pytest.raises(ValueError, match="autograd"):
        make_backend("aer", c, shots=0, gradient="autograd")
    with pytest.raises(ConfigError, match="gradient") as info:
        TrialConfig(backend="statevector", shots=100, gradient="autograd").validate()
    assert "shots" in str(info.value)


def test_parameter_shift_on_the_exact_statevector_matches_autograd():
    c = build_circuit(3, "hea", 2)
    g = torch.Generator().manual_seed(4)
    enc = encoding_params(c, torch.randn(6, 8, generator=g, dtype=torch.float64))
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64)
    up = torch.randn(6, 8, dtype=torch.float64)
    out = []
    for grad in (Autograd(), ParameterShift("exact")):
        e, ww = enc.clone().requires_grad_(), w.clone().requires_grad_()
        (Backend(StatevectorExecutor(c), Exact(), grad).probabilities(e, ww) * up).sum().backward()
        out.append((e.grad, ww.grad))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-12) and torch.allclose(out[0][1], out[1][1], atol=1e-12)


def test_gradient_defaults_and_hashes_of_earlier_configs():
    sv, aer = TrialConfig(backend="statevector"), TrialConfig()
    assert sv.resolved().gradient == "autograd" and aer.resolved().gradient == "parameter-shift"
    assert TrialConfig(backend="statevector", shots=100).resolved().gradient == "parameter-shift"
    assert TrialConfig(student="cnn-classical").resolved().gradient == ""
    # spelling out the default changes nothing; a different gradient is a different experiment
    assert TrialConfig(gradient="parameter-shift").config_hash() == aer.config_hash()
    assert TrialConfig(backend="statevector", gradient="autograd").config_hash() == sv.config_hash()
    assert TrialConfig(backend="statevector", gradient="parameter-shift").config_hash() != sv.config_hash()
    # where the torch executor runs is not part of what the result is
    assert "device" not in sv.identity() and "gradient" not in sv.identity()


def test_cuda_without_a_gpu_is_one_line_naming_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="^device: 'cuda': torch sees no GPU"):
        make_backend("statevector", build_circuit(3, "h-ry"), device="cuda")
