"""``make bench``: what the quantum student costs, measured in one run on the same inputs.

Every sweep is hundreds of trials and quantum simulation is the cost of each,
so the numbers that matter are ratios between ways of computing the *same*
thing on the same machine: the project's Aer path against a naive per-sample
Qiskit loop, the torch statevector backend against PennyLane. Absolute times
move with the machine (and with whatever else runs on it: the JSON records the
load average before and after), ratios much less.

What is timed, all on one circuit (the issue's: amplitude encoding followed by
two layers of Ry on every qubit and a CNOT ring, ``hea`` x 2) and the same
features and weights:

* ``aer_*``: :class:`~workers.backends.AerBackend` with 5000 shots; forward
  alone (a batch of the evaluation size) and forward + parameter-shift
  gradient of every angle, encoding included (a batch of the training size),
  per sample;
* ``naive_*``: a fresh circuit per sample with ``initialize``, transpiled and
  run with 5000 shots; its gradient shifts the trainable angles only;
* ``sv_*``: :class:`~workers.backends.StatevectorBackend`, forward + backward
  at batch 1024, per sample; ``pennylane_*``: ``default.qubit`` with torch
  backprop on the same circuit and batch, when PennyLane is installed;
* ``trial_*``, ``peak_rss_mb_trial``: one whole trial at the paper's settings
  in a child process (so that its peak memory is its own), after its teacher
  has been cached.

Each timing is the median of repeats after a warm-up. It lives outside the product
(``bench/``), a tool that uses the trial package as a user would: the data files it looks for
are :mod:`workers.data`'s, the versions :mod:`workers.provenance`'s, the JSON is
written by :func:`workers.io.write_json`, the teacher is cached by
:func:`workers.teachers.task.prepare_teacher` (what the sweep's phase 1 calls). Nothing
here imports Ray: the sweep's own measurement (:mod:`bench.sweeps`) comes in
as ``sweep_speedup``, so that a quick run and the tests can leave it out or stand
in for it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from qiskit import QuantumCircuit, transpile
from qiskit_aer import AerSimulator

from sweep.configs import config_from_dict
from workers import data
from workers.backends import StatevectorBackend, make_backend
from workers.circuits import Circuit, Gate, build_circuit, encoding_params
from workers.config import TrialConfig
from workers.io import write_json
from workers.provenance import package_versions
from workers.teachers.task import prepare_teacher
from workers.trial import run_trial

BENCH_ANSATZ = "hea"
BENCH_LAYERS = 2
SHOTS = 5000
#: The raw IDX files a dataset's folder must hold: workers.data's own list, which it reads.
MNIST_FILES = data.IDX_FILES
_CHILD_MARK = "QKD-BENCH-TRIAL "


@dataclass(frozen=True)
class Sizes:
    """How much to measure: the full run, or a smoke run for the tests."""

    aer_grad_batch: int  # the trial's training batch
    aer_fwd_batch: int  # the trial's evaluation batch
    aer_repeats: int
    sv_batch: int
    sv_repeats: int
    naive_fwd_samples: int
    naive_grad_samples: int
    samples_per_class: int
    epochs: int
    teacher_epochs: int | None


FULL = Sizes(
    aer_grad_batch=32, aer_fwd_batch=256, aer_repeats=15, sv_batch=1024, sv_repeats=30,
    naive_fwd_samples=5, naive_grad_samples=3, samples_per_class=150, epochs=10, teacher_epochs=None,
)  # fmt: skip
QUICK = Sizes(
    aer_grad_batch=4, aer_fwd_batch=8, aer_repeats=2, sv_batch=64, sv_repeats=2,
    naive_fwd_samples=1, naive_grad_samples=1, samples_per_class=3, epochs=1, teacher_epochs=1,
)  # fmt: skip


# --------------------------------------------------------------------------- helpers
def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_circuit(n_qubits: int) -> Circuit:
    return build_circuit(n_qubits, BENCH_ANSATZ, BENCH_LAYERS)


def bench_inputs(circuit: Circuit, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, weights and an upstream gradient: every contender gets the same, whatever its batch.

    Three streams, so that a smaller batch is a prefix of a larger one and the
    weights do not depend on the batch size.
    """
    streams = [torch.Generator().manual_seed(seed * 3 + i) for i in range(3)]
    weights = torch.rand(circuit.n_weights, generator=streams[0], dtype=torch.float64) * 2 * math.pi
    features = torch.randn(batch, circuit.dim, generator=streams[1], dtype=torch.float64)
    upstream = torch.randn(batch, circuit.dim, generator=streams[2], dtype=torch.float64)
    return features, weights, upstream


