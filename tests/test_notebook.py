"""The example notebook runs headless from top to bottom, on a kernel of this environment's
Python, and its sweep's table holds what the notebook says it ran."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "distillation.ipynb"


def _kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec for this interpreter (not whatever ``python3`` a machine has), found
    through JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    name = "qkd-sweep-test"
    prefix = tmp_path / "jupyter"
    install(kernel_name=name, prefix=str(prefix))
    spec = json.loads((prefix / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return name


def _text(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(out.get("data", {}).get(kind, "") for kind in ("text/plain", "text/markdown"))
    return "\n".join("".join(p) if isinstance(p, list) else p for p in parts)


def test_the_example_notebook_runs_and_shows_its_sweep(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), (
        "the notebook is stored without outputs"
    )
    client = NotebookClient(nb, kernel_name=_kernel(tmp_path, monkeypatch), timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    code = [c for c in nb.cells if c.cell_type == "code"]
    # The circuit's reference: the notebook's __main__ and the hash of the function's source as
    # the cell holds it (inspect reads it under ipykernel), so another kernel gives the same one.
    source = code[1].source.split("\n\n\nprint(")[0] + "\n"
    circuit = f"__main__:su2_student@{hashlib.sha256(source.encode()).hexdigest()[:8]}"
    assert circuit in _text(code[1])
    shown = _text(code[2])
    teacher, dataset = (shown.split(f"'__main__:{name}@")[1].split("'")[0] for name in ("tiny_cnn", "digits_8x8"))
    teacher, dataset = f"__main__:tiny_cnn@{teacher}", f"__main__:digits_8x8@{dataset}"
    trial = _text(code[3])
    assert "'status': 'ok'" in trial and "complex-statevector" in trial and dataset in trial
    # The sweep's table as the notebook shows it, and as its results folder holds it.
    shown = _text(code[4])
    assert "tiny_cnn" in shown and "none" in shown and "test_acc" in shown
    trials = pd.read_parquet(tmp_path / "results" / "notebook" / "trials.parquet")
    assert sorted(trials.teacher) == sorted([teacher, "none"])
    assert (trials.status == "ok").all(), trials.error.tolist()
    assert (trials.ansatz == circuit).all() and (trials.dataset == dataset).all()
    assert trials.test_acc.between(0, 1).all() and trials.test_acc.notna().all()
    assert (trials.n_train == 4 * 20).all() and (trials.n_test == 4 * 20).all()
    distilled = trials[trials.teacher == teacher].iloc[0]
    assert 0 < distilled.teacher_test_acc <= 1
    teachers = pd.read_parquet(tmp_path / "results" / "notebook" / "teachers.parquet")
    assert teachers.teacher.tolist() == [teacher]
    assert sorted(pd.read_parquet(tmp_path / "results" / "notebook" / "epochs.parquet").epoch) == [1, 1, 2, 2]
    assert "tiny_cnn" in _text(code[6])
    assert _text(code[7]).strip() == "epochs: must be an integer >= 1, got 0"
