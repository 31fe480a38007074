"""Noise: IBM devices from their offline calibration, readout error, noise_scale, test_noise."""

import math

import numpy as np
import pytest

from workers.backends import make_backend
from workers.backends.noise import apply_readout, device_circuit, scaled_target
from workers.circuits import build_angle_circuit, build_circuit
from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.noise_spec import DeviceNoise, NoiseSpec, fake_devices, parse_noise
from workers.trial import run_trial, unfinished_row


def _rows(circuit, n=6, seed=0):
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (n, circuit.n_params))


def _exact(circuit, rows):
    return make_backend("aer", circuit, shots=0).executor.run_rows(rows)


# ------------------------------------------------------------------ names and validation
def test_device_names_come_from_the_package():
    names = fake_devices()
    assert {"manila", "brisbane", "lima", "sherbrooke"} <= set(names)
    assert all(n == n.lower() and not n.startswith("fake") for n in names)
    assert parse_noise("fake:manila") == DeviceNoise("manila")
    assert parse_noise("depolarizing:0.01") == NoiseSpec(0.01, 0.1)


@pytest.mark.parametrize("field", ["noise", "test_noise"])
def test_an_unknown_device_is_one_line_naming_the_field_and_the_choices(field):
    with pytest.raises(ConfigError, match=f"^{field}: 'fake:nowhere': unknown device 'nowhere'; choose one of") as e:
        TrialConfig(**{field: "fake:nowhere"}).validate()
    assert "'manila'" in str(e.value) and "\n" not in str(e.value) and e.value.field == field


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"noise_scale": -0.5, "noise": "depolarizing:0.01"}, "noise_scale"),
        ({"noise_scale": math.nan, "noise": "depolarizing:0.01"}, "noise_scale"),
        ({"noise_scale": True}, "noise_scale"),
        ({"noise_scale": "2"}, "noise_scale"),
        ({"noise_scale": 20, "noise": "depolarizing:0.01"}, "noise_scale"),  # p2 = 0.1 x 20 > 1
        ({"noise_scale": 20, "test_noise": "depolarizing:0.01"}, "noise_scale"),
        ({"test_noise": "depolarizing:0.1", "backend": "statevector"}, "test_noise"),
        ({"test_noise": "depolarizing:x"}, "test_noise"),
        ({"test_noise": "depolarizing:0.1", "student": "cnn-classical"}, "test_noise"),
        ({"test_noise": 3}, "test_noise"),
        ({"noise": "fake:armonk"}, "noise"),  # one qubit for a 3-qubit student
        ({"noise": "fake:manila", "qubits": 8, "classes": "0-5"}, "noise"),
        ({"noise": "fake:manila", "noise_scale": 1e300}, "noise_scale"),  # was a ZeroDivisionError in Aer
        ({"test_noise": "fake:manila", "noise_scale": 11}, "noise_scale"),  # readout 0.0964 x 11 > 1
    ],
)
def test_bad_noise_settings_name_their_field(kw, field):
    with pytest.raises(ConfigError) as e:
        TrialConfig(**kw).validate()
    assert e.value.field == field and str(e.value).startswith(f"{field}: ")


def test_a_device_takes_any_scale_that_keeps_its_worst_error_a_probability():
    """manila's worst calibrated error is its readout (0.0964): 10 is the largest round scale."""
    TrialConfig(noise="fake:manila", noise_scale=10).validate()
    with pytest.raises(
        ConfigError, match=r"^noise_scale: 11 x 'fake:manila' .* measure at 0\.0964, so noise_scale <= 10\.37\)$"
    ):
        TrialConfig(noise="fake:manila", noise_scale=11).validate()