def _forward_backward(probabilities: Callable, enc: torch.Tensor, weights: torch.Tensor, upstream: torch.Tensor):
    e = enc.detach().requires_grad_()
    w = weights.detach().requires_grad_()
    (probabilities(e, w) * upstream).sum().backward()
    return e.grad, w.grad


def machine_info() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    info = {
        "machine_cores": cores,
        "machine_usable_cores": usable,
        "machine_cpu_model": model,
        "machine_platform": platform.platform(),
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }
    # The versions every result row carries (null here when missing), and PennyLane's.
    info.update({k: v or None for k, v in package_versions().items()})
    try:
        info["pennylane_version"] = version("pennylane")
    except PackageNotFoundError:
        info["pennylane_version"] = None
    return info


# --------------------------------------------------------------------------- sampled
def time_sampled(circuit: Circuit, sizes: Sizes, executor: str = "aer", shots: int = SHOTS) -> dict:
    """Per-sample forward and forward + parameter-shift gradient with ``shots`` on an executor
    (``aer``: the project's Aer path; ``statevector``: the torch executor), the same
    measurement and gradient code on both."""
    batch = max(sizes.aer_grad_batch, sizes.aer_fwd_batch)
    features, weights, upstream = bench_inputs(circuit, batch)
    enc = encoding_params(circuit, features).detach()
    backend = make_backend(executor, circuit, shots, None, 0, gradient="parameter-shift")
    fwd_enc = enc[: sizes.aer_fwd_batch]
    grad_enc, grad_up = enc[: sizes.aer_grad_batch], upstream[: sizes.aer_grad_batch]

    def forward() -> None:
        with torch.no_grad():
            backend.probabilities(fwd_enc, weights)

    fwd = median_seconds(forward, sizes.aer_repeats)
    _forward_backward(backend.probabilities, grad_enc, weights, grad_up)  # warm-up
    walls, sims = [], []
    for _ in range(sizes.aer_repeats):
        sim0 = backend.sim_seconds
        t0 = time.perf_counter()
        _forward_backward(backend.probabilities, grad_enc, weights, grad_up)
        walls.append(time.perf_counter() - t0)
        sims.append(backend.sim_seconds - sim0)
    grad, sim = statistics.median(walls), statistics.median(sims)
    per_sample = 1 + 2 * circuit.n_params
    return {
        "fwd_us": fwd / sizes.aer_fwd_batch * 1e6,
        "grad_us": grad / sizes.aer_grad_batch * 1e6,
        "circuits_per_sample_grad": per_sample,
        "grad_us_per_circuit": grad / (sizes.aer_grad_batch * per_sample) * 1e6,
        "sim_us_per_circuit": sim / (sizes.aer_grad_batch * per_sample) * 1e6,
        "executor": backend.executor.name,
    }


# --------------------------------------------------------------------------- naive
def ansatz_gates(circuit: Circuit) -> tuple[Gate, ...]:
    """The gates after the amplitude encoding. The encoding is made of Ry(``enc``) gates and
    CNOTs alone (workers.circuits), and no ansatz begins with a CNOT, so the ansatz begins at
    the first gate that is neither."""
    for i, g in enumerate(circuit.gates):
        if g.name != "cx" and not (g.param and g.param[0] == "enc"):
            return circuit.gates[i:]
    return ()


