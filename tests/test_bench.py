"""``make bench`` end to end (quick sizes), what it compares being the same computation,
and the backends' fast paths that the circuit tests do not reach."""

import gc
import json
import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector
from qiskit_aer import AerSimulator

import workers.backends.aer_direct as aer_direct
from bench import quantum as bench
from workers.backends import AerBackend, StatevectorBackend
from workers.backends.noise import to_qiskit
from workers.circuits import Circuit, Gate, build_circuit, encoding_params

TIMINGS = [
    "aer_fwd_us_q3", "aer_grad_us_q3", "aer_fwd_us_q4", "aer_grad_us_q4",
    "naive_fwd_us_q3", "naive_grad_us_q3", "sv_grad_us_q3", "sv_grad_us_q4",
    "trial_wall_s_aer_q3", "peak_rss_mb_trial", "aer_grad_us_per_circuit_q3", "aer_sim_us_per_circuit_q3",
    "sampled_grad_us_q3", "sampled_us_per_circuit_q3", "sampled_grad_us_q4", "trial_wall_s_sampled_q3",
    "sv_grad_us_q8", "sampled_grad_us_q8",
]  # fmt: skip


def test_quick_bench_writes_one_flat_json_object(tmp_path, monkeypatch):
    monkeypatch.delenv("QKD_DATA_ROOT", raising=False)
    out = tmp_path / "bench" / "bench.json"
    messages = []
    result = bench.run_bench(out, str(tmp_path / "no-data"), quick=True, sweep_speedup=lambda: 1.8,
                             progress=messages.append, cache_dir=tmp_path / "cache")  # fmt: skip
    written = json.loads(out.read_text())
    assert written == result
    assert all(v is None or isinstance(v, str | int | float | bool) for v in written.values())  # flat
    for key in TIMINGS:
        assert isinstance(written[key], float) and math.isfinite(written[key]) and written[key] > 0, key
    assert written["sweep_speedup_2_workers"] == 1.8
    assert written["trial_dataset"] == "digits" and written["trial_status"] == "ok"
    assert written["trial_n_train"] == written["trial_n_test"] == 6 * bench.QUICK.samples_per_class
    assert written["aer_circuits_per_sample_grad_q3"] == 1 + 2 * (7 + 6)  # encoding + hea x 2 angles
    assert written["ratio_naive_over_aer_grad_q3"] == pytest.approx(
        written["naive_grad_us_q3"] / written["aer_grad_us_q3"]
    )
    assert written["aer_direct_path"] is True
    assert written["trial_same_test_acc"] is True  # same seed and stream on both executors: same counts
    assert written["circuits_per_sample_grad_q8"] == 1 + 2 * (255 + 16)  # 8-qubit encoding + hea x 2
    assert written["machine_cores"] >= 1 and written["qiskit_aer_version"]
    if written["pennylane_version"]:
        assert written["pennylane_grad_us_q3"] > 0 and written["pennylane_max_abs_diff_q3"] < 1e-10
    else:
        assert written["pennylane_grad_us_q3"] is None
    assert any("Aer" in m for m in messages)
    small, large = bench.bench_inputs(bench.bench_circuit(3), 4), bench.bench_inputs(bench.bench_circuit(3), 9)
    assert torch.equal(small[1], large[1]) and torch.equal(small[0], large[0][:4])  # same inputs at any batch
    table = bench.format_table(written)
    assert "naive / Aer" in table and "digits" in table


def test_missing_hooks_and_pennylane_are_null_not_invented(monkeypatch):
    """What is not measured is written as null, and ratios that need it are null too."""
    measured = {"fwd_us": 2.0, "grad_us": 4.0, "circuits_per_sample_grad": 27, "grad_us_per_circuit": 0.1,
                "sim_us_per_circuit": 0.05, "executor": "aer-direct"}  # fmt: skip
    monkeypatch.setattr(bench, "time_sampled", lambda c, s, executor: measured)
    monkeypatch.setattr(bench, "time_naive", lambda c, s: {"fwd_us": 100.0, "grad_us": 4000.0,
                                                           "circuits_per_sample_grad": 13, "samples": 2})  # fmt: skip
    monkeypatch.setattr(bench, "time_statevector", lambda c, s: 1.0)
    monkeypatch.setattr(bench, "time_pennylane", lambda c, s: None)
    monkeypatch.setattr(bench, "cache_teacher", lambda settings: None)
    monkeypatch.setattr(bench, "run_trial_in_child", lambda settings: {
        "wall_s": 3.0, "process_wall_s": 5.0, "peak_rss_mb": 900.0, "status": "ok", "test_acc": 0.5,
        "n_train": 18, "n_test": 18, "teacher_cached": True, "circuit_executions": 10})  # fmt: skip
    result = bench.run_bench(None, None, quick=True, progress=lambda m: None)
    assert result["sweep_speedup_2_workers"] is None
    assert result["pennylane_grad_us_q3"] is None and result["ratio_pennylane_over_sv_grad_q3"] is None
    assert result["ratio_naive_over_aer_grad_q3"] == 1000.0