def test_hashes_of_earlier_configs_stay_and_moot_settings_hash_alike():
    # computed before test_noise and noise_scale existed
    assert TrialConfig().config_hash() == "b24e3fc005591ed0"
    assert TrialConfig(noise="depolarizing:0.01").config_hash() == "180e95a6941650c1"
    noisy = TrialConfig(noise="depolarizing:0.01")
    assert TrialConfig(noise="depolarizing:0.01", test_noise="depolarizing:0.01").config_hash() == noisy.config_hash()
    assert TrialConfig(noise="depolarizing:0.01", noise_scale=1).config_hash() == noisy.config_hash()
    assert TrialConfig(noise_scale=2).config_hash() == TrialConfig().config_hash()  # no noise: moot
    assert TrialConfig(test_noise="none").config_hash() == TrialConfig().config_hash()
    distinct = {
        noisy.config_hash(),
        TrialConfig(noise="depolarizing:0.01", noise_scale=2).config_hash(),
        TrialConfig(noise="depolarizing:0.01", test_noise="none").config_hash(),
        TrialConfig(test_noise="depolarizing:0.01").config_hash(),
        TrialConfig(noise="fake:manila").config_hash(),
        TrialConfig().config_hash(),
    }
    assert len(distinct) == 6
    r = TrialConfig(noise="depolarizing:0.01", test_noise="none").resolved()
    assert (r.test_noise, r.effective_test_noise) == ("none", None)
    assert TrialConfig(noise="fake:manila").resolved().effective_test_noise == "fake:manila"


# ------------------------------------------------------------------ readout
def test_apply_readout_is_the_kronecker_product_with_qubit_0_least_significant():
    rng = np.random.default_rng(3)
    mats = []
    for _ in range(3):
        a, b = rng.uniform(0, 0.3, 2)
        mats.append(np.array([[1 - a, a], [b, 1 - b]]))
    probs = rng.dirichlet(np.ones(8), size=4)
    full = np.kron(mats[2], np.kron(mats[1], mats[0]))  # index bit j is qubit j
    np.testing.assert_allclose(apply_readout(probs, mats), probs @ full, atol=1e-15)
    # a basis state |q2 q1 q0> = |001> (index 1): qubit 0 reads 0 with probability b0
    one = np.zeros((1, 8))
    one[0, 1] = 1
    out = apply_readout(one, mats)[0]
    assert out[0] == pytest.approx(mats[0][1, 0] * mats[1][0, 0] * mats[2][0, 0])


@pytest.mark.parametrize("device", ["manila", "brisbane"])
def test_device_probabilities_are_what_aer_measures_readout_error_included(device):
    """The executor's probabilities (noisy density matrix, then readout) against Aer's own
    measured counts of the same transpiled circuit under the same noise model."""
    from qiskit import ClassicalRegister, QuantumCircuit
    from qiskit_aer import AerSimulator

    c = build_circuit(3, "h-ry")
    ex = make_backend("aer", c, shots=0, noise=f"fake:{device}", seed=1).executor
    d = ex.device
    row = _rows(c, 1, seed=4)
    ours = ex.run_rows(row)[0]
    raw = ex.direct(row)[0][0] if ex.direct is not None else ex._run_public(row)[0][0]

    qc = QuantumCircuit(d.circuit.num_qubits)
    qc.add_register(ClassicalRegister(3))
    for inst in d.circuit.data:
        if inst.operation.name != "save_probabilities":
            qc.append(inst.operation, [d.circuit.find_bit(q).index for q in inst.qubits])
    index = {p: i for i, p in enumerate(d.qubits)}
    for j, p in enumerate(d.final_layout):
        qc.measure(index[p], j)
    bound = qc.assign_parameters(dict(zip(d.params, row[0], strict=True)))
    shots = 200_000
    sim = AerSimulator(method="density_matrix", noise_model=d.noise_model, seed_simulator=7)
    counts = sim.run(bound, shots=shots).result().get_counts()
    measured = np.zeros(8)
    for bits, k in counts.items():
        measured[int(bits, 2)] = k / shots
    sigma = np.sqrt(ours * (1 - ours) / shots) + 1e-12
    assert (np.abs(measured - ours) / sigma).max() < 5
    # and readout error is a real part of it: the saved probabilities alone are far off
    assert (np.abs(measured - raw) / sigma).max() > 10
    assert np.allclose(ours.sum(), 1) and any(np.abs(m - np.eye(2)).max() > 0.005 for m in d.readout)


# ------------------------------------------------------------------ transpiling for a device
@pytest.mark.parametrize("device", ["manila", "brisbane"])
@pytest.mark.parametrize("circuit", [build_circuit(3, "h-ry"), build_circuit(3, "hea", 2), build_angle_circuit(3)],
                         ids=["h-ry", "hea", "h-angle"])  # fmt: skip
