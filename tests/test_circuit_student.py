"""``student: circuit``: a user's Qiskit circuit as a student, from a spec or ``qkd-sweep trial`` (issue 21).

The user's module is written to a temporary folder put on ``sys.path``, as a researcher's
own package would be; the notebooks' circuit written by hand trains exactly as the
built-in ``cnn-angle`` student, a circuit of rx/rz/rzz/crx trains on Aer and on the torch
executor with the same counts, and every bad reference is one line naming ``circuit``.
"""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.help import FIELD_HELP
from workers.kinds import user_circuit
from workers.trial import run_trial

MODULE = "qkd_user_circuits"

SOURCE = '''
import math

from qiskit import QuantumCircuit
from qiskit.circuit import Gate, ParameterVector
from qiskit.circuit.library import efficient_su2, zz_feature_map


def notebook(n_qubits):
    """The released notebooks' student: H on every qubit, then Ry(x[k]) on qubit k."""
    x = ParameterVector("x", n_qubits)
    qc = QuantumCircuit(n_qubits)
    qc.h(range(n_qubits))
    for k in range(n_qubits):
        qc.ry(x[k], k)
    qc.measure_all()
    return qc


def entangled(n_qubits):
    """zz_feature_map on x, efficient_su2 on w, then rzz / crx / rx / rz of expressions."""
    fm, ansatz = zz_feature_map(n_qubits, reps=1), efficient_su2(n_qubits, reps=1)
    x = ParameterVector("x", fm.num_parameters)
    w = ParameterVector("w", ansatz.num_parameters + 2)
    qc = fm.assign_parameters(dict(zip(fm.parameters, x)))
    qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w[: ansatz.num_parameters]))), inplace=True)
    k = ansatz.num_parameters
    qc.rzz(x[0] * w[k], 0, 1)
    qc.crx(w[k + 1], 1, 0)
    qc.rx(0.5 * x[1] + w[0], 1)
    qc.rz(math.pi / 3, 0)
    return qc


def raises(n_qubits):
    raise RuntimeError("no circuit for " + str(n_qubits) + " qubits\\nsecond line")


def not_a_circuit(n_qubits):
    return [n_qubits]


def opaque(n_qubits):
    qc = notebook(n_qubits)
    qc.remove_final_measurements()
    qc.append(Gate("mygate", 1, []), [0])
    return qc


def wide(n_qubits):
    """29 inputs: a 1 x 29 crop, wider than 28 x 28 images."""
    x = ParameterVector("x", 29)
    qc = QuantumCircuit(n_qubits)
    for k in range(29):
        qc.ry(x[k], k % n_qubits)
    return qc


def no_x(n_qubits):
    w = ParameterVector("w", 1)
    qc = QuantumCircuit(n_qubits)
    qc.ry(w[0], 0)
    return qc
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The user's module on sys.path; forgotten afterwards (its import and every compiled circuit)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    user_circuit.cache_clear()
    yield MODULE
    sys.modules.pop(MODULE, None)
    user_circuit.cache_clear()


def small(tmp_path, **kw) -> TrialConfig:
    base = dict(dataset="digits", classes="0-3", teacher="none", backend="statevector", epochs=2, batch_size=8,
                samples_per_class=8, test_samples_per_class=6, lr=0.01, seed=4,
                cache_dir=str(tmp_path / "cache"))  # fmt: skip
    return TrialConfig(**{**base, **kw})


def per_epoch(res, keys=("train_loss", "test_loss", "test_acc", "train_acc")) -> np.ndarray:
    return np.array([[e[k] for k in keys] for e in res.epochs])


# ------------------------------------------------------------------ the config


#: Hashes computed by the code before the field existed (commit d13e022).
RECORDED = {
    "b24e3fc005591ed0": TrialConfig(),
    "13a295dab3f47566": TrialConfig(student="cnn-angle", backend="statevector"),
    "357848050dbc95d3": TrialConfig(teacher="none"),
    "f82c69f37f5802a5": TrialConfig(student="classical", reduction="pca", qubits=4),
}


def test_the_field_keeps_every_earlier_hash_and_is_an_option_and_an_axis(user_module):
    """``circuit`` left at its default is not in the identity: every hash written before it stays."""
    for recorded, cfg in RECORDED.items():
        assert "circuit" not in cfg.identity() and cfg.config_hash() == recorded
    ref = f"{user_module}:notebook"
    a = TrialConfig(student="circuit", circuit=ref, reduction="cnn").validate()
    assert a.resolved().ansatz == ref and a.resolved().head == "sigmoid-pair" and a.resolved().layers == 1
    b = TrialConfig(student="circuit", circuit=f"{user_module}:entangled", qubits=2, classes="0-3").validate()
    assert b.resolved().head == "linear" and b.resolved().reduction == "fc"
    assert a.config_hash() != b.config_hash()
    assert "circuit" in FIELD_HELP

    from sweep.cli import build_parser
    from sweep.spec_fields import TRIAL_FIELDS

    assert TRIAL_FIELDS["circuit"] is str
    args = build_parser().parse_args(["trial", "--student", "circuit", "--circuit", ref, "--reduction", "cnn"])
    assert (args.student, args.circuit, args.reduction) == ("circuit", ref, "cnn")


def test_a_spec_takes_the_circuit_as_a_grid_axis(tmp_path, user_module):
    from sweep.grid import expand
    from sweep.spec import parse_spec
    from sweep.spec_errors import SpecError

    def spec(circuits):
        raw = {
            "name": "circuits",
            "grid": {"dataset": "digits", "classes": "0-3", "teacher": "none", "qubits": [2, 3], "seed": [0, 1],
                     "student": "circuit", "circuit": circuits, "reduction": ["fc", "cnn"]},
            "trial": {"backend": "statevector", "epochs": 1},
            "paths": {"results": str(tmp_path / "results")},
        }  # fmt: skip
        return parse_spec(raw, source=str(tmp_path / "spec.yaml"))

    grid = expand(spec([f"{user_module}:notebook", f"{user_module}:entangled"]))
    assert len(grid.trials) == 2 * 2 * 2 * 2 and not grid.dropped
    assert {c.resolved().ansatz for c in grid.trials} == {f"{user_module}:notebook", f"{user_module}:entangled"}
    assert all(c.uses_qiskit for c in grid.trials)
    with pytest.raises(SpecError) as err:
        expand(spec([f"{user_module}:notebook", f"{user_module}:raises"]))
    assert "grid.circuit" in str(err.value) and f"{user_module}:raises" in str(err.value)


def test_a_grid_compiles_the_circuit_once(user_module, monkeypatch):
    import workers.usercircuit as uc

    calls = []
    real = uc.compile_circuit
    monkeypatch.setattr(uc, "compile_circuit", lambda *a, **k: calls.append(1) or real(*a, **k))
    for seed in range(5):
        for lam in (0.3, 0.9):
            TrialConfig(student="circuit", circuit=f"{user_module}:notebook", seed=seed, lam=lam).validate()
    TrialConfig(student="circuit", circuit=f"{user_module}:notebook", qubits=4).validate()
    assert len(calls) == 2  # per (reference, qubits)


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        (
            "no_such_module_qkd:fn",
            "'no_such_module_qkd:fn' cannot be imported: ModuleNotFoundError: No module named 'no_such_module_qkd'",
        ),
        (f"{MODULE}:missing", f"'{MODULE}:missing' cannot be imported: '{MODULE}' has no attribute 'missing'"),
        (f"{MODULE}:raises", f"{MODULE}:raises(n_qubits=3) raised RuntimeError: second line"),
        (f"{MODULE}:not_a_circuit", f"{MODULE}:not_a_circuit returned list, not a qiskit.QuantumCircuit"),
        (f"{MODULE}:opaque", f"{MODULE}:opaque: gate 'mygate' has no definition in terms of the supported gates"),
        (f"{MODULE}:no_x", "no parameter of a ParameterVector named 'x'"),
        ("no_colon", "'no_colon' is not a reference of the form PKG.MODULE:CALLABLE"),
    ],
)
def test_a_bad_reference_is_one_line_naming_the_field(user_module, ref, words):
    with pytest.raises(ConfigError) as err:
        TrialConfig(student="circuit", circuit=ref).validate()
    message = str(err.value)
    assert err.value.field == "circuit" and message.startswith("circuit: ") and "\n" not in message
    assert words in message and ref in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"student": "circuit"}, "circuit"),
        ({"circuit": f"{MODULE}:notebook"}, "circuit"),
        ({"student": "amplitude", "reduction": "cnn"}, "reduction"),
        ({"student": "circuit", "circuit": f"{MODULE}:notebook", "ansatz": "hea"}, "ansatz"),
        ({"student": "circuit", "circuit": f"{MODULE}:notebook", "qubits": 2, "classes": "0-5"}, "qubits"),
        ({"student": "circuit", "circuit": f"{MODULE}:notebook", "noise": "depolarizing:0.01"}, "noise"),
        ({"student": "circuit", "circuit": f"{MODULE}:wide", "qubits": 2, "classes": "0-3", "reduction": "crop"},
         "reduction"),
        ({"student": "circuit", "circuit": f"{MODULE}:notebook", "reduction": "pca", "samples_per_class": 1,
          "classes": "0-1", "qubits": 3}, "reduction"),
        ({"student": "circuit", "circuit": f"{MODULE}:notebook", "shift_rule": "pi4-unnormalized",
          "gradient": "parameter-shift"}, "shift_rule"),
    ],
)  # fmt: skip
def test_settings_that_cannot_run_are_refused_by_name(user_module, changes, field):
    with pytest.raises(ConfigError) as err:
        TrialConfig(**changes).validate()
    assert err.value.field == field and "\n" not in str(err.value)


# ------------------------------------------------------------------ the notebooks' circuit, by hand


@pytest.mark.parametrize("shots", [0, 300], ids=["exact", "shots"])
def test_the_notebook_circuit_trains_exactly_as_cnn_angle(tmp_path, user_module, shots):
    builtin = run_trial(small(tmp_path, student="cnn-angle", shots=shots))
    user = run_trial(small(tmp_path, student="circuit", circuit=f"{user_module}:notebook", reduction="cnn",
                           shots=shots))  # fmt: skip
    np.testing.assert_allclose(per_epoch(user), per_epoch(builtin), atol=1e-9, rtol=0)
    assert len(user.epochs) == 2
    assert user.row["circuit_executions"] == builtin.row["circuit_executions"] > 0
    assert user.row["shots_total"] == builtin.row["shots_total"] == shots * builtin.row["circuit_executions"]
    assert user.row["n_params"] == builtin.row["n_params"] and user.row["head"] == "sigmoid-pair"
    assert user.row["gradient"] == builtin.row["gradient"] == ("parameter-shift" if shots else "autograd")
    assert user.row["executor"] == "complex-statevector" and user.row["ansatz"] == f"{user_module}:notebook"


# ------------------------------------------------------------------ a circuit with entanglers and weights


def test_an_entangled_circuit_trains_on_aer_and_the_torch_executor_alike(tmp_path, user_module):
    ref = f"{user_module}:entangled"
    cfg = dict(student="circuit", circuit=ref, qubits=2, reduction="avgpool", shots=400, epochs=2, lr=0.05)
    sv = run_trial(small(tmp_path, backend="statevector", **cfg))
    aer = run_trial(small(tmp_path, backend="aer", **cfg))
    assert [e["test_acc"] for e in sv.epochs] == [e["test_acc"] for e in aer.epochs]
    np.testing.assert_allclose(per_epoch(sv), per_epoch(aer), atol=1e-9, rtol=0)
    assert (sv.row["executor"], aer.row["executor"]) == ("complex-statevector", "aer-public")
    assert sv.row["shots_total"] == aer.row["shots_total"] > 0 and aer.row["two_qubit_gates"] > 0
    assert sv.row["gradient"] == aer.row["gradient"] == "parameter-shift"
    assert sv.row["status"] == "ok" and math.isfinite(sv.row["test_loss"])


def test_an_entangled_circuit_trains_exactly_with_autograd(tmp_path, user_module):
    res = run_trial(small(tmp_path, student="circuit", circuit=f"{user_module}:entangled", qubits=2,
                          reduction="fc", shots=0, epochs=2, lr=0.05))  # fmt: skip
    assert res.row["status"] == "ok" and res.row["gradient"] == "autograd" and res.row["shots_total"] == 0
    assert res.epochs[-1]["train_loss"] < res.epochs[0]["train_loss"]
    uc = user_circuit(f"{user_module}:entangled", 2)
    assert res.row["n_params"] == 784 * uc.n_x + uc.n_x + uc.n_weights + 1  # fc, w and the head's scale


def test_slot_shift_gradients_equal_autograd_on_the_exact_statevector(user_module):
    from workers.backends import make_backend

    uc = user_circuit(f"{user_module}:entangled", 2)
    rng = np.random.default_rng(0)
    x0, w0 = torch.as_tensor(rng.uniform(-2, 2, (5, uc.n_x))), torch.as_tensor(rng.uniform(-2, 2, uc.n_weights))
    up = torch.as_tensor(rng.normal(size=(5, 4)))
    grads = []
    for gradient in ("autograd", "parameter-shift"):
        backend = make_backend("statevector", uc, 0, gradient=gradient)
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        (backend.probabilities(x, w) * up).sum().backward()
        grads.append((x.grad, w.grad))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


@pytest.mark.parametrize("gate", ["crx", "cry", "crz", "cp", "rzz", "u"])
def test_aer_reads_each_gate_as_statevector_does(gate):
    """Aer, parameters bound at run time, against Qiskit's Statevector of the bound circuit: the
    controlled rotations too, which Aer 0.18.2 binds wrongly unless they are decomposed first."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import Statevector

    from workers.backends.user import UserAerExecutor
    from workers.usercircuit import compile_circuit

    x, w = ParameterVector("x", 2), ParameterVector("w", 3)
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.ry(x[0], 1)
    qc.cx(0, 1)
    angles = [w[0] * x[1], w[1], w[2] + x[0]][: 3 if gate == "u" else 1]
    getattr(qc, gate)(*angles, *([1] if gate == "u" else [1, 0]))
    qc.rx(x[1] + w[1], 0)
    uc = compile_circuit(qc, 2)
    rng = np.random.default_rng(1)
    xs, ws = rng.uniform(-2, 2, (4, 2)), rng.uniform(-2, 2, 3)
    want = np.array([Statevector(uc.bound(row, ws)).probabilities() for row in xs])
    aer = UserAerExecutor(uc)
    np.testing.assert_allclose(aer.run_samples(xs, ws), want, atol=1e-12, rtol=0)
    np.testing.assert_allclose(aer.run_angles(uc.angles.numpy(xs, ws)), want, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("fn", ["missing", "raises", "not_a_circuit", "opaque"])
def test_trial_with_a_bad_circuit_exits_2_with_one_line_and_writes_nothing(tmp_path, user_module, fn, capsys):
    from sweep.cli import main

    out = tmp_path / "out"
    ref = f"{user_module}:{fn}"
    code = main(["trial", "--student", "circuit", "--circuit", ref, "--teacher", "none", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("qkd-sweep: error: circuit: ") and ref in err
    assert not out.exists()


def test_trial_with_a_missing_module_exits_2(tmp_path, capsys):
    from sweep.cli import main

    out = tmp_path / "out"
    code = main(["trial", "--student", "circuit", "--circuit", "no_such_module_qkd:fn", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "circuit: " in err and "no_such_module_qkd" in err
    assert not out.exists()


def test_tables_name_a_circuit_student_by_its_circuit():
    """The Architecture column says which circuit a circuit student ran (its ansatz column
    holds the reference), not only its qubits."""
    from sweep.tables.labels import student_name

    class Row:
        student, qubits, n_params, ansatz = "circuit", 3, 40, "mymod:su2"

    assert student_name(Row) == "Quantum (mymod:su2), 3 qubit"
    Row.ansatz = ""
    assert student_name(Row) == "Quantum (the user's circuit), 3 qubit"
