"""Sweep specs: the shipped specs expand to their grids, and every bad spec is one line, exit 2, nothing written.

No test here starts Ray: ``sweep.driver.connect`` is replaced by a function that
fails the test, so a bad spec that slipped through validation shows up as a
failure instead of a sweep.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

import sweep.driver
from sweep.cli import main
from sweep.grid import expand
from sweep.plan import finished_hashes, plan, select
from sweep.results import TRIALS, append_rows
from sweep.spec import load_spec
from sweep.spec_errors import SpecError
from sweep.spec_search import SearchSpec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
CLI = Path(sys.executable).with_name("qkd-sweep")


# ------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Relative paths resolve under tmp_path, no data root from the environment, and Ray never starts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QKD_DATA_ROOT", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started: the input should have been rejected before")

    monkeypatch.setattr(sweep.driver, "connect", no_ray)


def base_spec(tmp_path: Path) -> dict:
    """A small valid spec: digits 0-5, baseline and LeNet, 3 qubits, 2 seeds; results under tmp_path."""
    return {
        "name": "t",
        "grid": {"dataset": ["digits"], "classes": ["0-5"], "teacher": ["none", "lenet"], "qubits": [3],
                 "seed": [0, 1]},
        "trial": {"epochs": 1, "samples_per_class": 4, "test_samples_per_class": 4},
        "paths": {"results": str(tmp_path / "results")},
    }  # fmt: skip


def search_spec(tmp_path: Path) -> dict:
    """A small valid study: one cell, a validation split, lam and lr searched."""
    return {
        "name": "s",
        "grid": {"dataset": "digits", "classes": "0-5", "teacher": "lenet", "qubits": 3, "seed": 0},
        "trial": {"epochs": 2, "val_samples_per_class": 5},
        "search": {"num_samples": 2, "params": {"lam": {"low": 0.1, "high": 0.9},
                                                "lr": {"low": 0.001, "high": 0.01, "log": True}}},
        "paths": {"results": str(tmp_path / "results")},
    }  # fmt: skip


def write_spec(tmp_path: Path, content: dict | list | str, name: str = "spec.yaml") -> Path:
    """``content`` written to tmp_path/name: a dict or list dumped safely, a string as it is."""
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    assert lines[0].startswith("qkd-sweep: error: "), lines[0]
    return lines[0]


def cells(trials) -> set[tuple]:
    return {(c.dataset, c.classes, c.qubits) for c in trials}


# ------------------------------------------------------------ shipped specs
def test_quickstart_expands_to_12_trials_and_3_teachers():
    spec = load_spec(SPECS / "quickstart.yaml")
    grid = expand(spec)
    assert len(grid.trials) == 12
    assert grid.dropped == []
    by_teacher = Counter(c.teacher for c in grid.trials)
    assert by_teacher == {"none": 3, "lenet": 3, "alexnet": 3, "ensemble": 3}
    assert sum(c.distills for c in grid.trials) == 9
    assert {c.seed for c in grid.trials} == {0, 1, 2}
    assert cells(grid.trials) == {("digits", "0-5", 3)}
    assert len({c.config_hash() for c in grid.trials}) == 12

    jobs = grid.teacher_jobs()
    archs = [j.arch for j in jobs]
    assert sorted(archs) == ["alexnet", "ensemble", "lenet"]
    assert archs.index("ensemble") > archs.index("lenet")
    assert archs.index("ensemble") > archs.index("alexnet")
    assert {(j.dataset, j.classes) for j in jobs} == {("digits", "0-5")}


def test_paper_expands_to_the_papers_120_trials():
    spec = load_spec(SPECS / "paper.yaml")
    grid = expand(spec)
    trials = grid.trials
    assert len(trials) == 120 == 6 * 4 * 5
    assert grid.dropped == []
    want_cells = {(d, c, q) for d in ("mnist", "fashionmnist") for c, q in (("0-5", 3), ("0-7", 3), ("0-7", 4))}
    assert cells(trials) == want_cells
    per_cell = Counter((c.dataset, c.classes, c.qubits) for c in trials)
    assert set(per_cell.values()) == {20}  # 4 teacher settings x 5 seeds in each of the 6 cells
    per_setting = Counter((c.dataset, c.classes, c.qubits, c.teacher) for c in trials)
    assert len(per_setting) == 24 and set(per_setting.values()) == {5}
    assert Counter(c.teacher for c in trials) == {"none": 30, "alexnet": 30, "lenet": 30, "ensemble": 30}
    assert {c.seed for c in trials} == {0, 1, 2, 3, 4}
    assert {(c.temperature, c.lam) for c in trials if c.distills} == {(3.0, 0.9)}
    assert all(c.effective_shots == 5000 and c.backend == "aer" for c in trials)
    assert len({c.config_hash() for c in trials}) == 120

    jobs = grid.teacher_jobs()
    assert len(jobs) == 12  # 2 datasets x 2 class subsets x (lenet, alexnet, ensemble); qubits do not matter
    assert Counter(j.arch for j in jobs) == {"lenet": 4, "alexnet": 4, "ensemble": 4}
    position = {(j.dataset, j.classes, j.arch): i for i, j in enumerate(jobs)}
    for (dataset, classes, arch), i in position.items():
        if arch == "ensemble":
            assert i > position[(dataset, classes, "lenet")] and i > position[(dataset, classes, "alexnet")]


def test_search_digits_has_a_study_over_three_params():
    spec = load_spec(SPECS / "search-digits.yaml")
    assert isinstance(spec.search, SearchSpec)
    params = {p.name: p for p in spec.search.params}
    assert set(params) == {"temperature", "lam", "lr"}
    assert params["temperature"].log and params["lr"].log and not params["lam"].log
    assert params["temperature"].low < params["temperature"].high
    assert spec.search.metric.startswith("val")
    assert spec.trial["val_samples_per_class"] >= 1
    grid = expand(spec)
    assert len(grid.trials) == 1


def test_every_shipped_spec_loads_and_expands():
    for path in sorted(SPECS.glob("*.yaml")):
        grid = expand(load_spec(path))
        assert grid.trials, path.name
        assert grid.dropped == [], path.name
        assert len({c.config_hash() for c in grid.trials}) == len(grid.trials), path.name


def test_readings_spec_changes_one_choice_at_a_time_from_the_paper_reading():
    trials = expand(load_spec(SPECS / "readings-mnist.yaml")).trials
    assert len(trials) == 160 == 16 * 2 * 5  # 16 readings x (baseline, LeNet) x 5 seeds
    assert cells(trials) == {("mnist", "0-5", 3)}
    reference = {"ansatz": "h-ry", "layers": 1, "reduction": "fc", "head": "linear", "lr": 0.001,
                 "samples_per_class": 150}  # fmt: skip
    readings = Counter()
    for c in trials:
        actual = {**{k: getattr(c.resolved(), k) for k in reference}, "ansatz": c.effective_ansatz,
                  "samples_per_class": c.effective_samples_per_class}  # fmt: skip
        changed = {k: actual[k] for k in reference if actual[k] != reference[k] and k != "layers"}
        assert len(changed) <= 1, changed
        readings[tuple(changed.items()), c.layers] += 1
    assert set(readings.values()) == {10}
    assert {c.teacher for c in trials} == {"none", "lenet"}
    assert all(c.backend == "statevector" and c.effective_shots == 0 for c in trials)


def test_full_split_spec_is_the_paper_grid_with_every_training_image():
    paper = expand(load_spec(SPECS / "paper.yaml")).trials
    full = expand(load_spec(SPECS / "paper-mnist-full.yaml")).trials
    assert len(full) == 60
    assert cells(full) == {c for c in cells(paper) if c[0] == "mnist"}
    assert all(c.take_available and c.samples_per_class >= 7000 for c in full)
    assert all(c.effective_test_samples_per_class == 150 for c in full)
    key = lambda c: (c.classes, c.qubits, c.teacher, c.seed, c.temperature, c.lam, c.lr, c.epochs)  # noqa: E731
    assert {key(c) for c in full} == {key(c) for c in paper if c.dataset == "mnist"}


def test_the_two_mnist_studies_are_equally_tuned():
    kd, base = (load_spec(SPECS / f"search-mnist-{name}.yaml") for name in ("lenet", "baseline"))
    assert {p.name for p in kd.search.params} == {"temperature", "lam", "lr"}
    assert {p.name for p in base.search.params} == {"lr"}
    assert [p for p in kd.search.params if p.name == "lr"] == list(base.search.params)
    for field_name in ("num_samples", "metric", "sampler", "seed", "scheduler", "grace_period"):
        assert getattr(kd.search, field_name) == getattr(base.search, field_name), field_name
    assert kd.search.metric == "val_acc" and kd.trial == base.trial
    (t_kd,), (t_base,) = expand(kd).trials, expand(base).trials
    assert (t_kd.teacher, t_base.teacher) == ("lenet", "none")
    assert dataclasses.replace(t_kd, teacher="none").config_hash() == t_base.config_hash()


# ----------------------------------------------------------- grid structure
def test_baselines_do_not_vary_temperature_or_lam(tmp_path):
    raw = base_spec(tmp_path)
    raw["grid"].update(teacher=["none", "lenet"], temperature=[2, 4], lam=[0.5, 0.9], seed=[0, 1])
    grid = expand(load_spec(write_spec(tmp_path, raw)))
    baselines = [c for c in grid.trials if c.teacher == "none"]
    distilled = [c for c in grid.trials if c.teacher != "none"]
    assert len(baselines) == 2  # one per seed, not one per seed x T x lam (8)
    assert {c.seed for c in baselines} == {0, 1}
    assert len(distilled) == 8
    assert {(c.temperature, c.lam, c.seed) for c in distilled} == {
        (t, lam, s) for t in (2.0, 4.0) for lam in (0.5, 0.9) for s in (0, 1)
    }
    assert grid.n_combinations == 16
    assert grid.n_duplicates == 6
    assert len({c.config_hash() for c in grid.trials}) == len(grid.trials) == 10


def test_a_combination_that_cannot_run_is_dropped_with_a_message(tmp_path):
    raw = base_spec(tmp_path)
    raw["grid"].update(qubits=[2, 3], classes=["0-3", "0-5"], teacher=["lenet"], seed=[0])
    grid = expand(load_spec(write_spec(tmp_path, raw)))
    assert cells(grid.trials) == {("digits", "0-3", 2), ("digits", "0-3", 3), ("digits", "0-5", 3)}
    assert len(grid.dropped) == 1
    assert "qubits" in grid.dropped[0] and "0-5" in grid.dropped[0] and "2 qubits" in grid.dropped[0]
    assert grid.n_combinations == 4


def test_a_value_that_never_runs_is_an_error_naming_the_axis(tmp_path):
    raw = base_spec(tmp_path)
    raw["grid"].update(qubits=[2], classes=["0-5"])
    with pytest.raises(SpecError) as info:
        expand(load_spec(write_spec(tmp_path, raw)))
    assert info.value.field == "grid.qubits"
    assert "grid.qubits" in str(info.value) and "2 qubits" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_shots_exact_is_accepted(tmp_path, capsys):
    raw = base_spec(tmp_path)
    raw["trial"]["shots"] = "exact"
    spec = load_spec(write_spec(tmp_path, raw))
    assert all(c.effective_shots == 0 for c in expand(spec).trials)
    code, out, err = run_cli(capsys, "validate", str(tmp_path / "spec.yaml"))
    assert code == 0 and err == ""
    assert "valid" in out.splitlines()[0]
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------- bad specs
def _patch(**sections):
    """A change to base_spec: merge each section's keys (a section given as None is removed)."""

    def change(raw: dict) -> dict:
        for name, keys in sections.items():
            if keys is None:
                raw.pop(name, None)
            elif isinstance(raw.get(name), dict) and isinstance(keys, dict):
                raw[name].update(keys)
            else:
                raw[name] = keys
        return raw

    return change