def test_trial_uses_mnist_only_when_its_files_are_there(tmp_path):
    assert bench.trial_settings(str(tmp_path), bench.FULL, "c")["dataset"] == "digits"
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in bench.MNIST_FILES:
        (raw / name).write_bytes(b"")
    settings = bench.trial_settings(str(tmp_path), bench.FULL, "c")
    assert settings["dataset"] == "mnist" and settings["take_available"] is False
    assert settings["samples_per_class"] == 150 and settings["epochs"] == 10 and settings["shots"] == 5000
    bench._config(settings)  # a valid TrialConfig


# --------------------------------------------------------------------------- what the bench compares
def test_naive_loop_prepares_the_same_distribution_and_gradient():
    c = bench.bench_circuit(3)
    feats, w, _ = bench.bench_inputs(c, 1, seed=4)
    shots = 40000
    sim = AerSimulator(seed_simulator=3)
    freq, jac = bench.naive_gradient(c, feats[0].numpy(), w.numpy(), shots, sim)
    sv = StatevectorBackend(c)
    enc = encoding_params(c, feats)
    exact = sv.probabilities(enc, w)[0].numpy()
    exact_jac = torch.autograd.functional.jacobian(lambda ww: sv.probabilities(enc, ww)[0], w).T.numpy()
    sigma = np.sqrt(exact * (1 - exact) / shots) + 1e-12
    assert (np.abs(freq - exact) / sigma).max() < 5
    assert np.abs(jac - exact_jac).max() < 5 * math.sqrt(2 * 0.25 / shots) / 2  # 5 sigma of a shift difference
    assert np.abs(exact_jac).max() > 0.05  # a real signal


def test_pennylane_circuit_is_ours():
    import pennylane  # noqa: F401  (make install installs the bench extra: this runs, never skips)

    c = bench.bench_circuit(3)
    feats, w, up = bench.bench_inputs(c, 16, seed=2)
    enc = encoding_params(c, feats).detach()
    pl = bench._forward_backward(bench.pennylane_probabilities(c), enc, w, up)
    ours = bench._forward_backward(StatevectorBackend(c).probabilities, enc, w, up)
    assert torch.allclose(pl[0], ours[0], atol=1e-10) and torch.allclose(pl[1], ours[1], atol=1e-10)


# --------------------------------------------------------------------------- backend fast paths
def _custom_circuits():
    """Permutations, signs and H between the data gates, a trailing frame after the last data gate."""
    g = Gate
    body = [
        g("ry", (2,), ("enc", 0)), g("x", (0,)), g("cz", (2, 0)), g("ry", (0,), ("enc", 1)), g("h", (1,)),
        g("cx", (0, 1)), g("ry", (1,), ("w", 0)), g("cz", (1, 2)), g("ry", (1,), ("enc", 2)), g("x", (2,)),
        g("ry", (2,), ("enc", 3)), g("h", (0,)), g("ry", (0,), ("w", 1)), g("cx", (2, 0)), g("cz", (0, 1)),
    ]  # fmt: skip
    tail = [g("ry", (0,), ("enc", 4)), g("cx", (0, 2)), g("x", (1,)), g("cz", (1, 0))]
    make = lambda gates, n_enc: Circuit(3, tuple(gates), n_enc, 2, "custom", np.eye(n_enc))  # noqa: E731
    return [make(body, 4), make(body + tail, 5)]


@pytest.mark.parametrize("circuit", _custom_circuits(), ids=["ends-in-block", "ends-in-frame"])
def test_statevector_program_handles_any_gate_order(circuit):
    g = torch.Generator().manual_seed(0)
    enc = torch.rand(5, circuit.n_enc, generator=g, dtype=torch.float64) * 8 - 4
    w = torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 8 - 4
    qc, ep, wp = to_qiskit(circuit)
    ref = np.array([Statevector(qc.assign_parameters(dict(zip(ep + wp, [*e.tolist(), *w.tolist()], strict=True))))
                    .probabilities() for e in enc])  # fmt: skip
    sv = StatevectorBackend(circuit)
    assert np.abs(sv.probabilities(enc, w).numpy() - ref).max() < 1e-12
    # Autograd through the fused program equals the parameter-shift rule on Aer (exact probabilities).
    up = torch.randn(5, 8, generator=g, dtype=torch.float64)
    got = bench._forward_backward(sv.probabilities, enc, w, up)
    want = bench._forward_backward(AerBackend(circuit, shots=0).probabilities, enc, w, up)
    assert torch.allclose(got[0], want[0], atol=1e-10) and torch.allclose(got[1], want[1], atol=1e-10)


