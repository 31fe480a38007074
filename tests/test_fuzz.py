"""Property-based fuzzing of the command line's edge: every input ends in exit 0, or in
exit 2 with exactly one line on stderr naming the field or file, and nothing written.

Specs are the shipped ones (specs/*.yaml) mutated twice over: as parsed YAML (wrong
types, unknown keys, out-of-range values, empty and huge lists, nesting) dumped back,
and as text (duplicate keys, anchors and aliases, tags, truncation, stray bytes, deep
nesting, a list or scalar at the top). Each goes through ``qkd-sweep validate`` and
``qkd-sweep sweep``; option strings go through ``qkd-sweep trial``. The CLI's main runs
in-process (a few real subprocesses at the end check the same from outside).

Nothing here trains or starts Ray: ``sweep.driver.preflight`` and ``connect`` and
``run_trial`` (as the ``trial`` command calls it) are replaced by functions that raise :class:`Reached`, so a
sweep or trial that got through validation is recorded (and must not have written
anything) instead of run. A few tiny real trials (digits, 1 epoch, a handful of samples,
the statevector backend) check the extreme values validation lets through.

Every ``test_finding_*`` below is the regression test of one finding of this fuzzing,
fixed at its source. The number of distinct cases run is printed at the end of the
module (and ``--hypothesis-show-statistics`` shows the outcomes per test).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sweep.commands.trial
import sweep.driver
from sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
CLI = Path(sys.executable).with_name("qkd-sweep")
#: Shipped specs whose plain validation takes seconds, left out of the mutated bases to keep
#: the module bounded: robustness-mnist.yaml's fake:DEVICE noise builds an IBM fake backend
#: per grid point in TrialConfig.validate (about 1.8 s a load; tests/test_spec.py loads it).
SLOW_TO_VALIDATE = {"robustness-mnist.yaml"}
SHIPPED = {p.name: p.read_text() for p in sorted(SPECS.glob("*.yaml")) if p.name not in SLOW_TO_VALIDATE}
PARSED = {name: yaml.safe_load(text) for name, text in SHIPPED.items()}
PREFIX = "qkd-sweep: error: "

#: Bounded in examples, no deadline (a 2-core machine shared with others), no example
#: database (nothing written into the repository).
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Distinct inputs per test and outcomes, printed when the module ends.
CASES: dict[str, set[str]] = {}
OUTCOMES: Counter = Counter()


class Reached(BaseException):
    """Validation let the input through: the stage named here would have run (BaseException: main catches none)."""


# ------------------------------------------------------------------ harness
@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    total = sum(len(v) for v in CASES.values())
    report = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    lines = [f"test_fuzz: {total} distinct cases: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(CASES.items()))]
    lines.append("test_fuzz: outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(OUTCOMES.items())))
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            if report is not None:
                report.write_line(line)
            else:  # pragma: no cover - without the terminal plugin (-p no:terminal)
                print(line)


@pytest.fixture(autouse=True)
def _keep_cwd():
    """Tests change directory into their temporary folder; the next one starts where pytest did."""
    old = os.getcwd()
    yield
    os.chdir(old)


@pytest.fixture(autouse=True)
def _no_runs(monkeypatch):
    """No data root from the environment, no cluster address, and no stage that trains or starts Ray."""
    monkeypatch.delenv("QKD_DATA_ROOT", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def reached(stage):
        def stop(*args, **kwargs):
            raise Reached(stage)

        return stop

    monkeypatch.setattr(sweep.driver, "preflight", reached("preflight"))
    monkeypatch.setattr(sweep.driver, "connect", reached("connect"))
    monkeypatch.setattr(sweep.commands.trial, "run_trial", reached("run_trial"))  # where the CLI looks it up


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def workdir(base: Path):
    """A fresh, empty working directory for one example, removed afterwards."""
    d = Path(tempfile.mkdtemp(dir=base))
    old = os.getcwd()
    os.chdir(d)
    try:
        yield d
    finally:
        os.chdir(old)
        shutil.rmtree(d, ignore_errors=True)


def files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def count(test: str, *parts) -> None:
    CASES.setdefault(test, set()).add(hashlib.sha256(repr(parts).encode()).hexdigest())


def run_main(argv: list[str]) -> tuple[int | str, str, str]:
    """``main(argv)`` in-process: (exit status, or the stage reached), stdout, stderr.
    Any other exception propagates: that is a traceback, and the example fails."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Reached as stage:
            code = str(stage)
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0]


