"""Sweep specs: YAML files that name an experiment and list its axes.

A spec is read with a safe YAML loader and checked once, here, before anything
starts: an unknown key, a value of the wrong type or a value out of range is a
:class:`~sweep.spec_errors.SpecError` whose one-line message names the file, the
field (as a path such as ``grid.lam[1]``) and the value. Checks that need the combination of
values (too few qubits for a class subset) happen when the grid is expanded
(:mod:`sweep.grid`), with the same error type.

Layout (every section but ``grid`` is optional)::

    name: quickstart              # results go to <results root>/<name>/
    description: ...
    grid:                         # axes: a list (or one value) per TrialConfig field
      dataset: [digits]
      classes: [0-5]
      teacher: [none, lenet, alexnet, ensemble]
      qubits: [3]
      temperature: [3]
      lam: [0.9]
      seed: [0, 1, 2]
    subgrids:                     # optional: the grid is the union of grid+subgrid products
      - {classes: [0-5], qubits: [3]}
      - {classes: [0-7], qubits: [3, 4]}
    trial:                        # fixed settings, one value per TrialConfig field
      backend: aer
      shots: 5000                 # or "exact"; null: the backend's default
      epochs: 10
    teacher: {epochs: null, lr: null, batch_size: 128, seed: 0,
              recipe: default, keep: last}   # recipe paper-code: the released notebooks'

    paths: {data_root: null, download: true, results: results, cache: null,
            python_path: []}        # folders the user's modules import from (see below)
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, cpus_per_teacher: 1,
                max_concurrent_trials: null, max_failures: 2}
    search: ...                   # see sweep.spec_search: turns the spec into an Optuna study

Field names are :class:`workers.config.TrialConfig`'s, the names the
``qkd-sweep trial`` options use (``lam`` is the distillation weight λ).

Where a dataset, teacher or circuit is named, a reference ``PKG.MODULE:CALLABLE`` to the
user's own code may stand (README, "Your own circuit / teacher / dataset"). Its module must
import: installed, on ``PYTHONPATH``, or in a folder of ``paths.python_path`` (relative to
the spec file's folder, unlike the other paths: the code belongs to the spec, not to where
it is run from), which loading the spec puts on this process's
``sys.path`` and on ``PYTHONPATH`` for the Ray processes started after it (a local Ray; on a
cluster every node needs the folder at the same path, or the package installed).

This module holds the spec and its sections, and reads the file into them. Beside it, by
job: :mod:`sweep.spec_errors` (the one-line error and the quoting of values in it),
:mod:`sweep.spec_fields` (the check of one value at its field path) and
:mod:`sweep.spec_search` (the ``search:`` section).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep.spec_errors import SpecError, show
from sweep.spec_fields import MAX_NAME_BYTES, TRIAL_FIELDS, Reader, path_problem
from sweep.spec_search import SearchSpec, parse_search
from workers.io import Location, location
from workers.teacher_settings import TeacherSettings

SECTIONS = ("name", "description", "grid", "subgrids", "trial", "teacher", "paths", "resources", "search", "tracking")
TEACHER_KEYS = {
    "epochs": int | str | None,  # a number, or per teacher: "10,alexnet=5"
    "lr": float | str | None,
    "batch_size": int,
    "seed": int,
    "recipe": str,
    "keep": str,
    "optimizer": str,
}
PATH_KEYS = {"data_root": str | None, "download": bool, "results": str, "cache": str | None, "python_path": list}
#: Grid points a spec may expand to: each one is a validated TrialConfig, so a grid of
#: millions (an axis pasted in by mistake) would keep ``validate`` busy for hours.
MAX_COMBINATIONS = 100_000


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    cpus_per_teacher: float = 1
    gpus_per_teacher: float = 0
    #: None: as many as the cluster's CPUs allow.
    max_concurrent_trials: int | None = None
    #: Retries of a trial (or teacher task) whose worker failed, before it is recorded as an error.
    max_failures: int = 2
    #: Grid configs run one after another in one Ray Tune trial (1: a Tune trial each). A Tune
    #: trial costs about a second of dispatch; for trials of a second or two, group them.
    trials_per_task: int = 1
    #: Phase 1 gives up (one line, nothing written) after this long with a teacher task that Ray
    #: has not started and nothing of phase 1 moving (sweep.teachers_phase.TeacherWatch); null: waits.
    teacher_start_timeout_s: float | None = 600.0
    #: ... and on a started teacher that reports no progress (a line per epoch) for this long; null: never.
    teacher_progress_timeout_s: float | None = None
    #: A training teacher writes its resumable checkpoint after an epoch only if this long has
    #: passed since the last one (0: after every epoch). Not part of any key or result.
    teacher_checkpoint_every_s: float = 0.0


@dataclass(frozen=True)
class Tracking:
    """Where else a sweep's trials are logged, besides its own result files (optional extras).

    ``mlflow``: an MLflow tracking URI (``sqlite:///results/x/mlflow.db``, ``http://...``): one
    MLflow run per Tune trial, its config as parameters and its metrics per report, through Ray
    Tune's ``MLflowLoggerCallback`` (``pip install -e '.[mlflow]'``). ``experiment``: the MLflow
    experiment's name (default: the spec's name).
    """

    mlflow: str | None = None
    experiment: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    source: str
    description: str
    #: Each a mapping axis -> list of values; the grid is the union of their products.
    grids: tuple[dict[str, list], ...]
    trial: dict[str, Any]
    teacher: TeacherSettings
    data_root: str
    download: bool
    results_root: str
    cache_dir: str
    resources: Resources
    search: SearchSpec | None
    #: Hash of what decides the results (not paths or resources).
    spec_hash: str = ""
    axes: tuple[str, ...] = field(default=())
    tracking: Tracking = field(default_factory=Tracking)

    @property
    def results_dir(self) -> Location:
        """Where this spec's results go: a local folder, or a URI every node can reach."""
        return location(self.results_root) / self.name

    def with_paths(self, data_root: str | None = None, results_root: str | None = None) -> Spec:
        """The spec with paths overridden from the command line (absolute, as Ray workers need)."""
        for flag, value in (("--data-root", data_root), ("--results", results_root)):
            if value and (problem := path_problem(value)):
                raise SpecError(flag, problem)
        results = absolute(results_root) if results_root else self.results_root
        cache = self.cache_dir
        if results_root and self.cache_dir == _join(self.results_root, "cache"):
            cache = _join(results, "cache")
        return dataclasses.replace(
            self,
            data_root=absolute(data_root) if data_root else self.data_root,
            results_root=results,
            cache_dir=cache,
        )


