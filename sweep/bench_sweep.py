"""The sweep's own benchmark: the same 8-trial sweep with one worker and with two.

Each run is a fresh ``qkd-sweep sweep`` process with a local Ray of 1 or 2
CPUs (one trial per CPU), on the embedded digits data, so the two runs differ
only in how many trials run at once. Reported: the speed-up of the student
phase (Ray Tune's ``fit``, teachers excluded: the baseline trials need none)
and of the whole command (Ray's start included), and Ray's per-trial
overhead: the one-worker phase time over the sum of the trials' own wall
times, minus one. Beside them, the ceiling: two plain ``qkd-sweep trial``
processes at once (one thread each, no Ray) over one alone, which is what
this machine gives two single-threaded trials whatever runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TRIALS = 8


def _spec(results: Path, data_root: str | None) -> dict:
    """Baseline trials at the paper's settings on MNIST 0-5 when its files are there, else digits."""
    mnist = data_root is not None and (Path(data_root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    per_class = 150 if mnist else 80
    grid = {"dataset": "mnist" if mnist else "digits", "classes": "0-5", "teacher": "none", "qubits": 3}
    trial = {"backend": "aer", "shots": 5000, "epochs": 10}
    return {
        "name": "bench-sweep",
        "grid": {**grid, "seed": list(range(TRIALS))},
        "trial": {**trial, "samples_per_class": per_class, "test_samples_per_class": per_class},
        "paths": {
            "results": str(results),
            "download": False,
            "data_root": str(Path(data_root).resolve()) if mnist else None,
        },  # fmt: skip
        "resources": {"cpus_per_trial": 1},
    }


def _run(workers: int, root: Path, data_root: str | None) -> dict:
    spec = root / f"spec-{workers}.yaml"
    spec.write_text(yaml.safe_dump(_spec(root / f"w{workers}", data_root)))
    code = (
        "import json, sys, time\n"
        "from sweep.driver import run_sweep\n"
        "from sweep.spec import load_spec\n"
        "s = run_sweep(load_spec(sys.argv[1]), num_cpus=int(sys.argv[2]), progress=lambda _: None, verbose=0)\n"
        "print(json.dumps({'phase2_s': s.phase2_s, 'wall_s': s.wall_s, 'finished': s.finished}))\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(spec), str(workers)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    command_s = time.perf_counter() - t0
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["finished"] != TRIALS:
        raise RuntimeError(f"bench sweep with {workers} worker(s) finished {got['finished']} of {TRIALS} trials")
    import pandas as pd  # noqa: PLC0415

    trials = pd.read_parquet(root / f"w{workers}" / "bench-sweep" / "trials.parquet")
    return {**got, "command_s": command_s, "trial_s_sum": float(trials.wall_s.sum()),
            "dataset": str(trials.dataset.iloc[0])}  # fmt: skip


def _bare_ceiling(data_root: str | None, root: Path) -> float:
    """Throughput of two plain trial processes at once over one alone (no Ray): what two
    single-threaded trials can get from this machine, the ceiling for the sweep's speed-up."""
    spec = _spec(root, data_root)
    cfg = {**spec["grid"], **spec["trial"], "seed": 0}
    args = [str(Path(sys.executable).parent / "qkd-sweep"), "trial", "-q", "--dataset", cfg["dataset"],
            "--classes", cfg["classes"], "--teacher", "none", "--qubits", "3", "--shots", "5000",
            "--epochs", "10", "--samples-per-class", str(cfg["samples_per_class"]),
            "--test-samples-per-class", str(cfg["test_samples_per_class"]), "--no-download"]  # fmt: skip
    if spec["paths"]["data_root"]:
        args += ["--data-root", spec["paths"]["data_root"]]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}  # as Ray gives a 1-CPU trial

    def wall(n: int) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([*args, "--seed", str(i), "--out", str(root / f"bare{n}-{i}")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]  # fmt: skip
        if any(p.wait() for p in procs):
            raise RuntimeError("a bare trial process failed")
        return time.perf_counter() - t0

    wall(1)  # warm the page cache and the teacher-free path
    return 2 * wall(1) / wall(2)


def measure(data_root: str | None = None, progress=print) -> dict:
    """Flat keys for the bench JSON."""
    with tempfile.TemporaryDirectory(prefix="qkd-bench-sweep-") as d:
        root = Path(d)
        one = _run(1, root, data_root)
        progress(f"  sweep, 1 worker: {one['phase2_s']:.1f}s for {TRIALS} trials")
        two = _run(2, root, data_root)
        progress(f"  sweep, 2 workers: {two['phase2_s']:.1f}s for {TRIALS} trials")
        ceiling = _bare_ceiling(data_root, root)
        progress(f"  two plain trial processes at once, no Ray: {ceiling:.2f}x the throughput of one")
    return {
        "sweep_speedup_2_workers": one["phase2_s"] / two["phase2_s"],
        "sweep_speedup_2_workers_whole_command": one["command_s"] / two["command_s"],
        "bare_speedup_2_processes": ceiling,
        "sweep_phase_s_1_worker": one["phase2_s"],
        "sweep_phase_s_2_workers": two["phase2_s"],
        "sweep_command_s_1_worker": one["command_s"],
        "sweep_command_s_2_workers": two["command_s"],
        "sweep_trials": TRIALS,
        "sweep_dataset": one["dataset"],
        "sweep_trial_wall_s_mean": one["trial_s_sum"] / TRIALS,
        "ray_overhead_frac_per_trial": one["phase2_s"] / one["trial_s_sum"] - 1,
    }
