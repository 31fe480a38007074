"""The sweep's own benchmarks: whole ``qkd-sweep sweep`` runs, each in a fresh process.

* **Two workers** (``sweep_speedup_2_workers``, ``sweep_efficiency_2_workers``): the
  same 8-trial baseline sweep on a local Ray of 1 and of 2 CPUs (one trial per CPU),
  on Aer and on the torch executor. The speed-up is the student phase's (Ray Tune's
  ``fit``; baseline trials need no teacher); the *efficiency* is that speed-up over
  the ceiling measured in the same run: two plain ``qkd-sweep trial`` processes at
  once (one thread each, no Ray) over one alone, which is what this machine gives two
  single-threaded trials whatever runs them.
* **Dispatch** (``tune_overhead_pct_short_trials``): a one-worker sweep of short trials
  (about a second each, torch executor, 5000 shots, grouped ``trials_per_task``):
  the student phase's wall time over the sum of its trials' own wall times, minus one.
* **The paper's MNIST cells** (``sweep_wall_s_paper_mnist_*``): the MNIST part of
  ``specs/paper.yaml`` on 2 workers, the whole command (Ray's start included), with
  the students on the torch executor with shots and on Aer, teachers cached first
  (untimed). Baselines and LeNet only (``--only teacher=none --only teacher=lenet``,
  30 of the 60 trials): the AlexNet teachers cost 40-50 CPU-minutes per cell on 2
  cores; a student trial costs the same whatever its teacher. The count is in the JSON.
* **The quickstart** (``quickstart_wall_s``): ``qkd-sweep sweep specs/quickstart.yaml``
  from an empty results folder and an empty teacher cache, the whole command.

Everything runs on 127.0.0.1 (the driver's local Ray) and writes under a temporary
folder, except the teacher cache of the paper's cells, which is the project's
(``results/cache``) so that a second ``make bench`` trains nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from bench.quantum import has_mnist
from bench.writes import write_cost

TRIALS = 8
REPO = Path(__file__).resolve().parents[1]
QKD = str(Path(sys.executable).parent / "qkd-sweep")


def _spec(results: Path, data_root: str | None, backend: str = "aer", seeds: int = TRIALS,
          per_task: int = 1, short: bool = False) -> dict:  # fmt: skip
    """Baseline trials at the paper's settings on MNIST 0-5 when its files are there, else digits;
    ``short``: digits, the quickstart's sizes (trials of about a second on the torch executor)."""
    mnist = has_mnist(data_root) and not short
    per_class = 150 if mnist else 80
    grid = {"dataset": "mnist" if mnist else "digits", "classes": "0-5", "teacher": "none", "qubits": 3}
    trial = {"backend": backend, "shots": 5000, "epochs": 10}
    return {
        "name": "bench-sweep",
        "grid": {**grid, "seed": list(range(seeds))},
        "trial": {**trial, "samples_per_class": per_class, "test_samples_per_class": per_class},
        "paths": {
            "results": str(results),
            "download": False,
            "data_root": str(Path(data_root).resolve()) if mnist else None,
        },  # fmt: skip
        "resources": {"cpus_per_trial": 1, "trials_per_task": per_task},
    }


_DRIVER = (
    "import json, sys, time\n"
    "from sweep.driver import run_sweep\n"
    "from sweep.spec import load_spec\n"
    "s = run_sweep(load_spec(sys.argv[1]), num_cpus=int(sys.argv[2]), progress=lambda _: None, verbose=0)\n"
    "print(json.dumps({'phase2_s': s.phase2_s, 'wall_s': s.wall_s, 'finished': s.finished}))\n"
)


def _run(spec: dict, workers: int, root: Path, tag: str) -> dict:
    """One sweep in a fresh process: its phase-2 and whole-command times and its trials' own."""
    spec = {**spec, "paths": {**spec["paths"], "results": str(root / tag)}}
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"spec-{tag}.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _DRIVER, str(path), str(workers)],
                         capture_output=True, text=True, check=True, cwd=REPO)  # fmt: skip
    command_s = time.perf_counter() - t0
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = len(spec["grid"]["seed"])
    if got["finished"] != expected:
        raise RuntimeError(f"bench sweep {tag} finished {got['finished']} of {expected} trials")

    trials = pd.read_parquet(root / tag / spec["name"] / "trials.parquet")
    return {**got, "command_s": command_s, "trial_s_sum": float(trials.wall_s.sum()),
            "dataset": str(trials.dataset.iloc[0]), "executor": str(trials.executor.iloc[0])}  # fmt: skip