def _rename_grid(raw: dict) -> dict:
    raw["gird"] = raw.pop("grid")
    return raw


def _search(**sections):
    """A change that turns base_spec into search_spec, then merges ``sections`` (search keys into search)."""

    def change(raw: dict) -> dict:
        study = search_spec(Path(raw["paths"]["results"]).parent)
        for name, keys in sections.items():
            if name == "params":
                study["search"]["params"].update(keys)
            elif name == "search":
                study["search"].update(keys)
            elif keys is None:
                study[name] = {k: v for k, v in study[name].items() if k != "val_samples_per_class"}
            else:
                study[name].update(keys)
        return study

    return change


MALFORMED = "name: t\ngrid:\n  dataset: digits\n   seed: 0\n"

# (id, change to base_spec or raw text, strings the one error line must contain: field path first, then value)
BAD_SPECS = [
    ("unknown-top-level-key", _rename_grid, ["gird", "did you mean 'grid'"]),
    ("unknown-grid-key", _patch(grid={"datset": ["digits"]}), ["grid.datset", "did you mean 'dataset'"]),
    ("unknown-trial-key", _patch(trial={"epoch": 3}), ["trial.epoch", "did you mean 'epochs'"]),
    ("unknown-teacher-key", _patch(teacher={"epoch": 3}), ["teacher.epoch", "'epochs'"]),
    ("unknown-teacher-optimizer", _patch(teacher={"optimizer": "sgd"}), ["teacher.optimizer", "'sgd'", "adam-fused"]),
    ("unknown-paths-key", _patch(paths={"result": "x"}), ["paths.result", "'results'"]),
    ("unknown-resources-key", _patch(resources={"cpus_per_trail": 1}),
     ["resources.cpus_per_trail", "'cpus_per_trial'"]),
    ("epochs-not-int", _patch(trial={"epochs": "ten"}), ["trial.epochs", "'ten'"]),
    ("seed-not-int", _patch(grid={"seed": ["a"]}), ["grid.seed", "'a'"]),
    ("classes-int", _patch(grid={"classes": 5}), ["grid.classes", "got 5"]),
    ("unknown-teacher", _patch(grid={"teacher": ["lenet", "resnet"]}), ["grid.teacher", "'resnet'"]),
    ("temperature-zero", _patch(grid={"temperature": [0]}), ["grid.temperature", "got 0"]),
    ("temperature-negative", _patch(trial={"temperature": -1}), ["trial.temperature", "got -1"]),
    ("lam-above-1", _patch(grid={"lam": [0.9, 1.5]}), ["grid.lam", "1.5"]),
    ("lam-below-0", _patch(trial={"lam": -0.1}), ["trial.lam", "-0.1"]),
    ("shots-zero", _patch(trial={"shots": 0}), ["trial.shots", "got 0"]),
    ("shots-negative", _patch(grid={"shots": [5000, -5]}), ["grid.shots[1]", "got -5"]),
    ("too-few-qubits", _patch(grid={"qubits": [2]}), ["grid.qubits", "2 qubits", "6 classes"]),
    ("malformed-yaml", MALFORMED, ["line 4, column 8", "malformed YAML"]),
    ("empty-file", "", ["spec", "NoneType"]),
    ("spec-is-a-list", "- grid\n- trial\n", ["spec", "list"]),
    ("empty-axis", _patch(grid={"seed": []}), ["grid.seed", "empty list"]),
    ("value-listed-twice", _patch(grid={"seed": [0, 1, 0]}), ["grid.seed[2]", "0 is listed twice"]),
    ("value-in-grid-and-trial", _patch(trial={"seed": 1}), ["trial.seed", "'grid'"]),
    ("class-subset-not-in-dataset", _patch(grid={"classes": ["0-12"]}), ["grid.classes", "'0-12'"]),
    ("negative-resources", _patch(resources={"cpus_per_trial": 0}), ["resources.cpus_per_trial", "got 0"]),
    ("search-test-metric", _search(search={"metric": "test_acc"}), ["search.metric", "'test_acc'", "bias"]),
    ("search-val-metric-without-split", _search(trial=None), ["trial.val_samples_per_class", "val_acc"]),
    ("search-low-above-high", _search(params={"lam": {"low": 0.9, "high": 0.5}}), ["search.params.lam", "0.9", "0.5"]),
    ("search-low-equals-high", _search(params={"lam": {"low": 0.5, "high": 0.5}}), ["search.params.lam", "0.5"]),
    ("search-log-low-zero", _search(params={"lr": {"low": 0, "high": 0.1, "log": True}}),
     ["search.params.lr.low", "got 0"]),
    ("search-log-low-negative", _search(params={"temperature": {"low": -1, "high": 5, "log": True}}),
     ["search.params.temperature.low", "got -1"]),
    ("search-grid-axis-two-values", _search(grid={"seed": [0, 1]}), ["grid.seed", "2 values"]),
    ("search-unknown-sampler", _search(search={"sampler": "grid"}), ["search.sampler", "'grid'"]),
]  # fmt: skip