def test_a_device_circuit_at_scale_0_is_the_clean_circuit(device, circuit):
    """Transpiled to the device's basis and coupling map, routed and cut down to its
    qubits, the circuit still computes the same function (final layout accounted for)."""
    ex = make_backend("aer", circuit, shots=0, noise=f"fake:{device}", noise_scale=0.0, seed=2).executor
    rows = _rows(circuit, 8, seed=5)
    np.testing.assert_allclose(ex.run_rows(rows), _exact(circuit, rows), atol=1e-9)
    assert ex.name == "aer-direct"
    d = ex.device
    assert len(d.layout) == 3 and len(set(d.layout)) == 3 and set(d.layout) <= set(d.qubits)
    assert set(d.basis) <= set(fake_devices()[device]().operation_names)
    assert not {"ry", "h"} & set(d.basis)
    info = ex.circuit_info()
    assert info["layout"] == ",".join(map(str, d.layout)) and info["two_qubit_gates"] == d.two_qubit_gates
    assert all(np.array_equal(m, np.eye(2)) for m in d.readout)


def test_noise_scale_grows_the_distance_from_the_clean_circuit():
    c = build_circuit(3, "h-ry")
    rows = _rows(c, 12, seed=6)
    exact = _exact(c, rows)
    for noise in ("fake:manila", "depolarizing:0.01,0.05"):
        dist = [np.abs(make_backend("aer", c, shots=0, noise=noise, noise_scale=s, seed=0).executor.run_rows(rows)
                       - exact).sum(1).mean() for s in (0.5, 1.0, 2.0)]  # fmt: skip
        assert 0 < dist[0] < dist[1] < dist[2], (noise, dist)


def test_depolarizing_scale_multiplies_the_probabilities():
    c = build_circuit(3, "hea", 2)
    rows = _rows(c, 5)
    scaled = make_backend("aer", c, shots=0, noise="depolarizing:0.01,0.05", noise_scale=2).executor.run_rows(rows)
    plain = make_backend("aer", c, shots=0, noise="depolarizing:0.02,0.1").executor.run_rows(rows)
    np.testing.assert_allclose(scaled, plain, atol=1e-13)


def test_scaled_target_scales_gate_readout_and_relaxation():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    t = FakeManilaV2().target
    s = scaled_target(t, [3, 4], 2.0)
    assert s.num_qubits == 2 and set(s["cx"]) == {(0, 1), (1, 0)}
    assert s["cx"][(0, 1)].error == pytest.approx(2 * t["cx"][(3, 4)].error)
    assert s["sx"][(1,)].error == pytest.approx(2 * t["sx"][(4,)].error)
    assert s["sx"][(1,)].duration == t["sx"][(4,)].duration
    assert s["measure"][(0,)].error == pytest.approx(2 * t["measure"][(3,)].error)
    assert s.qubit_properties[0].t1 == pytest.approx(t.qubit_properties[3].t1 / 2)
    assert s.qubit_properties[1].t2 == pytest.approx(t.qubit_properties[4].t2 / 2)
    zero = scaled_target(t, [3, 4], 0.0)
    assert zero["cx"][(0, 1)].error == 0 and zero.qubit_properties[0].t1 is None


def test_the_direct_path_guard_holds_under_device_noise(monkeypatch):
    import workers.backends.aer_direct as aer_direct

    c = build_circuit(3, "h-ry")
    rows = _rows(c, 4)
    direct = make_backend("aer", c, shots=0, noise="fake:manila", seed=3).executor
    monkeypatch.setattr(aer_direct, "DirectAer", lambda *a, **k: (_ for _ in ()).throw(AttributeError("none")))
    public = make_backend("aer", c, shots=0, noise="fake:manila", seed=3).executor
    assert (direct.name, public.name) == ("aer-direct", "aer-public")
    np.testing.assert_allclose(direct.run_rows(rows), public.run_rows(rows), atol=1e-12)


def test_device_circuit_is_transpiled_once_with_the_seed():
    c = build_circuit(3, "h-ry")
    a = device_circuit(c, DeviceNoise("brisbane"), 1.0, seed=0)
    b = device_circuit(c, DeviceNoise("brisbane"), 1.0, seed=0)
    assert (a.layout, a.depth, a.two_qubit_gates) == (b.layout, b.depth, b.two_qubit_gates)
    assert a.two_qubit_gates >= 8  # the circuit's own 8 CNOTs, as ECRs, and any routing