def naive_frequencies(circuit: Circuit, features: np.ndarray, weights: np.ndarray, shots: int, simulator) -> np.ndarray:
    """One sample the naive way: a fresh circuit with ``initialize``, transpiled, run, counted."""

    x = np.tanh(np.asarray(features, dtype=np.float64))
    n = circuit.n_qubits
    qc = QuantumCircuit(n)
    qc.initialize(x / np.linalg.norm(x), range(n))  # the state the amplitude encoding prepares
    for g in ansatz_gates(circuit):
        if g.name == "ry":
            qc.ry(float(weights[g.param[1]]), g.qubits[0])
        else:
            getattr(qc, g.name)(*g.qubits)
    qc.measure_all()
    counts = simulator.run(transpile(qc, simulator), shots=shots).result().get_counts()
    freq = np.zeros(circuit.dim)
    for bits, k in counts.items():
        freq[int(bits.replace(" ", ""), 2)] = k / shots
    return freq


def naive_gradient(circuit: Circuit, features: np.ndarray, weights: np.ndarray, shots: int, simulator):
    """Frequencies and their parameter-shift Jacobian in the trainable angles, one fresh circuit each."""
    freq = naive_frequencies(circuit, features, weights, shots, simulator)
    jac = np.zeros((circuit.n_weights, circuit.dim))
    for k in range(circuit.n_weights):
        shift = np.zeros(circuit.n_weights)
        shift[k] = math.pi / 2
        plus = naive_frequencies(circuit, features, weights + shift, shots, simulator)
        minus = naive_frequencies(circuit, features, weights - shift, shots, simulator)
        jac[k] = (plus - minus) / 2
    return freq, jac


def time_naive(circuit: Circuit, sizes: Sizes, shots: int = SHOTS) -> dict:
    """Per-sample times of the naive loop, after one untimed sample."""

    features, weights, _ = bench_inputs(circuit, 1 + sizes.naive_fwd_samples + sizes.naive_grad_samples)
    f, w = features.numpy(), weights.numpy()
    simulator = AerSimulator(seed_simulator=0)
    naive_frequencies(circuit, f[0], w, shots, simulator)  # warm-up
    fwd, grad = [], []
    for row in f[1 : 1 + sizes.naive_fwd_samples]:
        t0 = time.perf_counter()
        naive_frequencies(circuit, row, w, shots, simulator)
        fwd.append(time.perf_counter() - t0)
    for row in f[1 + sizes.naive_fwd_samples :]:
        t0 = time.perf_counter()
        naive_gradient(circuit, row, w, shots, simulator)
        grad.append(time.perf_counter() - t0)
    return {
        "fwd_us": statistics.median(fwd) * 1e6,
        "grad_us": statistics.median(grad) * 1e6,
        "circuits_per_sample_grad": 1 + 2 * circuit.n_weights,
        "samples": len(fwd) + len(grad),
    }


# --------------------------------------------------------------------------- torch simulators
def time_statevector(circuit: Circuit, sizes: Sizes) -> float:
    """Forward + backward per sample on the statevector backend."""
    features, weights, upstream = bench_inputs(circuit, sizes.sv_batch)
    enc = encoding_params(circuit, features).detach()
    backend = StatevectorBackend(circuit)
    t = median_seconds(lambda: _forward_backward(backend.probabilities, enc, weights, upstream), sizes.sv_repeats)
    return t / sizes.sv_batch * 1e6


def time_large(n_qubits: int, quick: bool) -> dict:
    """Per-sample forward + gradient at ``n_qubits`` on the torch executor: exact with autograd
    (batch 64) and with 5000 shots and the parameter-shift rule (batch 4: 1 + 2P circuits per
    sample, 543 at 8 qubits); a couple of repeats, these take seconds each."""
    circuit = bench_circuit(n_qubits)
    out = {}
    for key, shots, batch in (("sv_grad_us", 0, 4 if quick else 64), ("sampled_grad_us", SHOTS, 1 if quick else 4)):
        features, weights, upstream = bench_inputs(circuit, batch)
        enc = encoding_params(circuit, features).detach()
        backend = make_backend("statevector", circuit, shots, None, 0)
        step = functools.partial(_forward_backward, backend.probabilities, enc, weights, upstream)
        out[f"{key}_q{n_qubits}"] = median_seconds(step, 1 if quick else 3) / batch * 1e6
    out[f"circuits_per_sample_grad_q{n_qubits}"] = 1 + 2 * circuit.n_params
    return out


