"""`qkd-sweep trial`'s options are made from TrialConfig's fields: none is mapped by hand."""

import dataclasses

import pytest

from sweep.cli import build_parser, config
from workers.config import TrialConfig
from workers.help import FIELD_HELP, TEACHER_HELP
from workers.teacher_settings import TeacherSettings


def test_every_field_has_help_and_an_option():
    assert set(FIELD_HELP) == {f.name for f in dataclasses.fields(TrialConfig)}
    assert set(TEACHER_HELP) == {f.name for f in dataclasses.fields(TeacherSettings)}
    text = build_parser().parse_args(["trial"]).__dict__
    for f in dataclasses.fields(TrialConfig):
        if f.name not in ("teacher_settings", "cache_dir"):
            assert f.name in text, f.name
    for f in dataclasses.fields(TeacherSettings):
        assert f"teacher_{f.name}" in text


def test_defaults_are_the_configs_and_a_command_line_round_trips(tmp_path):
    parser = build_parser()
    default = config(parser.parse_args(["trial", "--out", str(tmp_path)]))
    assert dataclasses.replace(default, cache_dir=TrialConfig().cache_dir) == TrialConfig()
    argv = ["trial", "--out", str(tmp_path), "--dataset", "mnist", "--classes", "0-7", "--teacher", "ensemble",
            "--qubits", "4", "-T", "2.5", "--lam", "0.5", "--kd-form", "additive", "--kd-defect", "teacher-ce",
            "--seed", "7", "--student", "cnn-angle", "--shots", "2000", "--shift-rule", "pi4-unnormalized",
            "--epochs", "3", "--lr", "0.01", "--batch-size", "1", "--samples-per-class", "9",
            "--test-samples-per-class", "8", "--val-samples-per-class", "2", "--take-available",
            "--selection", "first", "--no-normalize", "--report-epoch", "best_test", "--head", "softmax-freqs",
            "--fixed-scale", "--no-download", "--data-root", "/d", "--teacher-epochs", "4", "--teacher-lr", "0.1",
            "--teacher-batch-size", "64", "--teacher-seed", "3", "--teacher-recipe", "paper-code",
            "--teacher-keep", "best_test"]  # fmt: skip
    cfg = config(parser.parse_args(argv))
    want = TrialConfig(dataset="mnist", classes="0-7", teacher="ensemble", qubits=4, temperature=2.5, lam=0.5,
                       kd_form="additive", kd_defect="teacher-ce", seed=7, student="cnn-angle", shots=2000,
                       shift_rule="pi4-unnormalized", epochs=3, lr=0.01, batch_size=1, samples_per_class=9,
                       test_samples_per_class=8, val_samples_per_class=2, take_available=True, selection="first",
                       normalize=False, report_epoch="best_test", head="softmax-freqs", learn_scale=False,
                       download=False, data_root="/d", cache_dir=str(tmp_path / "cache"),
                       teacher_settings=TeacherSettings(epochs=4, lr=0.1, batch_size=64, seed=3,
                                                        recipe="paper-code", keep="best_test"))  # fmt: skip
    assert cfg == want


def test_a_value_the_config_rejects_is_one_line_naming_the_field(capsys):
    from sweep.cli import main

    assert main(["trial", "--student", "rnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "student: unknown value 'rnn'" in err


@pytest.mark.parametrize("flag", ["--reduction", "--ansatz", "--head", "--kd-form", "--selection"])
def test_choices_are_listed_in_the_help(flag, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["trial", "--help"])
    out = capsys.readouterr().out
    assert flag in out and "one of:" in out