# ------------------------------------------------------------------ trials
def _trial(tmp_path, **kw):
    base = dict(dataset="digits", classes="0-3", teacher="none", shots=200, epochs=2, samples_per_class=8,
                test_samples_per_class=8, batch_size=8, seed=2, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    base.update(kw)
    return run_trial(TrialConfig(**base))


def test_a_device_trial_row_records_layout_depth_and_two_qubit_gates(tmp_path):
    res = _trial(tmp_path, noise="fake:manila", epochs=1)
    row = res.row
    assert row["status"] == "ok" and row["executor"] == "aer-direct"
    assert (row["noise"], row["test_noise"], row["noise_scale"]) == ("fake:manila", "fake:manila", 1.0)
    layout = [int(q) for q in row["layout"].split(",")]
    assert len(layout) == 3 and all(0 <= q < 5 for q in layout)
    assert row["transpiled_depth"] > 15 and row["two_qubit_gates"] >= 8
    assert (row["test_layout"], row["test_transpiled_depth"], row["test_two_qubit_gates"]) == (
        row["layout"], row["transpiled_depth"], row["two_qubit_gates"])  # fmt: skip
    clean = _trial(tmp_path, epochs=1).row
    assert (clean["layout"], clean["transpiled_depth"], clean["two_qubit_gates"]) == ("", 15, 8)
    assert clean["test_noise"] == "" and clean["noise_scale"] == 1.0
    sv = _trial(tmp_path, epochs=1, backend="statevector", shots=0).row
    assert (sv["layout"], sv["transpiled_depth"], sv["two_qubit_gates"]) == ("", -1, -1)
    stopped = unfinished_row(TrialConfig(noise="fake:manila"), "error", "boom", [])
    assert (stopped["layout"], stopped["transpiled_depth"], stopped["test_two_qubit_gates"]) == ("", -1, -1)
    assert set(stopped) == set(row)


@pytest.mark.parametrize("val", [0, 4], ids=["no-validation", "validation-split"])
def test_trained_clean_scored_noisy_trains_as_the_clean_trial_does(tmp_path, val):
    clean = _trial(tmp_path, val_samples_per_class=val)
    noisy_test = _trial(tmp_path, test_noise="depolarizing:0.05,0.3", val_samples_per_class=val)
    zero_test = _trial(tmp_path, test_noise="depolarizing:0,0", val_samples_per_class=val)
    n_test = clean.row["n_test"]
    for res in (noisy_test, zero_test):
        assert [e["train_loss"] for e in res.epochs] == [e["train_loss"] for e in clean.epochs]
        assert res.row["train_acc"] == clean.row["train_acc"]
        # the test split is also scored as trained (to keep the training's stream), once per epoch
        assert res.row["circuit_executions"] == clean.row["circuit_executions"] + 2 * n_test
    assert noisy_test.row["test_loss"] != clean.row["test_loss"]
    assert abs(zero_test.row["test_loss"] - clean.row["test_loss"]) < 0.2  # other shots, same model
    assert (noisy_test.row["noise"], noisy_test.row["test_noise"]) == ("", "depolarizing:0.05,0.3")
    if val:  # validation keeps its own stream: a zero-noise scorer draws the same counts
        assert zero_test.row["val_acc"] == clean.row["val_acc"]
        assert zero_test.row["val_loss"] == pytest.approx(clean.row["val_loss"], abs=1e-9)
    assert len({clean.row["config_hash"], noisy_test.row["config_hash"], zero_test.row["config_hash"]}) == 3


def test_trained_clean_scored_under_zero_noise_is_the_clean_trial_exactly(tmp_path):
    clean = _trial(tmp_path, shots=0)
    zero_test = _trial(tmp_path, shots=0, test_noise="depolarizing:0,0")
    assert zero_test.row["circuit_executions"] == clean.row["circuit_executions"]
    assert zero_test.row["test_acc"] == clean.row["test_acc"]
    assert [e["test_loss"] for e in zero_test.epochs] == pytest.approx([e["test_loss"] for e in clean.epochs],
                                                                       abs=1e-9)  # fmt: skip


def test_trained_noisy_scored_clean(tmp_path):
    both = _trial(tmp_path, noise="depolarizing:0.02,0.2", epochs=1)
    clean_test = _trial(tmp_path, noise="depolarizing:0.02,0.2", test_noise="none", epochs=1)
    assert both.row["train_loss"] == clean_test.row["train_loss"]
    assert (clean_test.row["noise"], clean_test.row["test_noise"]) == ("depolarizing:0.02,0.2", "")
    assert clean_test.row["test_loss"] != both.row["test_loss"]