@pytest.mark.parametrize("command", ["validate", "sweep"])
@pytest.mark.parametrize("change,expected", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, command, change, expected):
    content = change if isinstance(change, str) else change(copy.deepcopy(base_spec(tmp_path)))
    path = write_spec(tmp_path, content)
    code, _, err = run_cli(capsys, command, str(path))
    assert code == 2
    line = one_error_line(err)
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert not (tmp_path / "results").exists()
    assert os.listdir(tmp_path) == ["spec.yaml"]


def test_the_bad_spec_list_is_valid_without_its_change(tmp_path):
    """The cases above fail because of their change, not because the base specs are wrong."""
    assert len(expand(load_spec(write_spec(tmp_path, base_spec(tmp_path)))).trials) == 4
    assert expand(load_spec(write_spec(tmp_path, search_spec(tmp_path), "s.yaml"))).trials


@pytest.mark.parametrize("command", ["validate", "sweep"])
def test_missing_spec_file(tmp_path, capsys, command):
    code, _, err = run_cli(capsys, command, str(tmp_path / "missing.yaml"))
    assert code == 2
    line = one_error_line(err)
    assert "no such file" in line and "missing.yaml" in line
    assert os.listdir(tmp_path) == []


def test_missing_data_offline_fails_before_ray(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    raw = base_spec(tmp_path)
    raw["grid"]["dataset"] = ["mnist"]
    raw["paths"].update(data_root=str(data), download=False)
    path = write_spec(tmp_path, raw)
    code, _, err = run_cli(capsys, "sweep", str(path))  # connect() fails the test if reached
    assert code == 2
    line = one_error_line(err)
    assert "mnist" in line and str(data / "MNIST" / "raw") in line and "missing" in line
    assert "train-images-idx3-ubyte" in line
    assert not (tmp_path / "results").exists()
    assert list(data.iterdir()) == []  # nothing downloaded or created under the data root


@pytest.mark.parametrize("command", ["validate", "sweep"])
@pytest.mark.parametrize(
    "only,expected",
    [
        (["datset=digits"], ["--only", "'datset=digits'"]),
        (["dataset"], ["--only", "'dataset'"]),
        (["dataset=mnist"], ["--only", "dataset=mnist"]),  # a valid filter that matches no trial
        (["seed=0", "teacher=alexnet"], ["--only", "teacher=alexnet"]),
    ],
    ids=["unknown-field", "no-equals", "matches-nothing", "combination-matches-nothing"],
)
def test_bad_only_filter(tmp_path, capsys, command, only, expected):
    path = write_spec(tmp_path, base_spec(tmp_path))
    code, _, err = run_cli(capsys, command, str(path), *(a for o in only for a in ("--only", o)))
    assert code == 2
    line = one_error_line(err)
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "change,only",
    [(_patch(grid={"teacher": ["lenet", "resnet"]}), []), (None, ["--only", "dataset=mnist"])],
    ids=["unknown-teacher", "only-matches-nothing"],
)
def test_sweep_fresh_with_bad_input_keeps_earlier_results(tmp_path, capsys, change, only):
    """Bad input is rejected before anything is touched: --fresh must not have discarded the results."""
    good = base_spec(tmp_path)
    spec = load_spec(write_spec(tmp_path, good))
    trials_file = spec.results_dir / TRIALS
    append_rows(trials_file, [{"config_hash": expand(spec).trials[0].config_hash(), "status": "ok"}])
    raw = change(copy.deepcopy(good)) if change else good
    path = write_spec(tmp_path, raw)
    code, _, err = run_cli(capsys, "sweep", str(path), "--fresh", *only)
    assert code == 2
    one_error_line(err)
    assert trials_file.exists(), "sweep --fresh deleted the earlier results before rejecting the input"


