"""The Python API (qkd_sweep): the CLI's options, checks and one-line errors as functions;
a callable where a reference goes, by a reference that follows its source; objects defined
where no import finds them sent to the Ray workers a sweep starts."""

from __future__ import annotations

import threading
import traceback

import pandas as pd
import pytest

import qkd_sweep
import sweep.ray_env as ray_env
from qkd_sweep import QKDError
from sweep.spec_errors import SpecError
from workers import refs
from workers.runtime import HOOKS

#: A small statevector trial of the circuit student on digits (exact, so deterministic).
SMALL = {"dataset": "digits", "classes": "0-3", "qubits": 2, "student": "circuit", "backend": "statevector",
         "shots": "exact", "epochs": 2, "samples_per_class": 10, "test_samples_per_class": 10}  # fmt: skip


def _circuit(flip: bool = False):
    """A circuit function defined inside another: no import finds it by name. ``flip`` gives
    another source (an edited cell)."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    if flip:

        def local_circuit(n_qubits):
            x, w = ParameterVector("x", n_qubits), ParameterVector("w", 2 * n_qubits)
            qc = QuantumCircuit(n_qubits)
            for q in range(n_qubits):
                qc.rx(x[q], q)
                qc.ry(w[q], q)
            qc.cz(0, 1)
            for q in range(n_qubits):
                qc.ry(w[n_qubits + q], q)
            return qc

    else:

        def local_circuit(n_qubits):
            x, w = ParameterVector("x", n_qubits), ParameterVector("w", n_qubits)
            qc = QuantumCircuit(n_qubits)
            for q in range(n_qubits):
                qc.ry(x[q], q)
                qc.rz(w[q], q)
            qc.cx(0, 1)
            return qc

    return local_circuit


@pytest.fixture
def registry(monkeypatch):
    """A registry of this test's own (the process-wide one is left as it was)."""
    monkeypatch.setattr(refs, "REGISTERED", {})
    return refs.REGISTERED


@pytest.fixture(scope="module")
def local_ray():
    yield
    import ray

    ray.shutdown()


def test_a_callable_becomes_a_reference_that_follows_its_source(registry):
    first, again, edited = _circuit(), _circuit(), _circuit(flip=True)
    assert first is not again
    ref = qkd_sweep.reference(first)
    assert ref.startswith("__main__:local_circuit@") and registry[ref] is first
    # The same source (a cell run again) is the same reference; an edited one is another.
    assert qkd_sweep.reference(again) == ref and registry[ref] is again
    assert qkd_sweep.reference(edited) not in (ref, None)
    # One that imports back by name is that name, as a spec would write it; a string is itself.
    assert qkd_sweep.reference(refs.last_line) == "workers.refs:last_line"
    assert qkd_sweep.reference("mymod:fn") == "mymod:fn"
    # A class whose source inspect cannot find (a notebook cell's: no file for __main__) is
    # hashed by its methods' code: the same cell twice, one reference; an edited method, another.
    cells = []
    for k in (1, 1, 2):
        ns = {"__name__": "__main__"}
        exec(compile(f"class Net:\n    def __call__(self, x):\n        return x + {k}\n", f"<cell {k}>", "exec"), ns)
        cells.append(qkd_sweep.reference(ns["Net"]))
    assert cells[0] == cells[1] != cells[2] and cells[2].startswith("__main__:Net@")
    # A name the user chose is kept.
    named = _circuit()
    assert qkd_sweep.register(named, "mine") == "__main__:mine" and qkd_sweep.reference(named) == "__main__:mine"


