"""The Python API: what ``qkd-sweep trial``, ``sweep`` and ``tables`` do, as functions that
take Python values and return pandas DataFrames (see docs/api.md).

Each function checks its input as the CLI does, with the same checks (a trial's options
are :class:`~workers.config.TrialConfig` fields, a spec is read by :mod:`sweep.spec`), and
raises :class:`~qkd_sweep.errors.QKDError` with the CLI's one line where the CLI exits
with status 2. A sweep runs under the CLI's driver (:func:`sweep.driver.run_sweep`):
Ray Tune, on a local Ray bound to 127.0.0.1 unless ``address`` names a cluster.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from qkd_sweep.errors import QKDError, one_line_errors
from qkd_sweep.objects import used_objects, with_references
from sweep.grid import expand
from sweep.plan import select
from sweep.preflight import check_creatable
from sweep.results import EPOCHS, TEACHERS, TRIALS, append_rows, read_table
from sweep.spec import Spec, load_spec, parse_spec
from sweep.spec_errors import show
from sweep.spec_fields import check_type, type_name
from workers import kinds
from workers.config import TrialConfig
from workers.io import location
from workers.teacher_settings import TeacherSettings

#: Where ``run_trial`` appends its rows (and keeps the teacher cache) unless told: the CLI's default.
TRIAL_OUT = "results/trial"
#: The result tables of a results folder, by the name ``load_results`` takes.
TABLES = ("trials", "epochs", "teachers")

_TRIAL_HINTS = {k: v for k, v in typing.get_type_hints(TrialConfig).items() if k != "teacher_settings"}
_TEACHER_HINTS = {f"teacher_{k}": v for k, v in typing.get_type_hints(TeacherSettings).items()}


def _option(name: str, value: Any) -> Any:
    """One ``run_trial`` option, typed as its field (the CLI's argparse types do this there)."""
    value = with_references(value, name)
    if isinstance(value, Path):  # data_root, cache_dir
        value = str(value)
    if name == "classes" and isinstance(value, list | tuple):  # [0, 1, 2] for '0,1,2'
        value = ",".join(str(v) for v in value)
    if name == "shots" and value == "exact":  # as a spec writes it
        value = 0
    hints = _TRIAL_HINTS if name in _TRIAL_HINTS else _TEACHER_HINTS
    if name not in hints:
        close = difflib.get_close_matches(name, [*_TRIAL_HINTS, *_TEACHER_HINTS], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (the options are qkd-sweep trial's, as Python names)"
        raise QKDError(f"{name}: unknown option{hint}", name)
    try:
        return check_type(value, hints[name])
    except (TypeError, OverflowError):
        raise QKDError(f"{name}: expected {type_name(hints[name])}, got {show(value)}", name) from None


def _forget_user_objects() -> None:
    """Empty this process's caches of what the user's objects made (a compiled circuit, a
    dataset's arrays, a checked teacher), kept per reference: an object registered again
    under a reference of its own choosing (no source hash in it) is then used as it is now."""

    for cache in (kinds.user_circuit, kinds.user_dataset, kinds.user_teacher):
        cache.cache_clear()


def trial_config(out: str | Path | None = TRIAL_OUT, **options: Any) -> TrialConfig:
    """The validated config ``run_trial(**options)`` runs (nothing run, nothing written)."""
    with one_line_errors():
        values = {name: _option(name, value) for name, value in options.items()}
        teacher = {k.removeprefix("teacher_"): values.pop(k) for k in list(values) if k in _TEACHER_HINTS}
        cache = values.pop("cache_dir", None) or str(Path(out or TRIAL_OUT) / "cache")
        return TrialConfig(**values, cache_dir=cache, teacher_settings=TeacherSettings(**teacher)).validate()


def run_trial(
    *,
    out: str | Path | None = TRIAL_OUT,
    quiet: bool = False,
    progress: Callable[[dict], None] | None = None,
    **options: Any,
) -> dict:
    """Run one trial in this process, as ``qkd-sweep trial`` does, and return its result row.

    ``options`` are ``qkd-sweep trial``'s options as Python names (``teacher="lenet"``,
    ``teacher_epochs=2``, ``shots="exact"`` or 0, ``classes=[0, 1, 2]`` or ``"0-2"``); a
    callable stands for a reference (``circuit=my_circuit``). ``out``: the results folder
    the row is appended to (``trials.parquet``, ``epochs.parquet``, ``teachers.parquet``), or
    None for none; the teacher cache is ``out/cache`` unless ``cache_dir`` says. ``quiet``:
    no line per epoch; ``progress``: called with each epoch's report (a dict).
    """
    from workers.trial import run_trial as run  # noqa: PLC0415 - torch

    _forget_user_objects()
    cfg = trial_config(out, **options)
    with one_line_errors():
        if out is not None:
            check_creatable(location(out), "out")
        check_creatable(location(cfg.cache_dir), "cache_dir")

    def epoch(r: dict) -> None:
        if not quiet:
            print(f"epoch {r['epoch']}/{cfg.epochs}  train_loss {r['train_loss']:.4f}  "
                  f"train_acc {r['train_acc']:.4f}  test_loss {r['test_loss']:.4f}  "
                  f"test_acc {r['test_acc']:.4f}  ({r['wall_s']:.1f}s)", flush=True)  # fmt: skip
        if progress is not None:
            progress(r)

    def teacher_line(line: str) -> None:
        if not quiet:
            print(f"teacher {cfg.teacher}: {line}", flush=True)

    with one_line_errors():  # data files are read, and a teacher's cache checked, as the trial starts
        result = run(cfg, epoch, teacher_line)
        if out is not None:  # epochs first, the trial's row last, as the CLI writes them
            append_rows(location(out) / EPOCHS, result.epochs)
            if result.teacher:
                append_rows(location(out) / TEACHERS, [result.teacher], key="teacher_key")
            append_rows(location(out) / TRIALS, [result.row])
    return result.row


def load_spec_from(spec: Spec | Mapping | str | Path) -> Spec:
    """A spec from a YAML path, a mapping of the same shape (callables allowed where a
    reference goes), or a :class:`~sweep.spec.Spec` as it is."""
    with one_line_errors():
        if isinstance(spec, Spec):
            return spec
        if isinstance(spec, Mapping):
            return parse_spec(with_references(dict(spec)), source="<spec dict>", default_name="sweep")
        if isinstance(spec, str | Path):
            return load_spec(spec)
    raise QKDError(f"spec: expected a YAML path, a dict or a Spec, got {type(spec).__name__}", "spec")


def _only(only: str | Iterable[str] | Mapping[str, Any]) -> list[str]:
    """``only`` as the CLI's ``--only FIELD=VALUE`` strings (a mapping's list value: any of them)."""
    if isinstance(only, str):
        return [only]
    if isinstance(only, Mapping):
        given = with_references(dict(only))
        return [f"{k}={v}" for k, vs in given.items() for v in (vs if isinstance(vs, list) else [vs])]
    return [str(item) for item in only]


def run_sweep(
    spec: Spec | Mapping | str | Path,
    *,
    results: str | Path | None = None,
    data_root: str | Path | None = None,
    only: str | Iterable[str] | Mapping[str, Any] = (),
    fresh: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
    verbose: bool = False,
    write_tables: bool = True,
) -> pd.DataFrame:
    """Run a spec as ``qkd-sweep sweep`` does and return its trials table (one row per trial
    of the grid, as ``--only`` narrows it, finished now or before; a study's every trial).

    The overrides are the CLI's flags: ``results`` (``--results``, the results root),
    ``data_root`` (``--data-root``), ``only`` (``--only``: ``"teacher=none"``, a list of
    such, or ``{"teacher": ["none", "lenet"], "seed": 0}``), ``fresh``, ``address``,
    ``num_cpus``, ``quiet`` (no progress lines), ``verbose`` (Ray Tune's status tables),
    ``write_tables`` (False: ``--no-tables``). Objects defined here that the spec names go
    to the Ray workers (docs/api.md).
    """
    from sweep import tables  # noqa: PLC0415 - matplotlib, scipy

    _forget_user_objects()
    loaded = load_spec_from(spec)
    filters = _only(only)

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    from sweep.driver import run_sweep as drive  # noqa: PLC0415 - Ray, Tune and torch load when a sweep runs

    with one_line_errors():
        loaded = loaded.with_paths(str(data_root) if data_root else None, str(results) if results else None)
        summary = drive(loaded, address=address, num_cpus=num_cpus, fresh=fresh, only=filters, progress=say,
                        verbose=1 if verbose else 0, objects=used_objects(loaded))  # fmt: skip
        for line in summary.lines():
            say(line)
        trials = read_table(loaded.results_dir / TRIALS)
        if write_tables and loaded.search is None and trials is not None:
            tables.write_tables(loaded.results_dir)
        if trials is None:
            trials = pd.DataFrame({"config_hash": pd.Series(dtype=str)})
        if loaded.search is None:
            wanted = {c.config_hash() for c in select(expand(loaded).trials, filters)}
            trials = trials[trials.config_hash.isin(wanted)].reset_index(drop=True)
    trials.attrs.update(results_dir=str(loaded.results_dir), summary=summary.lines(), best=summary.best)
    return trials


def load_results(results_dir: str | Path, table: str = "trials") -> pd.DataFrame:
    """A results folder's table (``trials``, ``epochs`` or ``teachers``) as a DataFrame, read
    as the tables are (a sweep's parts, while it runs, as one table); a path or a URI."""

    if table not in TABLES:
        raise QKDError(f"table: unknown table {table!r}; choose one of {list(TABLES)}", "table")
    with one_line_errors("results_dir"):
        folder = location(results_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"results folder not found: {folder}")
        frame = read_table(folder / f"{table}.parquet")
    if frame is None:
        raise QKDError(f"no {table}.parquet in {folder} (run a sweep or a trial into it first)", "results_dir")
    return frame


@dataclasses.dataclass
class Tables:
    """What ``qkd-sweep tables`` computes: ``rows`` (tables.csv's rows: every table row, in
    percent points, with its columns), ``markdown`` (the tables as printed; a notebook shows
    this object as it), and ``files`` (what was written, when ``tables(..., write=...)``)."""

    rows: pd.DataFrame
    markdown: str
    files: dict = dataclasses.field(default_factory=dict)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown


def tables(results_dir: str | Path, write: bool | str | Path = False) -> Tables:
    """The paper-style tables of a results folder; ``write``: also write tables.md/.tex/.csv and
    figures/*.png, into the folder (True) or into the folder it names."""
    from sweep import tables as roll_up  # noqa: PLC0415 - matplotlib, scipy

    with one_line_errors("results_dir"):
        files = {}
        if write:
            files = roll_up.write_tables(results_dir, None if write is True else write)
        return Tables(roll_up.table_rows(results_dir), roll_up.markdown_tables(results_dir), files)