def absolute(where: str) -> str:
    """A local path made absolute (Ray workers do not share the driver's working directory); a URI as it is."""
    return where if "://" in where else _real(where)


def _real(where: str) -> str:
    try:
        return str(Path(where).resolve())
    except OSError:  # a link the system will not read (/proc/1/root): the path as given, made absolute
        return os.path.abspath(where)


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else str(Path(root) / name)


# --------------------------------------------------------------------- load
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: a key given twice in one mapping is an error (the
    safe loader keeps the last silently), and a scalar its tag cannot read (``!!int abc``,
    an integer of 5000 digits) is a YAML error with its line, not a ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            what = show(node.value) if isinstance(node, yaml.ScalarNode) else "the value"
            problem = f"cannot read {what} as {node.tag.removeprefix('tag:yaml.org,2002:')} ({show(str(exc))})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # << merges (and may override) a mapping
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the safe loader says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {show(key)} is given twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; raise SpecError (one line) on anything wrong with it."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise SpecError("spec", f"no such file {source!r}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("spec", f"not a text file (not UTF-8 at byte {exc.start})", source) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader: no tag runs code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(where, f"malformed YAML: {problem}", source) from None
    except RecursionError:
        raise SpecError("spec", "nested too deeply to read (YAML lists or mappings hundreds of levels deep)",
                        source) from None  # fmt: skip
    try:
        return parse_spec(raw, source, default_name=path.stem)
    except RecursionError:
        raise SpecError("spec", "a value is nested too deeply", source) from None


