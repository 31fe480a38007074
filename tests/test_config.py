"""Configuration is validated once, at the edge, with one line naming the field."""

import pytest

from workers.config import TrialConfig
from workers.errors import ConfigError
from workers.kinds import parse_classes
from workers.teacher_settings import TeacherSettings


@pytest.mark.parametrize(
    "text,want",
    [("0-5", (0, 1, 2, 3, 4, 5)), ("0,3,5", (0, 3, 5)), ("0-2,7", (0, 1, 2, 7)), (" 5 , 1", (1, 5))],
)
def test_parse_classes(text, want):
    assert parse_classes(text) == want


@pytest.mark.parametrize("text", ["", "a-b", "5-2", "0,0", "3", "0-10", "1;2"])
def test_bad_class_subsets(text):
    with pytest.raises(ConfigError, match="^classes: "):
        parse_classes(text)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"teacher": "resnet"}, "teacher"),
        ({"dataset": "cifar"}, "dataset"),
        ({"qubits": 2, "classes": "0-5"}, "qubits"),
        ({"qubits": 3, "classes": "0-8"}, "qubits"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"lam": 1.5}, "lam"),
        ({"lam": -0.1}, "lam"),
        ({"shots": -1}, "shots"),
        # statevector with shots is valid (parameter-shift); autograd cannot differentiate shots
        ({"backend": "statevector", "shots": 100, "gradient": "autograd"}, "gradient"),
        ({"gradient": "autograd"}, "gradient"),
        ({"gradient": "finite-difference"}, "gradient"),
        ({"backend": "statevector", "shift_rule": "pi4-unnormalized"}, "shift_rule"),
        ({"device": "tpu", "backend": "statevector"}, "device"),
        ({"device": "cuda"}, "device"),
        ({"backend": "gpu"}, "backend"),
        ({"noise": "depolarizing:0.1", "backend": "statevector"}, "noise"),
        ({"noise": "thermal"}, "noise"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"reduction": "resize"}, "reduction"),
        ({"ansatz": "qcnn"}, "ansatz"),
        ({"head": "softmax"}, "head"),
        ({"kd_form": "paper"}, "kd_form"),
        ({"samples_per_class": 0}, "samples_per_class"),
        ({"teacher_settings": TeacherSettings(epochs=0)}, "teacher_epochs"),
    ],
)
def test_validation_names_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        TrialConfig(**changes).validate()
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "\n" not in message


def test_defaults_are_the_papers():
    cfg = TrialConfig().validate()
    assert (cfg.temperature, cfg.lam, cfg.lr, cfg.epochs) == (3.0, 0.9, 1e-3, 10)
    assert cfg.effective_shots == 5000
    assert TrialConfig(dataset="mnist").effective_samples_per_class == 150
    assert TrialConfig(backend="statevector").effective_shots == 0
    assert TrialConfig(qubits=3).effective_ansatz == "h-ry"
    assert TrialConfig(qubits=4, classes="0-7").effective_ansatz == "ry"


def test_config_hash_tracks_results_not_paths():
    a = TrialConfig(seed=1)
    assert a.config_hash() == TrialConfig(seed=1, cache_dir="/elsewhere", data_root="/x").config_hash()
    assert a.config_hash() != TrialConfig(seed=2).config_hash()
    assert a.config_hash() != TrialConfig(seed=1, lam=0.5).config_hash()
    assert TrialConfig(classes="0-5").config_hash() == TrialConfig(classes="5,4,3,2,1,0").config_hash()


def test_a_baseline_is_one_experiment_whatever_t_and_lam_say():
    base = TrialConfig(teacher="none", temperature=3, lam=0.9)
    assert base.config_hash() == TrialConfig(teacher="none", temperature=7, lam=0.2).config_hash()
    assert not base.distills
    assert not TrialConfig(teacher="lenet", lam=0).distills