#: Where an error line says the problem is: the spec file (then a field path, a line, or
#: 'spec'), the results root, or a trial option / field.
SPEC_LINE = re.compile(r"^qkd-sweep: error: (spec\.yaml: [^:]+|paths\.results): ")
FLAG_LINE = re.compile(r"^qkd-sweep: error: (argument --[a-z-]+|--only|--results|--data-root|paths\.results): ")
TRIAL_LINE = re.compile(r"^qkd-sweep: error: (argument \S+|unrecognized arguments|ambiguous option|[a-z_]+): ")


def check_spec_case(argv: list[str], d: Path, before: set[str]) -> tuple[int | str, str]:
    """Run one spec command and hold it to the contract; returns (outcome, error line)."""
    code, out, err = run_main(argv)
    assert files(d) == before, f"{argv[0]} wrote {sorted(files(d) - before)} (exit {code})"
    if code == 2:
        line = one_error_line(err)
        assert SPEC_LINE.match(line), f"the error names no field or file: {line!r}"
        return code, line
    assert err == "", err
    if argv[0] == "validate":
        assert code == 0, f"validate ended with {code!r}"
        assert out.startswith("spec ") and ": valid" in out.splitlines()[0]
    else:
        assert code in ("preflight", "connect"), f"sweep ended with {code!r}"
    return code, ""


def check_spec_file(test: str, d: Path, content: bytes, flags: tuple[str, ...] = ()) -> str:
    """``content`` as spec.yaml through validate, then sweep: both by the contract, and the two agree."""
    (d / "spec.yaml").write_bytes(content)
    before = files(d)
    count(test, content, flags)
    v_code, v_line = check_spec_case(["validate", "spec.yaml"], d, before)
    s_code, s_line = check_spec_case(["sweep", "spec.yaml", *flags], d, before)
    if v_code == 0:
        assert s_code in ("preflight", "connect"), (v_code, s_code, s_line)
    else:
        assert s_line == v_line, f"validate and sweep disagree: {v_line!r} / {s_line!r}"
    outcome = "valid" if v_code == 0 else "rejected"
    event(outcome)
    OUTCOMES[f"{test}:{outcome}"] += 1
    return v_line


# --------------------------------------------------------- value strategies
INTERESTING = [
    "", " ", "exact", "none", "0-5", "0-7", "0,3,5", "0-12", "5-0", "0-99999999999", "0,0", "3", "nan", ".nan", "inf",
    "1e400", "true", "null", "~", "digits", "mnist", "fashionmnist", "lenet", "alexnet", "ensemble", "aer",
    "statevector", "cuda", "paper", "hea", "pca", "val_acc", "test_acc", "tpe", "grid", "asha", "depolarizing:0.1",
    "depolarizing:nan", "depolarizing:2,3", "paper-code", "best_test", "best_val", "a\nb", "a\u2028b", "x" * 300,
    "fake:manila", "fake:x", "fake:", "名前", "..", ".hidden", "bogus://x", "memory://fuzz", "a\x00b", "\t", "---",
    "*alias", "&anchor", "%s", "{}",
]  # fmt: skip
#: Field and section names, near misses, and nonsense: keys an added entry may take.
KEYS = sorted({*PARSED["quickstart.yaml"]["trial"], *PARSED["paper.yaml"]["grid"], "grid", "trial", "teacher",
               "paths", "resources", "search", "subgrids", "name", "description", "epoch", "gird", "params",
               "cpus_per_trail", "results", "cache", "data_root", "low", "high", "choices", "num_samples",
               "tracking", "mlflow", "experiment"})  # fmt: skip

#: Integers at and past the edges: 64 bits, a float's range, a qubit count no 2**q finishes.
EXTREME_INTS = [2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**15, 10**30, 16**1000]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 12),
    st.sampled_from(EXTREME_INTS),  # listed twice with INTERESTING: drawn about twice as often
    st.sampled_from(EXTREME_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(INTERESTING),
    st.sampled_from(INTERESTING),
    st.binary(max_size=6),
    st.dates(),
    st.sets(st.integers(0, 3), max_size=3),
)
#: Values that broke validation somewhere (or could): drawn for a "set" as often as all the rest.
TARGETED = [*EXTREME_INTS, math.nan, math.inf, -1, 0, 1.5, 1e308, "0-99999999999", "0-12", "a\x00b", "x" * 300, "",
            "a\nb", "exact", [], {}, [[[[[1]]]]], {"": 1}]  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.integers(0, 3), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=8,
)