def pennylane_probabilities(circuit: Circuit):
    """The same circuit as a PennyLane ``default.qubit`` QNode (torch, backprop), broadcast over the batch.

    PennyLane's wire 0 is the most significant bit of a basis index, ours the
    least: qubit q is wire n-1-q, so both return probabilities in one order.
    """
    import pennylane as qml  # noqa: PLC0415

    n = circuit.n_qubits
    device = qml.device("default.qubit", wires=n)
    fixed = {"h": qml.Hadamard, "x": qml.PauliX, "cx": qml.CNOT, "cz": qml.CZ}

    @qml.qnode(device, interface="torch", diff_method="backprop")
    def probabilities(enc, weights):
        for g in circuit.gates:
            wires = [n - 1 - q for q in g.qubits]
            if g.name == "ry":
                kind, k = g.param
                qml.RY(enc[:, k] if kind == "enc" else weights[k], wires=wires[0])
            else:
                fixed[g.name](wires=wires)
        return qml.probs(wires=list(range(n)))

    return probabilities


def time_pennylane(circuit: Circuit, sizes: Sizes) -> tuple[float, float] | None:
    """Forward + backward per sample with PennyLane, and its largest difference from the statevector backend."""
    try:
        probabilities = pennylane_probabilities(circuit)
    except ImportError:
        return None
    features, weights, upstream = bench_inputs(circuit, sizes.sv_batch)
    enc = encoding_params(circuit, features).detach()
    with torch.no_grad():
        diff = (probabilities(enc, weights) - StatevectorBackend(circuit).probabilities(enc, weights)).abs().max()
    t = median_seconds(lambda: _forward_backward(probabilities, enc, weights, upstream), sizes.sv_repeats)
    return t / sizes.sv_batch * 1e6, float(diff)


# --------------------------------------------------------------------------- one trial
def has_mnist(data_root: str | None) -> bool:
    """Whether MNIST's raw files are all under ``data_root`` (where workers.data reads them)."""
    root = Path(data_root).expanduser() / "MNIST" / "raw" if data_root else None
    return root is not None and all((root / f).is_file() for f in MNIST_FILES)


def trial_settings(data_root: str | None, sizes: Sizes, cache_dir: str, backend: str = "aer") -> dict:
    """The paper's trial as TrialConfig fields: real MNIST when its files are there, else digits at the same sizes;
    5000 shots on ``backend`` (the torch executor samples them too)."""
    root = data_root or os.environ.get("QKD_DATA_ROOT")
    mnist = has_mnist(root)
    return {
        "dataset": "mnist" if mnist else "digits",
        "classes": "0-5",
        "teacher": "lenet",
        "qubits": 3,
        "backend": backend,
        "shots": SHOTS,
        "epochs": sizes.epochs,
        "samples_per_class": sizes.samples_per_class,
        "test_samples_per_class": sizes.samples_per_class,
        "take_available": not mnist,
        "seed": 0,
        "data_root": root,
        "download": False,
        "cache_dir": cache_dir,
        "teacher_settings": {"epochs": sizes.teacher_epochs},
    }


def _config(settings: dict) -> TrialConfig:
    return config_from_dict(settings).validate()


def cache_teacher(settings: dict) -> None:
    """Train (or find) the trial's teacher in its cache, as the sweep's phase 1 does, so that
    the timed trials read its logits."""
    cfg = _config(settings)
    prepare_teacher(cfg.dataset, cfg.classes, cfg.teacher, cfg.teacher_settings, cfg.cache_dir,
                    cfg.data_root, cfg.download)  # fmt: skip