@pytest.mark.parametrize("noise", [None, "depolarizing:0.02,0.1"])
def test_direct_aer_path_equals_aersimulator_run(noise, monkeypatch):
    c = build_circuit(3, "hea", 2)
    fast = AerBackend(c, shots=0, noise=noise)
    public = AerBackend(c, shots=0, noise=noise, direct=False)
    assert fast.executor.direct is not None and public.executor.direct is None
    monkeypatch.setattr(fast.executor.direct, "chunk", 7)  # several Aer calls per batch, the last one short
    rows = np.random.default_rng(1).uniform(-7, 7, size=(23, c.n_params))
    for values in (rows, rows[:1], rows[:7]):
        assert np.array_equal(fast.run_bound(values), public.run_bound(values))
    assert fast.executions == public.executions == 31
    assert fast.sim_seconds > 0 and public.sim_seconds > 0


def test_aer_keeps_to_the_public_path_when_the_direct_one_cannot_be_built(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise AttributeError("no controller here")

    monkeypatch.setattr(aer_direct, "DirectAer", broken)
    c = build_circuit(3, "h-ry")
    backend = AerBackend(c, shots=0)
    assert backend.executor.direct is None and "AerSimulator.run" in caplog.text
    g = torch.Generator().manual_seed(0)
    enc = encoding_params(c, torch.randn(4, 8, generator=g, dtype=torch.float64))
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64)
    assert torch.allclose(backend.probabilities(enc, w), StatevectorBackend(c).probabilities(enc, w), atol=1e-12)


def test_aer_run_leaves_the_garbage_collector_as_it_found_it():
    backend = AerBackend(build_circuit(3, "hea", 1), shots=10)
    rows = np.zeros((3, backend.circuit.n_params))
    assert gc.isenabled()
    backend.run_bound(rows)
    assert gc.isenabled()
    gc.disable()
    try:
        backend.run_bound(rows)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_aer_threads_follow_the_request_then_openmp(monkeypatch):
    """Ray sets OMP_NUM_THREADS to a worker's CPUs; a trial there must not run Aer on every core."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert aer_direct.aer_threads(0) == 1 and aer_direct.aer_threads(3) == 3
    c = build_circuit(3, "h-ry")
    assert AerBackend(c, shots=0).executor.direct._config.shots == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert aer_direct.aer_threads(None) >= 1
    assert AerBackend(c, shots=0, max_parallel_threads=2).executor.direct._config.shots == 2


def test_the_bench_command_parses_and_prints_the_table(monkeypatch, capsys, tmp_path):
    from bench import cli as cli_bench

    parser = cli_bench.build_parser()
    args = parser.parse_args([])
    assert (args.out, args.data_root, args.quick) == ("results/bench.json", None, False)
    args = parser.parse_args(["--out", str(tmp_path / "b.json"), "--data-root", "d", "--quick"])
    calls = []

    def fake_run_bench(out, data_root, quick=False, sweep_speedup=None, progress=print):
        calls.append((out, data_root, quick, sweep_speedup))
        return {"aer_grad_us_q3": 650.0, "ratio_naive_over_aer_grad_q3": 1250.0, "trial_dataset": "digits"}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    assert cli_bench.run(args) == 0
    assert calls == [(str(tmp_path / "b.json"), "d", True, None)]
    out = capsys.readouterr().out
    assert "650.0" in out and "1,250.0" in out and str(tmp_path / "b.json") in out


def test_the_sweep_benchmark_spec_is_eight_valid_trials(tmp_path):
    from bench.sweeps import TRIALS, _spec
    from sweep.grid import expand
    from sweep.spec import parse_spec

    spec = parse_spec(_spec(tmp_path / "r", None))  # no MNIST files: the embedded digits
    trials = expand(spec).trials
    assert len(trials) == TRIALS == 8
    assert {t.dataset for t in trials} == {"digits"} and {t.seed for t in trials} == set(range(8))
    assert all(t.backend == "aer" and t.effective_shots == 5000 and t.epochs == 10 for t in trials)
    assert spec.resources.cpus_per_trial == 1


def test_the_short_trial_benchmark_spec_groups_torch_executor_trials(tmp_path):
    from bench.sweeps import _spec
    from sweep.grid import expand
    from sweep.spec import parse_spec

    spec = parse_spec(_spec(tmp_path / "r", str(tmp_path), "statevector", seeds=16, per_task=8, short=True))
    trials = expand(spec).trials
    assert len(trials) == 16 and {t.dataset for t in trials} == {"digits"}
    assert all(t.backend == "statevector" and t.effective_shots == 5000 for t in trials)
    assert all(t.resolved().gradient == "parameter-shift" for t in trials)
    assert spec.resources.trials_per_task == 8