def _bare_ceiling(spec: dict, root: Path) -> float:
    """Throughput of two plain trial processes at once over one alone (no Ray): what two
    single-threaded trials can get from this machine, the ceiling for the sweep's speed-up."""
    cfg = {**spec["grid"], **spec["trial"], "seed": 0}
    args = [QKD, "trial", "-q", "--dataset", cfg["dataset"], "--classes", cfg["classes"], "--teacher", "none",
            "--qubits", "3", "--backend", cfg["backend"], "--shots", "5000", "--epochs", "10",
            "--samples-per-class", str(cfg["samples_per_class"]),
            "--test-samples-per-class", str(cfg["test_samples_per_class"]), "--no-download"]  # fmt: skip
    if spec["paths"]["data_root"]:
        args += ["--data-root", spec["paths"]["data_root"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as Ray gives a 1-CPU trial

    def wall(n: int) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([*args, "--seed", str(i), "--out", str(root / f"bare{n}-{i}")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]  # fmt: skip
        if any(p.wait() for p in procs):
            raise RuntimeError("a bare trial process failed")
        return time.perf_counter() - t0

    wall(1)  # warm the page cache and the teacher-free path
    return 2 * wall(1) / wall(2)


def two_workers(data_root: str | None, root: Path, backend: str, progress=print) -> dict:
    spec = _spec(root, data_root, backend)
    one = _run(spec, 1, root, f"{backend}-w1")
    progress(f"  {backend} sweep, 1 worker: {one['phase2_s']:.1f}s for {TRIALS} trials")
    two = _run(spec, 2, root, f"{backend}-w2")
    progress(f"  {backend} sweep, 2 workers: {two['phase2_s']:.1f}s for {TRIALS} trials")
    ceiling = _bare_ceiling(spec, root)
    progress(f"  two plain {backend} trial processes at once, no Ray: {ceiling:.2f}x the throughput of one")
    speedup = one["phase2_s"] / two["phase2_s"]
    return {
        "speedup": speedup,
        "efficiency": speedup / ceiling,
        "whole_command_speedup": one["command_s"] / two["command_s"],
        "bare": ceiling,
        "one": one,
        "two": two,
    }


def short_trials(root: Path, progress=print, per_task: int = 8, seeds: int = 16) -> dict:
    """A one-worker sweep of ~1 s trials: Tune's share of the student phase."""
    got = _run(_spec(root, None, "statevector", seeds=seeds, per_task=per_task, short=True), 1, root, "short")
    overhead = got["phase2_s"] / got["trial_s_sum"] - 1
    progress(f"  {seeds} short trials, {per_task} per task, 1 worker: phase {got['phase2_s']:.1f}s, "
             f"trials' own {got['trial_s_sum']:.1f}s: overhead {100 * overhead:.1f}%")  # fmt: skip
    return {"tune_overhead_pct_short_trials": 100 * overhead, "short_trials": seeds,
            "short_trials_per_task": per_task, "short_trial_wall_s_mean": got["trial_s_sum"] / seeds,
            "short_phase_s": got["phase2_s"]}  # fmt: skip


def paper_mnist(data_root: str, root: Path, progress=print) -> dict:
    """The MNIST part of specs/paper.yaml on 2 workers: torch executor with shots, and Aer."""
    cache = REPO / "results" / "cache"
    teachers = ["none", "lenet"]  # LeNet (minutes on 2 cores) is trained if missing; AlexNet is not
    base = yaml.safe_load((REPO / "specs" / "paper.yaml").read_text())
    only = [f"--only=teacher={t}" for t in teachers] + ["--only=dataset=mnist"]
    out: dict = {"paper_mnist_teachers": ",".join(teachers)}
    root.mkdir(parents=True, exist_ok=True)
    for backend in ("statevector", "aer"):
        spec = {**base, "name": f"paper-{backend}", "trial": {**base["trial"], "backend": backend},
                "paths": {**base["paths"], "results": str(root / backend), "cache": str(cache),
                          "data_root": str(Path(data_root).resolve()), "download": False}}  # fmt: skip
        path = root / f"paper-{backend}.yaml"
        path.write_text(yaml.safe_dump(spec))
        cmd = [QKD, "sweep", str(path), "--quiet", "--no-tables", "--num-cpus", "2", *only]
        if backend == "statevector":  # phase 1 for the teachers, untimed: the key is with teachers cached
            tiny = {"epochs": 1, "samples_per_class": 2, "test_samples_per_class": 2}
            warm = {**spec, "name": "paper-warm", "paths": {**spec["paths"], "results": str(root / "warm")},
                    "trial": {**spec["trial"], **tiny}}  # fmt: skip
            (root / "warm.yaml").write_text(yaml.safe_dump(warm))
            subprocess.run([QKD, "sweep", str(root / "warm.yaml"), "--quiet", "--no-tables", "--num-cpus", "2",
                            *only], check=True, capture_output=True, cwd=REPO)  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - t0

        trials = pd.read_parquet(root / backend / spec["name"] / "trials.parquet")
        key = "sampled" if backend == "statevector" else "aer"
        out[f"sweep_wall_s_paper_mnist_{key}"] = wall
        out[f"paper_mnist_trials_{key}"] = len(trials)
        out[f"paper_mnist_test_acc_mean_{key}"] = float(trials.test_acc.mean())
        progress(f"  paper.yaml MNIST ({len(trials)} trials, teachers {'/'.join(teachers)}), {backend}: {wall:.1f}s")
    return out


def quickstart(root: Path, progress=print) -> dict:
    """``qkd-sweep sweep specs/quickstart.yaml`` from an empty results folder and teacher cache."""
    base = yaml.safe_load((REPO / "specs" / "quickstart.yaml").read_text())
    spec = {**base, "paths": {**base.get("paths", {}), "results": str(root / "quickstart")}}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "quickstart.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    proc = subprocess.run([QKD, "sweep", str(path), "--quiet"], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"quickstart failed: {proc.stderr.strip()[-500:]}")
    log = REPO / "results" / "bench-quickstart.log"  # what a newcomer's `make sweep` prints, tables included
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)

    teachers = pd.read_parquet(root / "quickstart" / "quickstart" / "teachers.parquet")
    trials = pd.read_parquet(root / "quickstart" / "quickstart" / "trials.parquet")
    progress(f"  quickstart: {wall:.1f}s ({len(trials)} trials, teachers {float(teachers.train_seconds.sum()):.0f}s)")
    return {"quickstart_wall_s": wall, "quickstart_teacher_wall_s": float(teachers.train_seconds.sum()),
            "quickstart_trial_wall_s_sum": float(trials.wall_s.sum()),
            "quickstart_executor": str(trials.executor.iloc[0])}  # fmt: skip


def _part(out: dict, name: str, progress, fn, *args) -> None:
    """One measurement into ``out``; a failure is a key saying why (the others still run)."""
    try:
        out.update(fn(*args))
    except Exception as exc:  # noqa: BLE001 - a bench reports what failed instead of stopping
        out[f"{name}_error"] = f"{type(exc).__name__}: {str(exc).strip()[-300:]}"
        progress(f"  {name} failed: {out[name + '_error']}")


def _two_workers_keys(data_root: str | None, root: Path, backend: str, key: str, progress) -> dict:
    got = two_workers(data_root, root, backend, progress)
    one = got["one"]
    return {
        f"sweep_speedup_2_workers_{key}": got["speedup"],
        f"sweep_efficiency_2_workers_{key}": got["efficiency"],
        f"sweep_speedup_2_workers_whole_command_{key}": got["whole_command_speedup"],
        f"bare_speedup_2_processes_{key}": got["bare"],
        f"sweep_phase_s_1_worker_{key}": one["phase2_s"],
        f"sweep_phase_s_2_workers_{key}": got["two"]["phase2_s"],
        f"sweep_trial_wall_s_mean_{key}": one["trial_s_sum"] / TRIALS,
        f"ray_overhead_frac_per_trial_{key}": one["phase2_s"] / one["trial_s_sum"] - 1,
        "sweep_dataset": one["dataset"],
    }


def measure(data_root: str | None = None, progress=print) -> dict:
    """Flat keys for the bench JSON."""

    out: dict = {"sweep_trials": TRIALS}
    with tempfile.TemporaryDirectory(prefix="qkd-bench-sweep-") as d:
        root = Path(d)
        for backend, key in (("aer", "aer"), ("statevector", "sampled")):
            _part(out, f"sweep_{key}", progress, _two_workers_keys, data_root, root / backend, backend, key, progress)
        # The headline figures are Aer's, as before; both executors' are in the keys above.
        out["sweep_speedup_2_workers"] = out.get("sweep_speedup_2_workers_aer")
        effs = [out[k] for k in ("sweep_efficiency_2_workers_aer", "sweep_efficiency_2_workers_sampled") if k in out]
        out["sweep_efficiency_2_workers"] = min(effs) if effs else None
        out["bare_speedup_2_processes"] = out.get("bare_speedup_2_processes_aer")
        _part(out, "short_trials", progress, short_trials, root / "short", progress)
        if has_mnist(data_root):
            _part(out, "paper_mnist", progress, paper_mnist, data_root, root / "paper", progress)
        else:
            out["sweep_wall_s_paper_mnist_sampled"] = out["sweep_wall_s_paper_mnist_aer"] = None
        _part(out, "quickstart", progress, quickstart, root / "qs", progress)
    progress("  result writes per trial at 100, 1,000 and 10,000 rows")
    _part(out, "writes", progress, write_cost)
    return out
