"""Phase 1's progress as a person reads it: plain lines at most every 10% of a teacher in a
pipe, no escape codes and no Ray task prefixes; bars on a terminal; the tasks' every line
with --verbose."""

import json
import re

import pytest
import yaml

from sweep.progress import TeacherProgress, parse_epoch

ESCAPE = re.compile(r"\x1b\[")


def _epoch_line(k: int, n: int) -> str:
    return f"epoch {k}/{n} loss 0.1234 test acc 0.9{k:02d} ({k * 10}s, ETA {(n - k) * 10}s)"


def test_plain_lines_at_most_every_tenth_and_every_resume():
    out: list[str] = []
    shown = TeacherProgress(["alexnet on mnist 0-5 (seed 0)", "lenet on mnist 0-5 (seed 0)"], live=False,
                            write=out.append)  # fmt: skip
    shown.beat(0, "started")
    for k in range(1, 41):  # 40 epochs: one line per 4
        shown.beat(0, _epoch_line(k, 40))
        shown.beat(0, _epoch_line(k, 40))  # the same heartbeat seen twice prints once
    assert out[0] == "  teacher alexnet on mnist 0-5 (seed 0): started"
    epochs = [parse_epoch(line.split(": ", 1)[1]) for line in out[1:]]
    assert [e[0] for e in epochs] == list(range(4, 41, 4))
    out.clear()
    shown.beat(1, "resuming lenet from epoch 3/10")
    for k in range(4, 11):  # 10 epochs: every one is a tenth
        shown.beat(1, _epoch_line(k, 10))
    assert out[0] == "  teacher lenet on mnist 0-5 (seed 0): resuming lenet from epoch 3/10"
    assert len(out) == 1 + 7 and not any(ESCAPE.search(line) for line in out)


def test_a_heartbeat_missed_between_looks_still_shows_the_tenth_passed():
    """The driver looks every 2 s: a teacher may pass several epochs between two looks."""
    out: list[str] = []
    shown = TeacherProgress(["t"], live=False, write=out.append)
    for k in (1, 5, 6, 10):
        shown.beat(0, _epoch_line(k, 10))
    assert [parse_epoch(line.split(": ", 1)[1])[0] for line in out] == [1, 5, 6, 10]


def test_live_bars_follow_the_epochs(capsys):
    shown = TeacherProgress(["t"], live=True, write=lambda _l: pytest.fail("a bar, not a line"))
    shown.beat(0, "resuming t from epoch 2/5")
    shown.beat(0, _epoch_line(3, 5))
    assert shown.bars[0].n == 3 and shown.bars[0].total == 5
    shown.finished(0)
    assert "teacher t" in capsys.readouterr().err


@pytest.mark.slow
def test_a_piped_sweep_prints_few_plain_lines(tmp_path):
    """A whole sweep in a pipe: its teacher's 60 epochs as at most 10 plain lines, no escape
    codes, no '(_teacher_task pid=...)' lines, and its first line says what will run.

    The driver looks at the teachers' heartbeats every 2 s; 60 epochs of LeNet on the digits
    (about 5 s alone) give it a look or two mid-training. At 20 epochs (under 2 s) a run with
    the cores to itself finished between two looks and printed no epoch line at all."""
    from test_sweep import TINY, _sweep_cli

    spec = {**TINY, "name": "piped", "paths": {"results": str(tmp_path / "results")},
            "grid": {**TINY["grid"], "teacher": ["none", "lenet"], "temperature": 3, "seed": [0]},
            "teacher": {"epochs": 60}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = _sweep_cli(path, "--no-tables", "--num-cpus", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert not ESCAPE.search(text)
    assert "_teacher_task pid=" not in text
    first = proc.stdout.splitlines()[0]
    assert first.startswith(
        "sweep piped: 1 teacher(s) to train or find cached (1 to train, not timed before), then 2 student trials"
    )
    epochs = [line for line in proc.stdout.splitlines() if "teacher lenet" in line and ": epoch " in line]
    assert 1 <= len(epochs) <= 10, epochs
    assert len(proc.stdout.splitlines()) <= 40, proc.stdout


def _meta(cache, arch, digest, epochs, seconds, lr=1e-3, logits=True, **extra):
    folder = cache / "teachers" / "digits" / "0-1-2-3-4-5" / f"{arch}-seed0-{digest}"
    folder.mkdir(parents=True)
    key = {"dataset": "digits", "arch": arch, "seed": 0, "epochs": epochs, "lr": lr, "batch_size": 128,
           "optimizer": "adam"} | extra  # fmt: skip
    (folder / "meta.json").write_text(json.dumps({"key": key, "train_seconds": seconds}))
    if logits:
        (folder / "logits.parquet").write_bytes(b"x")


def test_the_first_line_says_what_the_cache_knows_of_the_teachers(tmp_path):
    """Cached teachers are counted; the others are estimated from earlier trainings of the same
    architecture, dataset and classes (per epoch, scaled), or said to be untimed; an ensemble
    assembled from its members costs nothing of its own."""
    from sweep.grid import TeacherJob
    from sweep.progress import teacher_outlook
    from workers.teacher_settings import TeacherSettings

    settings = TeacherSettings()  # digits: lenet 40 epochs at 1e-3, alexnet 20 at 1e-4
    jobs = [TeacherJob("digits", "0-5", arch, settings) for arch in ("lenet", "alexnet", "ensemble")]
    assert teacher_outlook(jobs, tmp_path) == "2 to train, not timed before"

    _meta(tmp_path, "alexnet", "aaaa", epochs=10, seconds=90.0, lr=1e-4)  # other epochs: a rate, 9 s/epoch
    assert teacher_outlook(jobs, tmp_path) == (
        "1 to train in about 3 min (earlier trainings in the cache); 1 to train, not timed before"
    )
    _meta(tmp_path, "lenet", "bbbb", epochs=40, seconds=30.0)  # the same settings, complete: cached
    assert teacher_outlook(jobs, tmp_path).startswith("1 cached; 1 to train in about 3 min")
    _meta(tmp_path, "alexnet", "cccc", epochs=20, seconds=150.0, lr=1e-4, logits=False)  # no logits: not cached
    assert teacher_outlook(jobs, tmp_path).startswith("1 cached; 1 to train in about")
    broken = tmp_path / "teachers" / "digits" / "0-1-2-3-4-5" / "alexnet-seed0-dddd"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")  # a damaged meta is no estimate, and no error
    assert "1 cached" in teacher_outlook(jobs, tmp_path)