def parse_spec(raw: Any, source: str = "<spec>", default_name: str = "sweep") -> Spec:
    r = Reader(source)
    if not isinstance(raw, dict):
        r.fail("spec", f"expected a mapping with a 'grid' section, got {type(raw).__name__}")
    r.mapping(raw, "", SECTIONS)
    if "grid" not in raw:
        r.fail("grid", "missing; a spec lists its axes under 'grid'")

    name = r.typed(raw.get("name", default_name), str, "name")
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        r.fail("name", f"{show(name)}: use letters, digits, '-', '_' and '.' (it names the results folder)")
    if len(name.encode()) > MAX_NAME_BYTES:
        r.fail("name", f"{show(name)} is {len(name.encode())} bytes; it names a folder: at most {MAX_NAME_BYTES}")
    description = r.typed(raw.get("description", "") or "", str, "description")

    def axes(section: Any, where: str) -> dict[str, list]:
        section = r.mapping(section, where, TRIAL_FIELDS)
        out = {}
        for key, values in section.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                r.fail(f"{where}.{key}", "empty list: an axis needs at least one value")
            out[key] = [r.trial_value(key, v, f"{where}.{key}[{i}]") for i, v in enumerate(values)]
            seen = set()  # the checked values are None, bools, numbers and strings
            for i, v in enumerate(out[key]):
                if v in seen:
                    r.fail(f"{where}.{key}[{i}]", f"{show(values[i])} is listed twice")
                seen.add(v)
        return out

    grid = axes(raw["grid"], "grid")
    subgrids_raw = raw.get("subgrids")
    if subgrids_raw is not None and (not isinstance(subgrids_raw, list) or not subgrids_raw):
        r.fail("subgrids", f"expected a non-empty list of axis mappings, got {show(subgrids_raw)}")
    grids = tuple({**grid, **axes(sub, f"subgrids[{i}]")} for i, sub in enumerate(subgrids_raw or [{}]))
    combinations = sum(math.prod(len(v) for v in g.values()) for g in grids)
    if combinations > MAX_COMBINATIONS:
        r.fail("grid", f"{combinations} combinations, more than {MAX_COMBINATIONS}; split the spec or shorten its axes")

    trial_raw = r.mapping(raw.get("trial"), "trial", TRIAL_FIELDS)
    trial = {k: r.trial_value(k, v, f"trial.{k}") for k, v in trial_raw.items()}
    all_axes = sorted({k for g in grids for k in g})
    for key in trial:
        if key in all_axes:
            r.fail(f"trial.{key}", f"{show(trial[key])} here and also an axis under 'grid'; give it in one place")

    t_raw = r.mapping(raw.get("teacher"), "teacher", TEACHER_KEYS)
    teacher = TeacherSettings(**{k: r.typed(v, TEACHER_KEYS[k], f"teacher.{k}") for k, v in t_raw.items()})

    p_raw = r.mapping(raw.get("paths"), "paths", PATH_KEYS)
    p = {k: r.path(v, PATH_KEYS[k], f"paths.{k}") if k != "download" else r.typed(v, bool, "paths.download")
         for k, v in p_raw.items() if k != "python_path"}  # fmt: skip
    code = p_raw.get("python_path")
    use_python_path(_python_path(r, code, source))
    results_root = absolute(p.get("results") or "results")
    data_root = p.get("data_root") or os.environ.get("QKD_DATA_ROOT", "data")
    cache = p.get("cache")

    res_types = {f.name: typing.get_type_hints(Resources)[f.name] for f in dataclasses.fields(Resources)}
    res_raw = r.mapping(raw.get("resources"), "resources", res_types)
    res = {k: r.typed(v, res_types[k], f"resources.{k}") for k, v in res_raw.items()}
    for key in ("cpus_per_trial", "cpus_per_teacher"):
        if key in res and res[key] <= 0:
            r.fail(f"resources.{key}", f"must be > 0, got {res[key]!r}")
    for key in ("gpus_per_trial", "gpus_per_teacher", "max_failures", "teacher_checkpoint_every_s"):
        if key in res and res[key] < 0:
            r.fail(f"resources.{key}", f"must be >= 0, got {res[key]!r}")
    for key in ("teacher_start_timeout_s", "teacher_progress_timeout_s"):
        if res.get(key) is not None and res[key] <= 0:
            r.fail(f"resources.{key}", f"must be > 0 (or null: no bound), got {res[key]!r}")
    if "trials_per_task" in res and res["trials_per_task"] < 1:
        r.fail("resources.trials_per_task", f"must be >= 1, got {res['trials_per_task']!r}")
    if res.get("max_concurrent_trials") is not None and res["max_concurrent_trials"] < 1:
        r.fail("resources.max_concurrent_trials", f"must be >= 1, got {res['max_concurrent_trials']!r}")

    search = parse_search(r, raw.get("search"), grids, trial, results_root) if raw.get("search") is not None else None
    tr_raw = r.mapping(raw.get("tracking"), "tracking", ("mlflow", "experiment"))
    tracking = Tracking(**{k: r.typed(v, str | None, f"tracking.{k}") for k, v in tr_raw.items()})
    if search is not None and res.get("trials_per_task", 1) != 1:
        r.fail("resources.trials_per_task", "a study runs one config per Tune trial (its scheduler stops them)")

    decisive = {"grids": grids, "trial": trial, "teacher": dataclasses.asdict(teacher),
                "search": dataclasses.asdict(search) if search else None}  # fmt: skip
    spec_hash = hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Spec(
        name=name, source=source, description=description, grids=grids, trial=trial, teacher=teacher,
        data_root=_real(data_root), download=p.get("download", True),
        results_root=results_root,
        cache_dir=absolute(cache) if cache else _join(results_root, "cache"),
        resources=Resources(**res), search=search, spec_hash=spec_hash, axes=tuple(all_axes),
        tracking=tracking,
    )  # fmt: skip


def _python_path(r: Reader, raw: Any, source: str) -> list[str]:
    """``paths.python_path``: a folder or a list of folders, each existing, made absolute; a
    relative one starts at the spec file's folder (the current directory for a spec not read
    from a file), so that the spec finds its code from wherever it is run."""
    folders = [] if raw is None else raw if isinstance(raw, list) else [raw]
    base = Path(source).parent if Path(source).is_file() else Path.cwd()
    out = []
    for i, folder in enumerate(folders):
        where = f"paths.python_path[{i}]" if isinstance(raw, list) else "paths.python_path"
        folder = base / r.path(folder, str, where)
        if not folder.is_dir():
            r.fail(where, f"{show(str(folder))} is not a folder (a relative path starts at {base})")
        out.append(_real(str(folder)))
    return out


def use_python_path(folders: list[str]) -> None:
    """Put ``folders`` first on ``sys.path`` (this process imports the user's modules from
    them) and on ``PYTHONPATH`` (so do the Ray processes started after this, and their
    workers); a folder already there is not added again."""

    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)
        if folder not in env:
            env.insert(0, folder)
    if folders:
        os.environ["PYTHONPATH"] = os.pathsep.join(env)