def _trial_child(settings_json: str) -> None:
    """Entry point of the child process: a one-epoch warm-up trial on two samples per class
    (what a worker has done before its second trial: imports, the data loaded, the teacher's
    logits read), then the trial, then its wall time and peak memory on stdout."""

    settings = json.loads(settings_json)
    t0 = time.perf_counter()
    run_trial(_config({**settings, "epochs": 1, "samples_per_class": 2, "test_samples_per_class": 2,
                       "take_available": True}))  # fmt: skip
    first = time.perf_counter() - t0
    cfg = _config(settings)
    t0 = time.perf_counter()
    result = run_trial(cfg)
    wall = time.perf_counter() - t0
    row = result.row
    report = {
        "wall_s": wall,
        "warmup_s": first,
        "executor": row.get("executor"),
        "row_wall_s": row.get("wall_s"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "status": row.get("status"),
        "test_acc": row.get("test_acc"),
        "n_train": row.get("n_train"),
        "n_test": row.get("n_test"),
        "teacher_cached": row.get("teacher_cached"),
        "circuit_executions": row.get("circuit_executions"),
    }
    print(_CHILD_MARK + json.dumps(report), flush=True)


def run_trial_in_child(settings: dict, timeout: float | None = None) -> dict:
    """One trial in a fresh interpreter, so that ``ru_maxrss`` is that trial's and nothing else's."""
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "import sys; from bench.quantum import _trial_child; _trial_child(sys.argv[1])"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(settings)],
                          capture_output=True, text=True, env=env, timeout=timeout)  # fmt: skip
    process_wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_CHILD_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench trial failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(lines[-1][len(_CHILD_MARK) :])
    report["process_wall_s"] = process_wall
    return report


# --------------------------------------------------------------------------- the run
#: (key, label, unit) in the order the table shows them.
TABLE = (
    ("aer_fwd_us_q3", "Aer forward, 3 qubits", "us/sample"),
    ("aer_grad_us_q3", "Aer forward + parameter shift, 3 qubits", "us/sample"),
    ("aer_fwd_us_q4", "Aer forward, 4 qubits", "us/sample"),
    ("aer_grad_us_q4", "Aer forward + parameter shift, 4 qubits", "us/sample"),
    ("aer_grad_us_per_circuit_q3", "  per bound circuit, 3 qubits", "us"),
    ("aer_sim_us_per_circuit_q3", "  of which Aer simulating (its own timer)", "us"),
    ("naive_fwd_us_q3", "naive loop forward, 3 qubits", "us/sample"),
    ("naive_grad_us_q3", "naive loop + shift of trainable angles", "us/sample"),
    ("sv_grad_us_q3", "statevector forward + backward, 3 qubits", "us/sample"),
    ("sv_grad_us_q4", "statevector forward + backward, 4 qubits", "us/sample"),
    ("pennylane_grad_us_q3", "PennyLane default.qubit backprop, 3 qubits", "us/sample"),
    ("sampled_grad_us_q3", "torch executor, 5000 shots, + parameter shift, 3 qubits", "us/sample"),
    ("sampled_us_per_circuit_q3", "  per bound circuit, 3 qubits", "us"),
    ("sampled_grad_us_q4", "torch executor, 5000 shots, + parameter shift, 4 qubits", "us/sample"),
    ("sv_grad_us_q8", "statevector forward + backward, 8 qubits", "us/sample"),
    ("sampled_grad_us_q8", "torch executor, 5000 shots, + parameter shift, 8 qubits", "us/sample"),
    ("trial_wall_s_aer_q3", "one trial, paper settings, Aer", "s"),
    ("trial_wall_s_sampled_q3", "the same trial, torch executor, 5000 shots", "s"),
    ("peak_rss_mb_trial", "peak memory of that trial's process", "MB"),
    ("sweep_speedup_2_workers", "8-trial sweep, 1 worker / 2 workers", "x"),
    ("ratio_naive_over_aer_grad_q3", "naive / Aer (gradient), 3 qubits", "x"),
    ("ratio_aer_over_sampled_per_circuit_q3", "Aer / torch executor, per circuit, 3 qubits", "x"),
    ("ratio_trial_aer_over_sampled_q3", "Aer / torch executor, one trial", "x"),
    ("ratio_pennylane_over_sv_grad_q3", "PennyLane / statevector, 3 qubits", "x"),
)