# -------------------------------------------------------------- safe YAML
def test_yaml_is_read_with_a_safe_loader(tmp_path, capsys):
    marker = tmp_path / "hacked"
    text = f'name: t\ngrid: !!python/object/apply:os.system ["echo hacked > {marker}"]\n'
    path = write_spec(tmp_path, text)
    for command in ("validate", "sweep"):
        code, _, err = run_cli(capsys, command, str(path))
        assert code == 2
        assert "python/object/apply" in one_error_line(err)
        assert not marker.exists()
    proc = subprocess.run([str(CLI), "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr)
    assert not marker.exists()
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------- validate
def test_validate_paper_prints_grid_size_and_trials_per_phase(tmp_path, capsys):
    code, out, err = run_cli(capsys, "validate", str(SPECS / "paper.yaml"), "--results", str(tmp_path / "r"))
    assert code == 0 and err == ""
    assert re.search(r"grid: 120 combinations\b", out)
    assert re.search(r"phase 1 \(teachers\): 12 tasks: 4 alexnet, 4 ensemble, 4 lenet$", out, re.M)
    assert re.search(r"phase 2 \(students\): 120 trials: 30 alexnet, 30 ensemble, 30 lenet, 30 none$", out, re.M)
    assert re.search(r"already finished: 0; to run: 120$", out, re.M)
    assert not (tmp_path / "r").exists()


def test_validate_into_a_closed_pipe_stops_without_a_traceback(tmp_path):
    spec, out = SPECS / "paper.yaml", tmp_path / "r"
    proc = subprocess.run(f"'{CLI}' validate '{spec}' --results '{out}' | head -n 1",
                          shell=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.startswith("spec paper ")
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_validate_with_only_counts_the_selection(tmp_path, capsys):
    argv = ["validate", str(SPECS / "paper.yaml"), "--results", str(tmp_path / "r")]
    code, out, _ = run_cli(capsys, *argv, "--only", "dataset=mnist", "--only", "classes=0-5")
    assert code == 0
    assert re.search(r"phase 2 \(students\): 20 trials: 5 alexnet, 5 ensemble, 5 lenet, 5 none$", out, re.M)
    assert re.search(r"phase 1 \(teachers\): 3 tasks", out)


# ------------------------------------------------------------------- --only
@pytest.fixture
def paper_trials():
    return expand(load_spec(SPECS / "paper.yaml")).trials


def test_only_filters_combine_across_fields(paper_trials):
    chosen = select(paper_trials, ["dataset=mnist", "classes=0-5"])
    assert len(chosen) == 20
    assert cells(chosen) == {("mnist", "0-5", 3)}


def test_only_field_given_twice_matches_either(paper_trials):
    chosen = select(paper_trials, ["seed=0", "seed=1"])
    assert len(chosen) == 48  # 120 trials over 5 seeds, 2 of them
    assert {c.seed for c in chosen} == {0, 1}
    assert len(select(paper_trials, ["seed=0", "seed=1", "teacher=none"])) == 12


def test_only_numbers_match_as_written_in_the_spec(paper_trials):
    """paper.yaml says temperature: [3] and lam: [0.9]; --only takes the values as the spec writes them."""
    assert len(select(paper_trials, ["lam=0.9"])) == 120
    assert len(select(paper_trials, ["qubits=4"])) == 40
    assert len(select(paper_trials, ["temperature=3"])) == 120


def test_only_bad_filter_raises_spec_error(paper_trials):
    with pytest.raises(SpecError, match="--only"):
        select(paper_trials, ["nonsense=1"])
    with pytest.raises(SpecError, match="--only"):
        select(paper_trials, ["dataset"])


# ------------------------------------------------------------------- resume
def test_plan_resumes_leaving_out_only_finished_trials(tmp_path):
    spec = load_spec(write_spec(tmp_path, base_spec(tmp_path)))
    trials = expand(spec).trials
    assert len(trials) == 4
    ok, failed = trials[0].config_hash(), trials[1].config_hash()
    append_rows(spec.results_dir / TRIALS, [
        {"config_hash": ok, "status": "ok", "trial_id": "a"},
        {"config_hash": failed, "status": "error", "trial_id": "b"},
        {"config_hash": "0" * 16, "status": "ok", "trial_id": "c"},  # from another grid: ignored
    ])  # fmt: skip
    assert finished_hashes(spec.results_dir) == {ok, "0" * 16}

    _, pending = plan(spec)
    hashes = [c.config_hash() for c in pending]
    assert ok not in hashes
    assert failed in hashes  # an error is run again
    assert sorted(hashes) == sorted(c.config_hash() for c in trials[1:])

    _, everything = plan(spec, fresh=True)
    assert sorted(c.config_hash() for c in everything) == sorted(c.config_hash() for c in trials)

    _, only_seed0 = plan(spec, only=[f"seed={trials[0].seed}"])
    assert ok not in {c.config_hash() for c in only_seed0}
    assert len(only_seed0) == 1


def test_plan_with_only_matching_nothing_is_a_spec_error(tmp_path):
    spec = load_spec(write_spec(tmp_path, base_spec(tmp_path)))
    with pytest.raises(SpecError, match="--only"):
        plan(spec, only=["dataset=mnist"])
