"""Run one of the paper's notebooks as it is, in its own environment (issue 23).

The notebooks are read from the public repository
``junayed-hasan/Quantum-Machine-Learning`` (a bare git directory fetched
outside this repository, or a notebook path given on the command line);
nothing of their code is copied here. The code cells run unmodified except for
the few text replacements listed in ``REPLACEMENTS`` and the prelude in
``prelude()``, each printed and checked against the number of times it must
match before anything runs:

- the data root (``root='./data'``) and ``download=True`` -> ``False``;
- the epoch count (``epochs = 10``);
- plotting and file saves become no-ops (``plt.show``, ``plt.savefig``,
  ``torch.save``, the circuit drawing ``circuit.circuit.draw(output='mpl')``)
  and IPython magics (``%matplotlib inline``) are dropped;
- with ``--teacher-pth``, the teacher's ``torch.load("...pth")`` path;
- with ``--as-teacher`` (a teacher notebook, which loops ``range(10)`` with no
  ``epochs`` variable), no epoch replacement and ``torch.save`` kept: the
  weights are written into the seed's scratch folder, for ``--teacher-pth``;
- a prelude before the first cell seeds ``torch``, ``numpy`` and ``random``
  (the notebooks' own ``np.random.seed = 42`` assigns over the function and
  seeds nothing); Aer's simulator seed is left as the notebooks have it
  (unset); and where no cell assigns ``MODE`` (the MNIST 0-7 3-qubit baseline
  reads a ``MODE`` no cell defines), ``MODE = 'QC'``, the quantum layer its
  printed run used.

Each seed runs in its own process in the reference virtual environment
(``--venv``, built from ``requirements.txt`` when missing) and writes its
per-epoch rows to ``<out>/<label>/seed-<seed>.parquet`` when it finishes;
a rerun skips seeds whose file exists.

    python docs/results/paper-code/reference/run.py \\
        --git-dir ../.mirror/junayed-hasan+Quantum-Machine-Learning/repo \\
        --notebook 'MNIST Experiments/Baseline students/mnist 0-7 3qubits.ipynb' \\
        --epochs 3 --seeds 0-19 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[3]
# Beside the checkout (its parent folder), never inside it.
DEFAULT_VENV = str(REPO_ROOT.parent / "qkd-ref-venv")
DEFAULT_COMMIT = "5db65f14b1a73a3456e3ec365173d466359c5f94"
DEFAULT_GIT_DIR = str(REPO_ROOT.parent / ".mirror" / "junayed-hasan+Quantum-Machine-Learning" / "repo")
DEFAULT_DATA_ROOT = str((REPO_ROOT / ".." / "shared" / "data").resolve())
DEFAULT_SCRATCH = str(REPO_ROOT.parent / "qkd-ref-scratch")
MARK = "##REF "

# (name, old, new, how many matches are required: an int, or "any" for >= 0).
# Applied to every code cell in this order; "{...}" fields are filled from the
# command line.
REPLACEMENTS = [
    ("data root", "root='./data'", "root={data_root!r}", "any"),
    ("no download", "download=True", "download=False", "any"),
    ("epoch count", "epochs = 10\n", "epochs = {epochs}\n", 1),
    ("no torch.save", "torch.save(", "_ref_noop(", "any"),
    ("no savefig", "plt.savefig(", "_ref_noop(", "any"),
    ("no show", "plt.show()", "_ref_noop()", "any"),
    ("no circuit drawing", "circuit.circuit.draw(output='mpl')", "None", "any"),
]
MAGIC = re.compile(r"^[ \t]*[%!].*$", re.M)
TEACHER_LOAD = re.compile(r"torch\.load\((['\"])([^'\"]+\.pth)\1\)")


def read_notebook(args) -> tuple[dict, str, str]:
    """The notebook's JSON, its path in the repository, and the commit."""
    if args.notebook_file:
        path = Path(args.notebook_file)
        return json.loads(path.read_text()), str(path), args.commit or "unknown"
    commit = subprocess.run(
        ["git", "--git-dir", args.git_dir, "rev-parse", args.commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    text = subprocess.run(
        ["git", "--git-dir", args.git_dir, "show", f"{commit}:{args.notebook}"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    return json.loads(text), args.notebook, commit


def code_cells(nb: dict) -> list[str]:
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def apply_replacements(cells: list[str], args) -> tuple[list[str], list[str]]:
    """Apply REPLACEMENTS; return the cells and a line per replacement."""
    report = []
    out = list(cells)
    n_magic = sum(len(MAGIC.findall(c)) for c in out)
    out = [MAGIC.sub("", c) for c in out]
    report.append(f"drop IPython magics/shell lines: {n_magic} line(s)")
    fields = {"data_root": args.data_root, "epochs": args.epochs}
    for name, old, new, need in REPLACEMENTS:
        if args.as_teacher and name in ("epoch count", "no torch.save"):
            report.append(f"{name}: skipped (--as-teacher)")
            continue
        new = new.format(**fields)
        count = sum(c.count(old) for c in out)
        if need != "any" and count != need:
            raise SystemExit(f"replacement '{name}': {old!r} matched {count}, need {need}")
        out = [c.replace(old, new) for c in out]
        report.append(f"{name}: {old!r} -> {new!r}: {count} match(es)")
    loads = sum(len(TEACHER_LOAD.findall(c)) for c in out)
    if args.teacher_pth:
        if loads != 1:
            raise SystemExit(f"--teacher-pth given but torch.load('*.pth') matched {loads}")
        out = [TEACHER_LOAD.sub(f"torch.load({args.teacher_pth!r})", c) for c in out]
        report.append(f"teacher weights: torch.load(...) -> {args.teacher_pth!r}: 1 match")
    elif loads:
        raise SystemExit("the notebook loads a teacher's .pth: pass --teacher-pth")
    if not any(c.count("root=") for c in out) or any("root='./data'" in c for c in out):
        raise SystemExit("data root not replaced")
    return out, report


def needs_mode(cells: list[str]) -> bool:
    """True where a cell reads MODE and no cell assigns it."""
    uses = any(re.search(r"\bMODE\b", c) for c in cells)
    assigns = any(re.search(r"^\s*MODE\s*=", c, re.M) for c in cells)
    return uses and not assigns


def prelude(seed: int, mode: bool) -> str:
    lines = [
        "import random as _ref_random",
        "import numpy as _ref_np",
        "import torch as _ref_torch",
        f"_ref_random.seed({seed})",
        f"_ref_np.random.seed({seed})",
        f"_ref_torch.manual_seed({seed})",
        "def _ref_noop(*a, **k):",
        "    return None",
    ]
    if mode:
        lines.append("MODE = 'QC'")
    return "\n".join(lines) + "\n"


def describe(cells: list[str], path: str) -> dict:
    """Facts about the run read from the notebook's own source and name."""
    src = "\n".join(cells)
    classes = sorted({int(k) for k in re.findall(r"targets == (\d+)\)", src)})
    qubits = re.search(r"^NUM_QUBITS\s*=\s*(\d+)", src, re.M)
    shots = re.search(r"^NUM_SHOTS\s*=\s*(\d+)", src, re.M)
    name = Path(path).name.lower()
    teacher = next((t for t in ("lenet", "alexnet", "ensemble") if f"teacher={t}" in name.replace(" ", "")), "none")
    return {
        "classes": f"{classes[0]}-{classes[-1]}" if classes else "",
        "n_classes": len(classes),
        "qubits": int(qubits.group(1)) if qubits else -1,
        "shots": int(shots.group(1)) if shots else -1,
        "teacher": teacher,
        "dataset": "fashionmnist" if "fashion" in name else "mnist",
    }


def label_of(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")


def ensure_venv(venv: Path, rebuild: bool) -> Path:
    py = venv / "bin" / "python"
    req = HERE / "requirements.txt"
    if rebuild and venv.exists():
        shutil.rmtree(venv)
    if not py.exists():
        print(f"building {venv} from {req}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-r", str(req)], check=True)
    pins = {}
    for line in req.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            k, v = line.split("==")
            pins[k.lower()] = v
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    have = dict(ln.lower().split("==") for ln in freeze.splitlines() if "==" in ln)
    wrong = {k: (v, have.get(k)) for k, v in pins.items() if have.get(k) != v.lower()}
    if wrong:
        raise SystemExit(f"{venv} does not match requirements.txt: {wrong} (use --rebuild-venv)")
    (HERE / "pip-freeze.txt").write_text(freeze)
    return py


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return seeds


# ---------------------------------------------------------------- child side


class Tee:
    """Passes writes through and keeps each complete line with its time."""

    def __init__(self, stream, lines):
        self.stream, self.lines, self.buf = stream, lines, ""

    def write(self, s):
        self.stream.write(s)
        self.buf += s
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self.lines.append((time.time(), line))
        return len(s)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


TRAIN = re.compile(r"Training \[\d+%\]\s+Loss: ([-+\d.eEnaif]+)(?:.*?[Aa]ccuracy[^\d]*([\d.]+))?")
VAL = re.compile(r"Val loss: ([-+\d.eEnaif]+) and accuracy = ([\d.]+)%")
# the teacher notebooks' line: losses are summed batch means over the dataset size
TEACHER = re.compile(r"Train Loss: ([-+\d.eEnaif]+), Test Loss: ([-+\d.eEnaif]+), Accuracy: ([\d.]+)%")


def parse_epochs(lines: list[tuple[float, str]], t_train: float) -> list[dict]:
    rows, cur, t_prev = [], {}, t_train
    for t, line in lines:
        if m := TRAIN.search(line):
            cur = {"train_loss": float(m.group(1))}
            cur["train_acc"] = float(m.group(2)) / 100 if m.group(2) else float("nan")
        elif m := VAL.search(line):
            cur.update(test_loss=float(m.group(1)), test_acc=float(m.group(2)) / 100)
            cur.update(test_acc_printed=m.group(2), epoch=len(rows) + 1, wall_s=t - t_prev)
            rows.append(cur)
            cur, t_prev = {}, t
        elif m := TEACHER.search(line):
            cur = {"train_loss": float(m.group(1)), "train_acc": float("nan"), "test_loss": float(m.group(2))}
            cur.update(test_acc=float(m.group(3)) / 100, test_acc_printed=m.group(3))
            cur.update(epoch=len(rows) + 1, wall_s=t - t_prev)
            rows.append(cur)
            cur, t_prev = {}, t
    return rows


def child(job_path: str) -> None:
    import platform  # noqa: PLC0415 (only in the reference venv)

    job = json.loads(Path(job_path).read_text())
    lines: list[tuple[float, str]] = []
    sys.stdout = Tee(sys.__stdout__, lines)
    ns = {"__name__": "__main__"}
    t0 = time.time()
    t_train = None
    exec(compile(job["prelude"], "<prelude>", "exec"), ns)
    for i, src in enumerate(job["cells"]):
        print(f"{MARK}cell {i} start", flush=True)
        if "for epoch in range(" in src:
            t_train = time.time()
        exec(compile(src, f"<cell {i}>", "exec"), ns)
    sys.stdout.flush()
    rows = parse_epochs(lines, t_train or t0)
    if len(rows) != job["epochs"]:
        raise SystemExit(f"parsed {len(rows)} epochs, expected {job['epochs']}")

    import matplotlib  # noqa: PLC0415 (only in the reference venv)
    import numpy  # noqa: PLC0415 (only in the reference venv)
    import pandas as pd  # noqa: PLC0415 (only in the reference venv)
    import qiskit  # noqa: PLC0415 (only in the reference venv)
    import qiskit_aer  # noqa: PLC0415 (only in the reference venv)
    import torch  # noqa: PLC0415 (only in the reference venv)
    import torchvision  # noqa: PLC0415 (only in the reference venv)

    env = {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "qiskit_version": qiskit.__qiskit_version__.get("qiskit") or "",
        "qiskit_terra_version": qiskit.__version__,
        "qiskit_aer_version": qiskit_aer.__version__,
        "numpy_version": numpy.__version__,
        "matplotlib_version": matplotlib.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "host": platform.node(),
    }
    df = pd.DataFrame(rows)
    for k, v in {**job["meta"], **env}.items():
        df[k] = v
    df["trial_wall_s"] = time.time() - t0
    df["started_at"] = pd.Timestamp(t0, unit="s", tz="UTC")
    out = Path(job["out"])
    tmp = out.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    print(f"{MARK}wrote {out} ({len(df)} epochs, {time.time() - t0:.0f} s)", flush=True)


# --------------------------------------------------------------- parent side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--git-dir", default=DEFAULT_GIT_DIR, help="bare git dir of the fetched repository")
    ap.add_argument("--commit", default=DEFAULT_COMMIT)
    ap.add_argument("--notebook", default="MNIST Experiments/Baseline students/mnist 0-7 3qubits.ipynb")
    ap.add_argument("--notebook-file", help="read this .ipynb file instead of the git dir")
    ap.add_argument("--label", help="output subfolder (default: from the notebook's name)")
    ap.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder holding MNIST/raw")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0-19", help="e.g. 0-19 or 0,3,5-7")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    ap.add_argument("--threads", type=int, default=1, help="OMP/MKL threads per seed process")
    ap.add_argument("--teacher-pth", help="teacher weights replacing the notebook's torch.load path")
    ap.add_argument("--as-teacher", action="store_true", help="a teacher notebook: keep its epochs and torch.save")
    ap.add_argument("--venv", default=DEFAULT_VENV)
    ap.add_argument("--rebuild-venv", action="store_true")
    ap.add_argument("--out", default=str(HERE), help="results folder (a subfolder per notebook)")
    ap.add_argument("--scratch", default=DEFAULT_SCRATCH, help="job files and logs, outside the repo")
    ap.add_argument("--dry-run", action="store_true", help="print the replaced cells and stop")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return

    nb, nb_path, commit = read_notebook(args)
    cells, report = apply_replacements(code_cells(nb), args)
    mode = needs_mode(cells)
    report.append(f"prelude: seeds torch/numpy/random; MODE = 'QC' defined: {mode}")
    print(f"notebook {nb_path} @ {commit}")
    print("\n".join("  " + r for r in report))
    if args.dry_run:
        for i, c in enumerate(cells):
            print(f"----- cell {i}\n{c}")
        return
    py = ensure_venv(Path(args.venv), args.rebuild_venv)
    label = args.label or label_of(nb_path)
    epochs = args.epochs
    if args.as_teacher:
        found = re.findall(r"for epoch in range\((\d+)\)", "\n".join(cells))
        if len(found) != 1:
            raise SystemExit(f"--as-teacher: expected one 'for epoch in range(N)', found {found}")
        epochs = int(found[0])
    out_dir = Path(args.out) / label
    scratch = Path(args.scratch) / label
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    meta = {
        "notebook": nb_path,
        "notebook_commit": commit,
        "label": label,
        "epochs": epochs,
        # paths as seen from the checkout (../shared/data), never this machine's
        "replacements": "; ".join(report).replace(str(REPO_ROOT.parent) + os.sep, "../"),
        **describe(cells, nb_path),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["MPLBACKEND"] = "Agg"
    todo = [s for s in parse_seeds(args.seeds) if not (out_dir / f"seed-{s:03d}.parquet").exists()]
    print(f"{label}: {len(todo)} seed(s) to run: {todo}", flush=True)
    running: list[tuple[int, subprocess.Popen, float]] = []
    failed = []
    while todo or running:
        while todo and len(running) < args.jobs:
            seed = todo.pop(0)
            job = {
                "cells": cells,
                "prelude": prelude(seed, mode),
                "epochs": epochs,
                "out": str(out_dir / f"seed-{seed:03d}.parquet"),
                "meta": {**meta, "seed": seed, "trial_id": f"{label}-seed{seed}"},
            }
            work = scratch / f"seed-{seed:03d}"
            work.mkdir(exist_ok=True)
            (work / "job.json").write_text(json.dumps(job))
            log = open(work / "log.txt", "w")
            cmd = [str(py), "-u", str(Path(__file__).resolve()), "--child", str(work / "job.json")]
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((seed, proc, time.time()))
            print(f"seed {seed}: started (pid {proc.pid}, log {work / 'log.txt'})", flush=True)
        time.sleep(2)
        for item in list(running):
            seed, proc, t = item
            if proc.poll() is None:
                continue
            running.remove(item)
            ok = proc.returncode == 0 and (out_dir / f"seed-{seed:03d}.parquet").exists()
            state = "done" if ok else f"FAILED rc={proc.returncode}"
            print(f"seed {seed}: {state} in {time.time() - t:.0f} s", flush=True)
            if not ok:
                failed.append(seed)
    if failed:
        raise SystemExit(f"failed seeds: {failed}")


if __name__ == "__main__":
    main()