def slots(node, path=()) -> list[tuple]:
    """Every place in the parsed spec a mutation can reach, as a path of keys and indexes."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += slots(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += slots(v, (*path, i))
    return out


def get(raw, path):
    for k in path:
        raw = raw[k]
    return raw


def put(raw, path, value):
    if not path:
        return value
    get(raw, path[:-1])[path[-1]] = value
    return raw


def tame(value, path):
    """Under ``paths``, keep strings relative and inside the working directory (nothing may be
    written anyway, but the check of that looks there)."""
    if path and path[0] == "paths" and isinstance(value, str) and "://" not in value:
        return value.lstrip("/~").replace("..", "dd") or "r"
    return value


@st.composite
def huge_list(draw):
    n = draw(st.integers(100, 3000))
    bad = draw(scalars)
    kind = draw(st.sampled_from(["same", "range-then-bad", "bad-then-range", "nested"]))
    if kind == "same":
        return [draw(scalars)] * n
    if kind == "range-then-bad":
        return [*range(n), bad]
    if kind == "bad-then-range":
        return [bad, *range(n)]
    return [[i] for i in range(n)]


@st.composite
def nested(draw):
    depth = draw(st.integers(1, 40))
    value = draw(scalars)
    for _ in range(depth):
        value = [value] if draw(st.booleans()) else {draw(st.sampled_from(KEYS)): value}
    return value


def _kinds() -> dict[str, str]:
    """Each spec field's kind (int, float, str, bool), from the types the spec is checked against."""
    import dataclasses
    import typing

    from sweep.spec import PATH_KEYS, TEACHER_KEYS, Resources
    from sweep.spec_fields import TRIAL_FIELDS
    from sweep.spec_search import SearchSpec

    hints = {**TRIAL_FIELDS, **TEACHER_KEYS, **PATH_KEYS, **typing.get_type_hints(Resources)}
    hints.update({f.name: typing.get_type_hints(SearchSpec)[f.name] for f in dataclasses.fields(SearchSpec)})
    kinds = {}
    for name, tp in hints.items():
        base = next((a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)), None)
        if base in (int, float, str, bool):
            kinds[name] = base.__name__
    return {
        **kinds,
        "low": "float",
        "high": "float",
        "name": "str",
        "description": "str",
        "mlflow": "str",
        "experiment": "str",
    }


FIELD_KIND = _kinds()
EDGES = {
    "int": [2**63, -(2**63) - 1, 10**15, 10**30, 16**1000, -1, 0, 1.5, "1", True],
    "float": [16**1000, 10**400, math.nan, math.inf, -math.inf, -1.0, 0, 1e-320, "1.0", False],
    "str": ["0-99999999999", "0-10", "a\x00b", "", " ", "a\nb", "x" * 300, "名前", 5, None],
    "bool": ["yes", 1, 0, None, "true"],
}