def format_table(result: dict) -> str:
    """The measurements as an aligned text table, then the machine."""

    def fmt(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    rows = [(label, fmt(result.get(key)), unit) for key, label, unit in TABLE]
    width = max(len(r[0]) for r in rows)
    lines = [f"{label:<{width}}  {value:>12}  {unit}" for label, value, unit in rows]
    lines.append(
        f"trial: {result.get('trial_dataset')} {result.get('trial_n_train')}/{result.get('trial_n_test')}, "
        f"{result.get('trial_epochs')} epochs, test_acc {fmt(result.get('trial_test_acc'))}"
    )
    lines.append(
        f"machine: {result.get('machine_cores')} cores, {result.get('machine_cpu_model')}; "
        f"load {fmt(result.get('load_avg_1m_start'))} -> {fmt(result.get('load_avg_1m_end'))}"
    )
    return "\n".join(lines)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_bench(
    out: str | Path | None,
    data_root: str | None,
    quick: bool = False,
    sweep_speedup: Callable[[], float | dict] | None = None,
    progress: Callable[[str], object] = print,
    cache_dir: str | Path | None = None,
) -> dict:
    """Measure everything, write the flat JSON object to ``out`` (when given) and return it.

    ``sweep_speedup`` is the sweep driver's own measurement (wall time of an
    8-trial sweep on one worker over the same sweep on two); it lives with the
    driver, since this module stays free of Ray. ``cache_dir`` holds the
    trial's teacher; by default it is the project's teacher cache (a quick run
    uses a temporary one), so a second run trains no teacher.
    """
    sizes = QUICK if quick else FULL
    result: dict = {"quick": quick, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result.update(machine_info())
    result["load_avg_1m_start"] = os.getloadavg()[0]
    result.update({
        "bench_ansatz": BENCH_ANSATZ, "bench_layers": BENCH_LAYERS, "shots": SHOTS,
        "aer_grad_batch": sizes.aer_grad_batch, "aer_fwd_batch": sizes.aer_fwd_batch,
        "aer_repeats": sizes.aer_repeats, "sv_batch": sizes.sv_batch, "sv_repeats": sizes.sv_repeats,
    })  # fmt: skip

    # The torch simulators first, in a process that has not yet run Qiskit: its
    # transpiler and Aer leave thread pools behind that slow torch's two-thread
    # kernels on these tiny tensors by up to 1.6x (docs/performance.md), and a
    # statevector trial never loads Qiskit.
    for n in (3, 4):
        progress(f"bench: statevector backend, {n} qubits")
        result[f"sv_grad_us_q{n}"] = time_statevector(bench_circuit(n), sizes)

    for n in (3, 4):
        progress(f"bench: torch executor with {SHOTS} shots, {n} qubits")
        sampled = time_sampled(bench_circuit(n), sizes, "statevector")
        result[f"sampled_fwd_us_q{n}"] = sampled["fwd_us"]
        result[f"sampled_grad_us_q{n}"] = sampled["grad_us"]
        result[f"sampled_us_per_circuit_q{n}"] = sampled["grad_us_per_circuit"]

    progress("bench: torch executor, 8 qubits, exact and with 5000 shots")
    result.update(time_large(8, quick))

    progress("bench: PennyLane default.qubit, 3 qubits")
    pl = time_pennylane(bench_circuit(3), sizes)
    result["pennylane_grad_us_q3"] = pl[0] if pl else None
    result["pennylane_max_abs_diff_q3"] = pl[1] if pl else None

    for n in (3, 4):
        progress(f"bench: Aer path, {n} qubits")
        aer = time_sampled(bench_circuit(n), sizes, "aer")
        result[f"aer_fwd_us_q{n}"] = aer["fwd_us"]
        result[f"aer_grad_us_q{n}"] = aer["grad_us"]
        result[f"aer_circuits_per_sample_grad_q{n}"] = aer["circuits_per_sample_grad"]
        result[f"aer_grad_us_per_circuit_q{n}"] = aer["grad_us_per_circuit"]
        result[f"aer_sim_us_per_circuit_q{n}"] = aer["sim_us_per_circuit"]
        result["aer_direct_path"] = aer["executor"] == "aer-direct"

    progress("bench: naive per-sample loop, 3 qubits")
    naive = time_naive(bench_circuit(3), sizes)
    result["naive_fwd_us_q3"] = naive["fwd_us"]
    result["naive_grad_us_q3"] = naive["grad_us"]
    result["naive_circuits_per_sample_grad_q3"] = naive["circuits_per_sample_grad"]
    result["naive_samples"] = naive["samples"]

    with tempfile.TemporaryDirectory() as tmp:
        if cache_dir is None:  # the project's default teacher cache; a smoke run keeps out of it
            cache_dir = Path(tmp) / "cache" if quick else Path(TrialConfig().cache_dir)
        settings = trial_settings(data_root, sizes, str(cache_dir))
        progress(f"bench: caching the teacher ({settings['dataset']})")
        cache_teacher(settings)
        progress(f"bench: one trial on {settings['dataset']} in a child process, Aer")
        trial = run_trial_in_child(settings)
        progress(f"bench: the same trial on the torch executor, {SHOTS} shots")
        fast = run_trial_in_child(trial_settings(data_root, sizes, str(cache_dir), backend="statevector"))
    result.update({
        "trial_dataset": settings["dataset"], "trial_epochs": settings["epochs"],
        "trial_n_train": trial["n_train"], "trial_n_test": trial["n_test"],
        "trial_wall_s_aer_q3": trial["wall_s"], "trial_process_wall_s": trial["process_wall_s"],
        "trial_warmup_s_aer_q3": trial.get("warmup_s"), "trial_executor_aer": trial.get("executor"),
        "trial_status": trial["status"], "trial_test_acc": trial["test_acc"],
        "trial_teacher_cached": trial["teacher_cached"], "trial_circuit_executions": trial["circuit_executions"],
        "peak_rss_mb_trial": trial["peak_rss_mb"],
        "trial_wall_s_sampled_q3": fast["wall_s"], "trial_process_wall_s_sampled": fast["process_wall_s"],
        "trial_warmup_s_sampled_q3": fast.get("warmup_s"), "trial_status_sampled": fast["status"],
        "trial_test_acc_sampled": fast["test_acc"], "peak_rss_mb_trial_sampled": fast["peak_rss_mb"],
        # The same seed, stream and probabilities (to ~1e-12): the same counts, so the same accuracy.
        "trial_same_test_acc": fast["test_acc"] == trial["test_acc"],
    })  # fmt: skip

    result["sweep_speedup_2_workers"] = None
    if sweep_speedup is not None:
        progress("bench: sweep speedup with 2 workers")
        measured = sweep_speedup()  # a number, or flat keys that include sweep_speedup_2_workers
        result.update(measured if isinstance(measured, dict) else {"sweep_speedup_2_workers": float(measured)})

    result["ratio_naive_over_aer_grad_q3"] = result["naive_grad_us_q3"] / result["aer_grad_us_q3"]
    result["ratio_aer_over_sampled_per_circuit_q3"] = (
        result["aer_grad_us_per_circuit_q3"] / result["sampled_us_per_circuit_q3"]
    )
    result["ratio_trial_aer_over_sampled_q3"] = result["trial_wall_s_aer_q3"] / result["trial_wall_s_sampled_q3"]
    pl_us = result["pennylane_grad_us_q3"]
    result["ratio_pennylane_over_sv_grad_q3"] = pl_us / result["sv_grad_us_q3"] if pl_us else None
    result["load_avg_1m_end"] = os.getloadavg()[0]
    result = {k: _finite_or_none(v) for k, v in result.items()}

    if out is not None:  # whole or not at all; every value is finite or null by now
        write_json(result, out)
    return result