def test_run_trial_runs_a_local_circuit_and_writes_what_the_cli_writes(tmp_path, registry):
    circuit = _circuit()
    seen = []
    row = qkd_sweep.run_trial(**SMALL, teacher="none", circuit=circuit, out=tmp_path / "api", quiet=True,
                              progress=seen.append)  # fmt: skip
    assert row["status"] == "ok" and row["executor"] == "complex-statevector"
    assert row["ansatz"] == qkd_sweep.reference(circuit) and row["ansatz"].startswith("__main__:local_circuit@")
    assert [r["epoch"] for r in seen] == [1, 2] and 0 <= row["test_acc"] <= 1
    trials = qkd_sweep.load_results(tmp_path / "api")
    assert trials.trial_id.tolist() == [row["trial_id"]] and trials.test_acc.item() == row["test_acc"]
    assert sorted(qkd_sweep.load_results(tmp_path / "api", "epochs").epoch) == [1, 2]

    # The CLI, with the same options as flags and the circuit registered under that reference,
    # runs the same config (hash) and, exact and seeded, the same numbers.
    from sweep.cli import main

    flags = ["--dataset", "digits", "--classes", "0-3", "--qubits", "2", "--student", "circuit", "--backend",
             "statevector", "--shots", "0", "--epochs", "2", "--samples-per-class", "10",
             "--test-samples-per-class", "10", "--teacher", "none", "--circuit", row["ansatz"]]  # fmt: skip
    assert main(["trial", *flags, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = pd.read_parquet(tmp_path / "cli" / "trials.parquet").iloc[0]
    assert cli.config_hash == row["config_hash"] and cli.test_acc == row["test_acc"]

    # The tables of the folder: a baseline row, in percent points, and the Markdown that shows it.
    shown = qkd_sweep.tables(tmp_path / "api", write=True)
    assert shown.rows.shape[0] == 1 and shown.markdown.startswith("# Results: api")
    assert shown._repr_markdown_() == shown.markdown and (tmp_path / "api" / "tables.md").is_file()
    assert shown.rows["mean"].iloc[0] == pytest.approx(100 * row["test_acc"])


def test_an_object_registered_again_under_its_own_name_is_used_as_it_is_now(registry):
    """A name chosen by hand carries no source hash: the per-reference caches (the compiled
    circuit) are emptied by each call, so the second trial runs the second circuit."""
    options = {**SMALL, "teacher": "none", "epochs": 1, "circuit": "__main__:mine", "out": None, "quiet": True}
    qkd_sweep.register(_circuit(), "mine")
    first = qkd_sweep.run_trial(**options)
    qkd_sweep.register(_circuit(flip=True), "mine")
    second = qkd_sweep.run_trial(**options)
    assert first["status"] == second["status"] == "ok"
    assert second["n_params"] - first["n_params"] == 2  # w: 2 angles, then 4


def test_run_trial_takes_a_teacher_and_a_dataset_defined_here(tmp_path, registry):
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    def halves():
        bunch = load_digits()
        images = torch.tensor(bunch.images / 16.0, dtype=torch.float32)[:, None]
        labels = torch.tensor(bunch.target)
        return images[0::2], labels[0::2], images[1::2], labels[1::2]

    def linear(n_classes, image_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(image_shape[0] * image_shape[1] * image_shape[2], n_classes))

    row = qkd_sweep.run_trial(dataset=halves, teacher=linear, classes="0-3", qubits=2, backend="statevector",
                              epochs=1, samples_per_class=10, test_samples_per_class=10, teacher_epochs=1,
                              out=tmp_path, quiet=True)  # fmt: skip
    assert row["status"] == "ok", row["error"]
    assert (row["dataset"], row["teacher"]) == (qkd_sweep.reference(halves), qkd_sweep.reference(linear))
    assert row["teacher"].startswith("__main__:linear@") and 0 < row["teacher_test_acc"] <= 1
    assert qkd_sweep.load_results(tmp_path, "teachers").teacher.tolist() == [row["teacher"]]


def _bad_circuit(n_qubits):
    return None


BAD = [
    (lambda tmp: qkd_sweep.run_trial(epochs=0), "epochs", "epochs: must be an integer >= 1, got 0"),
    (lambda tmp: qkd_sweep.run_trial(epoch=2), "epoch", "epoch: unknown option; did you mean 'epochs'?"),
    (lambda tmp: qkd_sweep.run_trial(qubits="3"), "qubits", "qubits: expected an integer, got '3'"),
    (lambda tmp: qkd_sweep.run_trial(teacher_epochs=-1), "teacher_epochs", "teacher_epochs: must be an integer"),
    (lambda tmp: qkd_sweep.run_trial(**SMALL, circuit=lambda n: None), "circuit", "has no name to be referred to"),
    (lambda tmp: qkd_sweep.run_trial(**SMALL, circuit=_bad_circuit), "circuit", "returned NoneType, not a qiskit"),
    (lambda tmp: qkd_sweep.run_trial(teacher="none", out=tmp / "f" / "x"), "out", "out: cannot write to"),
    (
        lambda tmp: qkd_sweep.run_trial(dataset="mnist", data_root=tmp, download=False, teacher="none"),
        "data_root",
        "data_root: mnist files",
    ),  # fmt: skip
    (lambda tmp: qkd_sweep.run_sweep({"grid": {"lam": [0.5, 2.0]}}, results=tmp), "grid.lam", "must lie in [0, 1]"),
    (lambda tmp: qkd_sweep.run_sweep({"grid": {}, "bogus": 1}, results=tmp), "bogus", "unknown key 'bogus'"),
    (lambda tmp: qkd_sweep.run_sweep({"grid": {"epochs": "x"}}, results=tmp), "grid.epochs[0]", "expected an integer"),
    (lambda tmp: qkd_sweep.run_sweep(tmp / "none.yaml"), "spec", "no such file"),
    (lambda tmp: qkd_sweep.run_sweep(42), "spec", "expected a YAML path, a dict or a Spec, got int"),
    (
        lambda tmp: qkd_sweep.run_sweep({"grid": {"teacher": "none"}}, only={"teacher": "lenet"}, results=tmp),
        "--only",
        "no trial of the grid matches",
    ),  # fmt: skip
    (lambda tmp: qkd_sweep.load_results(tmp / "none"), "results_dir", "results folder not found"),
    (lambda tmp: qkd_sweep.load_results(tmp, "nope"), "table", "unknown table 'nope'"),
    (lambda tmp: qkd_sweep.load_results(tmp), "results_dir", "no trials.parquet in"),
    (lambda tmp: qkd_sweep.tables(tmp), "results_dir", "no trials.parquet in"),
]


@pytest.mark.parametrize(("call", "field", "text"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_input_is_our_error_in_one_line_naming_the_field(tmp_path, monkeypatch, registry, call, field, text):
    monkeypatch.chdir(tmp_path)  # where the default results folders would go
    (tmp_path / "f").write_text("a file where a folder would go")
    with pytest.raises(QKDError) as info:
        call(tmp_path)
    error = info.value
    assert error.field == field and text in str(error) and "\n" not in str(error)
    # Raised from the API's own frames, the check that found it not chained on.
    assert traceback.extract_tb(error.__traceback__)[-1].filename.split("/")[-2] == "qkd_sweep"
    assert error.__suppress_context__ or error.__context__ is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"], "nothing written"


def test_run_sweep_sends_objects_defined_here_to_the_ray_workers(tmp_path, registry, local_ray):
    first, edited = _circuit(), _circuit(flip=True)
    spec = {
        "name": "api",
        "grid": {**{k: v for k, v in SMALL.items() if k not in ("shots", "epochs")}, "teacher": "none",
                 "circuit": first, "seed": 0},
        "trial": {"shots": "exact", "epochs": 1},
        "resources": {"max_failures": 0},
    }  # fmt: skip
    trials = qkd_sweep.run_sweep(spec, results=tmp_path, num_cpus=2, quiet=True, write_tables=False)
    ref = qkd_sweep.reference(first)
    assert len(trials) == 1 and (trials.status == "ok").all(), trials.error.tolist()
    assert (trials.ansatz == ref).all() and trials.node_id.str.len().gt(0).all()
    assert trials.attrs["results_dir"] == str(tmp_path / "api")

    # In the same process, with the Ray it started: an edited circuit beside the first one.
    # The Ray is restarted with both (its workers' set-up is fixed when it starts); the
    # first circuit's trials are finished already (same source, same reference) and skipped.
    spec["grid"]["circuit"] = [first, edited]
    both = qkd_sweep.run_sweep(spec, results=tmp_path, num_cpus=2, quiet=True)
    assert len(both) == 2 and (both.status == "ok").all(), both.error.tolist()
    assert sorted(set(both.ansatz)) == sorted({ref, qkd_sweep.reference(edited)})
    assert both.attrs["summary"][0].startswith("sweep api: 2 trials planned, 1 already finished")
    assert set(trials.trial_id) < set(both.trial_id)
    assert set(ray_env._started[2]) == {ref, qkd_sweep.reference(edited)}
    assert (tmp_path / "api" / "tables.md").is_file(), "the tables are written, as the CLI writes them"
    # only= takes the callable too; everything it selects is finished, so nothing runs.
    one = qkd_sweep.run_sweep(spec, results=tmp_path, only={"circuit": edited}, quiet=True)
    assert one.ansatz.tolist() == [qkd_sweep.reference(edited)] and one.trial_id.isin(both.trial_id).all()


def test_connect_ships_objects_in_the_hook_and_restarts_only_its_own_ray(monkeypatch, registry):
    from ray import cloudpickle
    from test_runtime import _FakeRay

    fake = _FakeRay()
    fake.cloudpickle = cloudpickle  # what pickles the objects: Ray's own cloudpickle
    monkeypatch.setattr(ray_env, "ray", fake)
    monkeypatch.setattr(ray_env, "_started", None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    a, b = _circuit(), _circuit(flip=True)
    ray_env.connect(num_cpus=1, qiskit=False, objects={"__main__:a": a})
    hook = fake.inits[-1]
    assert isinstance(hook, ray_env.WorkerSetup) and hook.hook == HOOKS[False] and set(hook.objects) == {"__main__:a"}
    ray_env.connect(num_cpus=1, qiskit=False, objects={"__main__:a": a})  # the same objects: the same Ray
    ray_env.connect(num_cpus=1, qiskit=False)  # none asked: the same Ray
    assert len(fake.inits) == 1
    ray_env.connect(num_cpus=1, qiskit=True, objects={"__main__:b": b})  # a new one: a new Ray, with both
    assert len(fake.inits) == 2 and fake.inits[-1].hook == HOOKS[True]
    assert set(fake.inits[-1].objects) == {"__main__:a", "__main__:b"}
    ray_env.connect(num_cpus=1, qiskit=False, objects={"__main__:a": b})  # another object under a reference
    assert len(fake.inits) == 3 and fake.inits[-1].hook == HOOKS[True], "Qiskit's set-up is kept"

    # The hook, as a worker runs it: the objects registered (equal in behaviour, not identity).
    hook = fake.inits[-1]
    hook()
    assert set(registry) == {"__main__:a", "__main__:b"}
    assert registry["__main__:b"](2).num_parameters == b(2).num_parameters
    # One that does not unpickle on a worker becomes a callable that says so in one line.
    ray_env.WorkerSetup(HOOKS[False], {"__main__:gone": b"not a pickle"})()
    with pytest.raises(refs.RefError, match=r"'__main__:gone' could not be loaded on this Ray worker: \w+"):
        registry["__main__:gone"](2)

    # A Ray started elsewhere cannot take them: one line, before anything runs.
    fake.shutdown()
    fake.init(runtime_env={"worker_process_setup_hook": "someone.elses"})
    with pytest.raises(SpecError, match=r"^ray: .*__main__:a.* cannot reach its workers; call ray.shutdown\(\) first$"):
        ray_env.connect(num_cpus=1, qiskit=False, objects={"__main__:a": a})
    ray_env.connect(num_cpus=1, qiskit=False)  # without objects it serves as before
    assert fake.inits[-1] == "someone.elses"


def test_an_object_that_cannot_travel_is_one_line_naming_it(tmp_path, registry):
    class Holder:
        """A callable holding a lock, which no pickler sends."""

        def __init__(self):
            self.lock = threading.Lock()

        def __call__(self, n_qubits):
            return _circuit()(n_qubits)

    with pytest.raises(SpecError, match=r"^__main__:held: cannot be sent to the Ray workers: TypeError: .*lock"):
        ray_env.pickled({"__main__:held": Holder()})