@st.composite
def mutated_spec(draw):
    """A shipped spec, parsed, with one to three mutations; returns (name, raw, notes)."""
    name = draw(st.sampled_from(sorted(PARSED)))
    raw = copy.deepcopy(PARSED[name])
    notes = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # one, mostly: a first error hides the next
        places = slots(raw)
        path = draw(st.sampled_from(places))
        op = draw(st.sampled_from(["set", "set", "edge", "edge", "drop", "add", "empty", "huge", "nest", "retype"]))
        here = get(raw, path)
        if op == "edge":  # a field's own kind of value, past its edge: a big int for a number, ...
            fields = [p for p in places if FIELD_KIND.get(next((k for k in reversed(p) if isinstance(k, str)), ""))]
            if fields:
                path = draw(st.sampled_from(fields))
                kind = FIELD_KIND[next(k for k in reversed(path) if isinstance(k, str))]
                raw = put(raw, path, draw(st.sampled_from(EDGES[kind])))
        elif op == "drop" and path:
            del get(raw, path[:-1])[path[-1]]
        elif op == "add" and isinstance(here, dict):
            here[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = tame(draw(values), path)
        elif op == "empty":
            raw = put(raw, path, draw(st.sampled_from([[], {}, None, ""])))
        elif op == "huge":
            raw = put(raw, path, draw(huge_list()))
        elif op == "nest":
            raw = put(raw, path, draw(nested()))
        elif op == "retype":
            raw = put(raw, path, draw(st.sampled_from([[here], {"x": here}, str(here)[:100], None])))
        else:
            raw = put(raw, path, tame(draw(values | st.sampled_from(TARGETED)), path))
        notes.append((op, path))
    return name, raw, notes


# ------------------------------------------------------- the fuzzed commands
@settings(FUZZ, max_examples=100)
@given(case=mutated_spec(), flags=st.sampled_from([(), ("--fresh",), ("--no-tables", "-q"), ("--num-cpus", "1")]))
def test_fuzz_mutated_specs(base, case, flags):
    name, raw, notes = case
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    with workdir(base) as d:
        check_spec_file("mutated-specs", d, text.encode(), flags)


TAGS = ["!!python/object:os.system", "!!python/object/apply:os.system ['echo hacked > HACKED']",
        "!!python/name:os.system", "!!int", "!!float", "!!bool", "!!timestamp", "!!binary", "!!set", "!!map",
        "!!seq", "!!str", "!!null", "!!omap", "!!pairs", "!foo", "!<tag:x>", "!!merge"]  # fmt: skip
WHOLE = [b"", b"\n", b"---\n", b"...\n", b"[]\n", b"- grid\n- trial\n", b"42\n", b"'text'\n", b"null\n", b"~\n",
         b"!!binary aGk=\n", b"grid\n", b"grid:\n", b"{grid: }\n", b"\xff\xfe\x00\x00", b"\x00"]  # fmt: skip


def laughs(levels: int, width: int) -> str:
    """Aliases that expand to width**levels items (defined under description, used by grid)."""
    lines = ["description:", f"  - &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def mutated_text(draw):
    """A shipped spec's text (or a whole odd file) with one to three textual mutations, as bytes."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(WHOLE))
    text = SHIPPED[name]
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True) or ["\n"]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["duplicate", "tag", "anchor", "alias", "deep", "truncate", "insert", "laughs",
                                   "repeat", "retype-top", "bom", "unindent"]))  # fmt: skip
        if op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "tag" and ":" in lines[i]:
            key, _, rest = lines[i].partition(":")
            value = draw(st.sampled_from([rest.strip(), "abc", "1" * 5000, "2001-13-45", "maybe", "[1, 2]"]))
            lines[i] = f"{key}: {draw(st.sampled_from(TAGS))} {value}\n"
        elif op == "anchor" and ":" in lines[i]:
            key, _, rest = lines[i].partition(":")
            lines[i] = f"{key}: &{draw(st.sampled_from(['a', 'b', 'x']))} {rest.strip()}\n"
        elif op == "alias" and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            lines[i] = f"{key}: *{draw(st.sampled_from(['a', 'b', 'undefined']))}\n"
        elif op == "deep" and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            depth = draw(st.sampled_from([5, 100, 400, 600]))
            open_, close = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
            lines[i] = f"{key}: {open_ * depth}1{close * depth}\n"
        elif op == "truncate":
            text = "".join(lines)
            text = text[: draw(st.integers(0, len(text)))]
            continue
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=12)) + draw(st.sampled_from(["", "\n"])))
        elif op == "laughs":
            lines = [line for line in lines if not line.startswith("description:")]
            lines.insert(0, laughs(draw(st.integers(2, 7)), draw(st.integers(2, 9))))
            lines.append(f"subgrids: [*a{0}]\n")
        elif op == "repeat":
            # a subgrid line 2000 times is a valid grid of 80,000 points: seconds to validate; 200 will do
            lines[i:i] = [lines[i]] * draw(st.sampled_from([2, 3, 50, 200]))
        elif op == "retype-top":
            lines = ["- " + line for line in lines]
        elif op == "bom":
            lines.insert(0, "\ufeff")
        elif op == "unindent":
            lines[i] = lines[i].lstrip()
        text = "".join(lines)
    data = text.encode()
    if draw(st.integers(0, 7)) == 0:  # stray bytes: not UTF-8, control characters
        at = draw(st.integers(0, len(data)))
        stray = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\x1b[0m", b"\r", b"\xe2\x80\xa8"]))
        data = data[:at] + stray + data[at:]
    return data


@settings(FUZZ, max_examples=120)
@given(content=mutated_text())
def test_fuzz_odd_yaml(base, content):
    with workdir(base) as d:
        check_spec_file("odd-yaml", d, content)
        assert not (d / "HACKED").exists(), "a YAML tag ran code"


#: Every trial option, with its kind (from the parser itself: a new field is fuzzed too).
def _trial_options() -> dict[str, str]:
    from sweep.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out = {}
    for action in sub.choices["trial"]._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help", "--out"):
                continue
            out[flag] = "flag" if action.nargs == 0 else getattr(action.type, "__name__", "str")
    return out


TRIAL_OPTIONS = _trial_options()
OPTION_TEXT = st.one_of(
    st.sampled_from(["", " ", "0", "-1", "1", "2", "11", "1_000", "0x10", " 3 ", "3.5", "-0", "1e400", "nan", "inf",
                     "-inf", "9" * 30, "9" * 5000, str(2**63), str(2**63 - 1), "0-5", "0-99999999999", "0,0", "a-b",
                     "exact", "none", "lenet", "resnet", "digits", "cifar", "aer", "statevector", "gpu", "cuda",
                     "depolarizing:0.1", "depolarizing:nan", "thermal", "fake:manila", "fake:", "best_val", "a\nb",
                     "--lr", "-T"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)  # fmt: skip
BAD_OPTIONS = ["--bogus", "--lea", "--qubit", "-x", "--no-download=1", "--epochs=", "--", "-"]


@st.composite
def trial_argv(draw):
    argv = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 9)) == 0:
            argv.append(draw(st.sampled_from(BAD_OPTIONS)))
            continue
        flag = draw(st.sampled_from(sorted(TRIAL_OPTIONS)))
        argv.append(flag)
        if TRIAL_OPTIONS[flag] != "flag" or draw(st.integers(0, 5)) == 0:
            argv.append(draw(OPTION_TEXT))
    return argv


@settings(FUZZ, max_examples=200)
@given(argv=trial_argv())
def test_fuzz_trial_options(base, argv):
    with workdir(base) as d:
        count("trial-options", argv)
        out = d / "out"
        code, _, err = run_main(["trial", *argv, "--out", str(out), "--quiet"])
        assert files(d) == set(), f"trial wrote {sorted(files(d))} (exit {code})"
        if code == "run_trial":
            event("valid (would train)")
            OUTCOMES["trial-options:valid"] += 1
            return
        assert code == 2, f"trial ended with {code!r}: {err!r}"
        line = one_error_line(err)
        assert TRIAL_LINE.match(line), f"the error names no option or field: {line!r}"
        event("rejected")
        OUTCOMES["trial-options:rejected"] += 1


@settings(FUZZ, max_examples=40)
@given(
    results=st.one_of(st.sampled_from(["r", "x" * 300, "a\x00b", "bogus://x", "memory://fuzz-r", "r/" * 40]),
                      st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)),
    only=st.lists(st.text(max_size=12) | st.sampled_from(["seed=0", "dataset=mnist", "teacher", "lam=nan",
                                                          "classes=0-5", "=", "seed==0", "qubits=1e400"]), max_size=3),
)  # fmt: skip
def test_fuzz_command_line_paths_and_filters(base, results, only):
    """--results and --only on a shipped spec: the results root named must stay untouched."""
    results = results.lstrip("/~").replace("..", "dd") or "r"
    with workdir(base) as d:
        (d / "spec.yaml").write_text(SHIPPED["quickstart.yaml"])
        before = files(d)
        argv = ["--results", results, *(a for o in only for a in ("--only", o))]
        count("flags", results, only)
        for command in ("validate", "sweep"):
            code, _, err = run_main([command, "spec.yaml", *argv])
            assert files(d) == before, f"{command} wrote {sorted(files(d) - before)}"
            if code == 2:
                line = one_error_line(err)
                assert FLAG_LINE.match(line), line
            else:
                assert code in (0, "preflight"), (command, code, err)
            OUTCOMES[f"flags:{'rejected' if code == 2 else 'valid'}"] += 1


@settings(FUZZ, max_examples=3)
@given(
    seed=st.sampled_from([0, 2**63 - 1]) | st.integers(0, 2**63 - 1),
    samples=st.sampled_from([1, 2, 3]),
    student=st.sampled_from(["amplitude", "cnn-angle"]),
)
def test_fuzz_tiny_real_trials(base, monkeypatch, seed, samples, student):
    """Valid extremes train, and their row is written: tiny digits trials, 1 epoch, statevector."""
    monkeypatch.undo()  # this one trains for real
    count("tiny-trials", seed, samples, student)
    with workdir(base) as d:
        argv = ["trial", "--dataset", "digits", "--teacher", "none", "--epochs", "1", "--backend", "statevector",
                "--student", student, "--seed", str(seed), "--samples-per-class", str(samples),
                "--test-samples-per-class", "2", "--take-available", "--batch-size", "8", "--out", str(d / "out"),
                "--quiet"]  # fmt: skip
        code, out, err = run_main(argv)
        assert code == 0, (code, err)
        assert (d / "out" / "trials.parquet").exists()
        OUTCOMES["tiny-trials:ok"] += 1


# -------------------------------------------------- findings (regressions)
def spec_text(**changes: str) -> str:
    """quickstart.yaml with ``key: value`` lines replaced (key as it starts its line)."""
    lines = SHIPPED["quickstart.yaml"].splitlines()
    for key, value in changes.items():
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        lines[i] = f"{lines[i].split(':')[0]}: {value}"
    return "\n".join(lines) + "\n"


def validate_one_line(tmp_path: Path, content: str | bytes, *flags: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = files(tmp_path)
    os.chdir(tmp_path)
    for command in ("validate", "sweep"):
        code, _, err = run_main([command, "spec.yaml", *flags])
        assert code == 2, (command, code, err)
        line = one_error_line(err)
        assert files(tmp_path) == before
    return line


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")], ids=["lists", "mappings"])
def test_finding_deeply_nested_yaml_is_one_line_not_a_recursion_error(tmp_path, opener, closer):
    line = validate_one_line(tmp_path, f"name: t\ngrid:\n  seed: {opener * 600}1{closer * 600}\n")
    assert "spec.yaml: spec: nested too deeply" in line


@pytest.mark.parametrize(
    "value,shown",
    [("!!int abc", "'abc' as int"), ("!!float abc", "'abc' as float"), ("!!timestamp abc", "as timestamp"),
     ("!!timestamp 2001-13-45", "as timestamp"), ("!!bool maybe", "as bool"), ("1" * 5000, "as int")],
    ids=["int", "float", "timestamp", "timestamp-month", "bool", "int-of-5000-digits"],
)  # fmt: skip
def test_finding_yaml_tag_that_cannot_read_its_scalar_is_one_line(tmp_path, value, shown):
    line = validate_one_line(tmp_path, spec_text(seed=f"[{value}]"))
    assert re.search(r"spec\.yaml: line \d+, column \d+: malformed YAML: cannot read", line) and shown in line


def test_finding_integer_too_long_to_print_is_one_line(tmp_path):
    """YAML reads 0x... of any length; its repr (past 4300 digits) raised ValueError in the message."""
    line = validate_one_line(tmp_path, spec_text(seed="[0x" + "f" * 4000 + "]"))
    assert "grid.seed[0]" in line and "16000 bits" in line and "64-bit" in line


def test_finding_duplicate_key_is_an_error_naming_the_line(tmp_path):
    """The safe loader kept the last of two `trial:` sections silently; the first one's settings were lost."""
    text = SHIPPED["quickstart.yaml"]
    line = validate_one_line(tmp_path, text + "trial:\n  epochs: 1\n")
    second = len(text.splitlines()) + 1  # the line of the second `trial:`
    assert "malformed YAML" in line and "key 'trial' is given twice" in line and f"line {second}," in line
    line = validate_one_line(tmp_path, spec_text(seed="{a: 1, a: 2}"))
    assert "key 'a' is given twice" in line


def test_finding_merge_keys_may_still_override(tmp_path):
    """`<<` merges are not duplicates: a key after a merge overrides the merged one, as YAML says."""
    text = SHIPPED["quickstart.yaml"].replace("trial:\n", "trial:\n  <<: {epochs: 3, lr: 0.01}\n")
    (tmp_path / "spec.yaml").write_text(text)
    from sweep.spec import load_spec

    assert load_spec(tmp_path / "spec.yaml").trial["epochs"] == 10


def test_finding_huge_class_range_is_rejected_without_building_it(tmp_path):
    """`0-99999999999` built the whole range (MemoryError) before checking its labels."""
    line = validate_one_line(tmp_path, spec_text(classes="[0-99999999999]"))
    assert "grid.classes: '0-99999999999' is not a class subset" in line
    os.chdir(tmp_path)
    code, _, err = run_main(["trial", "--classes", "0-99999999999", "--out", str(tmp_path / "out")])
    assert code == 2 and one_error_line(err).startswith(PREFIX + "classes: '0-99999999999'")
    assert not (tmp_path / "out").exists()


def test_finding_huge_qubit_count_is_rejected_before_computing_2_to_the_qubits(tmp_path):
    """2**qubits came before the 10-qubit limit: qubits 10**15 never finished (or ran out of memory)."""
    t0 = time.perf_counter()
    line = validate_one_line(tmp_path, spec_text(qubits="[1000000000000000]"))
    assert "grid.qubits" in line and "more than this simulator path supports" in line
    code, _, err = run_main(["trial", "--qubits", "1000000000000000", "--out", str(tmp_path / "out")])
    assert code == 2 and one_error_line(err).startswith(PREFIX + "qubits: ")
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize(
    "where,value",
    [("seed", "[1000000000000000000000000000000]"), ("max_failures", str(2**63))],
    ids=["grid", "resources"],
)
def test_finding_integer_beyond_64_bits_is_rejected_in_a_spec(tmp_path, where, value):
    """A seed of 10**30 validated, then the trial trained and failed writing its row (int64 column)."""
    line = validate_one_line(tmp_path, spec_text(**{where: value}))
    assert "out of range: integers here are 64-bit" in line


@pytest.mark.parametrize("flag", ["--seed", "--teacher-seed", "--samples-per-class", "--shots"])
def test_finding_integer_beyond_64_bits_is_rejected_on_the_command_line(tmp_path, flag):
    os.chdir(tmp_path)
    code, _, err = run_main(["trial", flag, str(10**30), "--out", str(tmp_path / "out")])
    assert code == 2 and f"argument {flag}: " in one_error_line(err) and "64-bit" in err
    assert not (tmp_path / "out").exists()


def test_finding_largest_seed_trains_and_writes_its_row(tmp_path, monkeypatch):
    monkeypatch.undo()  # trains for real: digits, 1 epoch, 2 samples per class, statevector
    os.chdir(tmp_path)
    argv = ["trial", "--dataset", "digits", "--teacher", "none", "--epochs", "1", "--backend", "statevector",
            "--seed", str(2**63 - 1), "--samples-per-class", "2", "--test-samples-per-class", "2", "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    code, out, err = run_main(argv)
    assert code == 0, err
    import pandas as pd

    assert pd.read_parquet(tmp_path / "out" / "trials.parquet").seed.tolist() == [2**63 - 1]


@pytest.mark.parametrize(
    "flag,value", [("--lr", "nan"), ("-T", "inf"), ("--temperature", "nan"), ("--head-scale", "nan"),
                   ("--teacher-lr", "inf"), ("--lam", "nan")],
)  # fmt: skip
def test_finding_non_finite_trial_options_are_rejected(tmp_path, flag, value):
    """argparse's float() took 'nan' and 'inf': lr nan or T inf passed validation (nan > 0 is False, not True)."""
    os.chdir(tmp_path)
    code, _, err = run_main(["trial", flag, value, "--out", str(tmp_path / "out")])
    assert code == 2
    assert "expected a finite number" in one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv,expected",
    [(["trial", "--qubits", "x"], "argument --qubits: expected an integer, got 'x'"),
     (["trial", "--bogus"], "unrecognized arguments: --bogus"),
     (["validate"], "the following arguments are required: SPEC"),
     (["bogus"], "invalid choice: 'bogus'"), ([], "the following arguments are required: command"),
     (["trial", "--epochs"], "argument --epochs: expected one argument")],
    ids=["bad-int", "unknown-option", "missing-spec", "unknown-command", "no-command", "missing-value"],
)  # fmt: skip
def test_finding_usage_error_is_one_line(tmp_path, argv, expected):
    """argparse printed its whole usage (up to 30 lines) before the error."""
    os.chdir(tmp_path)
    code, _, err = run_main(argv)
    assert code == 2
    line = one_error_line(err)
    assert expected in line and "--help" in line
    assert os.listdir(tmp_path) == []


def test_finding_line_break_in_a_key_stays_one_line(tmp_path):
    """An unknown key holding a newline printed two lines (the field path is written as the key is)."""
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"].replace("trial:\n", 'trial:\n  "a\\nb\\u2028c": 1\n'))
    assert "trial.a\\nb\\u2028c: unknown key" in line


def test_finding_line_break_in_the_spec_file_name_stays_one_line(tmp_path):
    path = tmp_path / "bad\nname.yaml"
    path.write_text("- a list\n")
    os.chdir(tmp_path)
    code, _, err = run_main(["validate", str(path)])
    assert code == 2 and "bad\\nname.yaml: spec: expected a mapping" in one_error_line(err)


def test_finding_empty_key_is_named_in_the_field_path(tmp_path):
    """A top-level key '' gave the line 'spec.yaml: : unknown key' (an empty field path)."""
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"] + "'': 1\n")
    assert "spec.yaml: '': unknown key ''" in line
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"].replace("trial:\n", "trial:\n  ' lr': 1\n"))
    assert "spec.yaml: trial.' lr': unknown key ' lr'" in line


def test_finding_integer_past_float_range_for_a_number_field(tmp_path):
    """temperature: 16**1000 raised OverflowError (int too large to convert to float)."""
    line = validate_one_line(tmp_path, spec_text(temperature=f"[{16**1000}]"))
    assert "grid.temperature[0]" in line and "out of range for a number" in line


def test_finding_alias_bomb_error_message_is_bounded(tmp_path):
    """Nine aliases of nine aliases: the message held the repr of 9**7 items (24 MB, seconds; more levels: memory)."""
    t0 = time.perf_counter()
    line = validate_one_line(tmp_path, "name: t\n" + laughs(7, 9) + "grid: {seed: [0]}\n")
    assert "description: expected a string" in line and len(line) < 500
    assert time.perf_counter() - t0 < 10


def test_finding_huge_axis_checks_duplicates_in_linear_time():
    """The listed-twice check compared every pair: 50,000 seeds took a minute before the error
    (and 20,000 valid ones two seconds before expanding)."""
    from sweep.spec import parse_spec
    from sweep.spec_errors import SpecError

    raw = copy.deepcopy(PARSED["quickstart.yaml"])
    raw["grid"]["seed"] = [*range(50_000), 7]
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match=r"grid\.seed\[50000\]: 7 is listed twice"):
        parse_spec(raw, "spec.yaml")
    assert time.perf_counter() - t0 < 5


def test_finding_grid_over_the_combination_cap_is_rejected_before_expanding(tmp_path):
    """100 x 100 x 40 combinations: each one is a validated TrialConfig (about 1 ms): an hour of validate."""
    t0 = time.perf_counter()
    lams = ", ".join(str(i / 100) for i in range(100))
    line = validate_one_line(
        tmp_path,
        spec_text(
            seed=f"[{', '.join(map(str, range(100)))}]",
            lam=f"[{lams}]",
            temperature="[" + ", ".join(str(t + 1) for t in range(10)) + "]",
        ),  # fmt: skip
    )
    assert "spec.yaml: grid: 400000 combinations, more than 100000" in line
    assert time.perf_counter() - t0 < 10


def test_finding_spec_name_longer_than_a_folder_name_is_rejected(tmp_path):
    """A 300-character name validated; sweep started Ray, then failed making the results folder."""
    line = validate_one_line(tmp_path, spec_text(name="a" * 300))
    assert "spec.yaml: name: " in line and "300 bytes" in line


@pytest.mark.parametrize(
    "value,expected", [('"a\\0b"', "NUL"), ("x" * 300, "longer than 255 bytes")], ids=["nul", "long-name"]
)
def test_finding_unusable_path_is_rejected_naming_the_field(tmp_path, value, expected):
    """paths.results with a NUL raised ValueError (embedded null byte); a 300-byte folder name, OSError."""
    line = validate_one_line(tmp_path, spec_text(results=value))
    assert "spec.yaml: paths.results: " in line and expected in line
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"], "--results", "x" * 300)
    assert line.startswith(PREFIX + "--results: ") and "longer than 255 bytes" in line


def test_finding_results_root_the_system_refuses_is_one_line(tmp_path, monkeypatch):
    """A results root that cannot be read (EACCES: /proc/1/root as a user) raised PermissionError:
    from resolving it, and from reading its finished trials."""
    import pathlib

    import workers.io

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "resolve", refuse)
    monkeypatch.setattr(workers.io.Location, "exists", refuse)
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"], "--results", str(tmp_path / "locked"))
    assert line.startswith(PREFIX + "paths.results: cannot read ") and "Permission denied" in line


