"""Planning: which trials of a spec's grid run now.

The grid (:func:`sweep.grid.expand`), narrowed by ``--only`` filters, less the trials
whose rows already say they finished (a rerun resumes). Nothing here starts Ray or
loads data.
"""

from __future__ import annotations

import typing
from collections import defaultdict
from collections.abc import Iterable

from sweep.grid import Grid, expand
from sweep.results import TRIALS, read_table
from sweep.spec import Spec
from sweep.spec_errors import SpecError
from sweep.spec_fields import TRIAL_FIELDS
from workers.config import TrialConfig
from workers.io import Location

#: A trial with one of these statuses has its result; a rerun does not run it again.
FINISHED = ("ok", "nan_loss")


def finished_hashes(results_dir: Location) -> set[str]:
    trials = read_table(results_dir / TRIALS)
    if trials is None or trials.empty:
        return set()
    return set(trials.loc[trials.status.isin(FINISHED), "config_hash"])


def select(trials: list[TrialConfig], only: Iterable[str] = ()) -> list[TrialConfig]:
    """Keep the trials that match every ``field=value`` filter (a field given twice matches either).

    Values compare as the field's type, so ``temperature=3`` matches a spec's ``3`` (held as 3.0).
    Filters that leave nothing are a SpecError: a typo should not look like a finished sweep.
    """
    only = list(only)
    wanted: dict[str, list] = defaultdict(list)
    for item in only:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in TRIAL_FIELDS:
            raise SpecError("--only", f"{item!r}: expected FIELD=VALUE with a trial field, e.g. dataset=mnist")
        wanted[key].append(_typed(key, text.strip(), item))
    kept = [c for c in trials if all(getattr(c, k) in v for k, v in wanted.items())]
    if only and not kept:
        raise SpecError("--only", f"no trial of the grid matches {only}")
    return kept


def _typed(key: str, text: str, item: str):
    tp = TRIAL_FIELDS[key]
    kinds = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
    try:
        if bool in kinds:
            return {"true": True, "false": False}[text.lower()]
        if int in kinds or float in kinds:
            return float(text)
    except (KeyError, ValueError):
        raise SpecError("--only", f"{item!r}: {text!r} is not a value of {key}") from None
    return text


def plan(spec: Spec, only: Iterable[str] = (), fresh: bool = False) -> tuple[Grid, list[TrialConfig]]:
    """The expanded grid and the trials still to run (all of them with ``fresh``)."""
    grid = expand(spec)
    trials = select(grid.trials, only)
    if spec.search is None and not fresh:
        done = finished_hashes(spec.results_dir)
        trials = [c for c in trials if c.config_hash() not in done]
    return grid, trials
