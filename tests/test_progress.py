"""`qkd-sweep trial` shows progress bars on a terminal and plain lines in CI and pipes."""

from __future__ import annotations

import os

import pytest

import sweep.commands.trial as trial_command
from sweep.cli import main
from sweep.progress import interactive


def _cli(tmp_path, *extra):
    return ["trial", "--dataset", "digits", "--classes", "0-3", "--qubits", "2", "--backend", "statevector",
            "--epochs", "3", "--samples-per-class", "8", "--test-samples-per-class", "6", "--batch-size", "16",
            "--teacher-epochs", "2", "--out", str(tmp_path / "out"), *extra]  # fmt: skip


class _Tty:
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    """stderr says it is a terminal (capsys's stand-in for it is not one)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(trial_command, "interactive", lambda: interactive(_Tty()))


def test_a_terminal_gets_bars_for_the_teacher_and_the_student(tmp_path, capsys, terminal):
    assert main(_cli(tmp_path, "--teacher", "lenet")) == 0
    err = capsys.readouterr().err
    assert "student:" in err and "3/3" in err and "epoch" in err and "test_acc=" in err
    assert "teacher lenet:" in err and "2/2" in err
    assert "epoch   1/3  train_loss" not in err  # the bar, not a line per epoch


def test_what_counts_as_a_person_watching(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with open(os.devnull) as pipe_like:
        assert interactive(_Tty()) and not interactive(pipe_like)
    monkeypatch.setenv("CI", "true")
    assert not interactive(_Tty())


def test_a_pipe_or_ci_gets_one_plain_line_per_epoch_and_no_bar(tmp_path, capsys, monkeypatch, terminal):
    monkeypatch.setenv("CI", "true")  # a CI runner's terminal is not a person
    assert main(_cli(tmp_path, "--teacher", "none")) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("epoch")][0].startswith("epoch   1/3  train_loss")
    assert "it/s" not in err and "epoch/s" not in err and "\r" not in err


def test_quiet_prints_no_progress_at_all(tmp_path, capsys, terminal):
    assert main(_cli(tmp_path, "--teacher", "none", "--quiet")) == 0
    assert "epoch" not in capsys.readouterr().err