def test_finding_results_uri_no_file_system_takes_names_the_field(tmp_path):
    line = validate_one_line(tmp_path, SHIPPED["quickstart.yaml"], "--results", "bogus://x")
    assert line.startswith(PREFIX + "paths.results: bogus://x: no file system")


# ------------------------------------------------------ real subprocesses
def test_a_handful_of_cases_as_real_commands(tmp_path):
    """The same contract from outside, where a traceback or a usage dump would show: in parallel."""
    (tmp_path / "deep.yaml").write_text("name: t\ngrid:\n  seed: " + "[" * 600 + "1" + "]" * 600 + "\n")
    (tmp_path / "tag.yaml").write_text(spec_text(seed="[!!int abc]"))
    cases = {
        "deep": (["validate", "deep.yaml"], "deep.yaml: spec: nested too deeply"),
        "tag": (["sweep", "tag.yaml"], "malformed YAML: cannot read 'abc' as int"),
        "nan": (["trial", "--lr", "nan", "--epochs", "0"], "argument --lr: expected a finite number"),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("QKD_DATA_ROOT", "RAY_ADDRESS")}
    procs = {
        name: subprocess.Popen(
            [str(CLI), *argv, *(["--out", "out"] if argv[0] == "trial" else [])],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for name, (argv, _) in cases.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        count("subprocess", name)
        assert proc.returncode == 2, (name, err)
        assert "Traceback" not in err
        line = one_error_line(err)
        assert cases[name][1] in line, (name, line)
    assert sorted(os.listdir(tmp_path)) == ["deep.yaml", "tag.yaml"]
