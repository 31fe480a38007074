"""A spec's values, each checked where it is read, with the path of its field.

:class:`Reader` walks the parsed YAML of a spec (:func:`sweep.spec.parse_spec` and the
``search:`` section's :func:`sweep.spec_search.parse_search`); each of its checks fails
with a :class:`~sweep.spec_errors.SpecError` naming the field as a path (``grid.lam[1]``)
and the value: a mapping with a key it does not know (and the closest known one), a value
of the wrong type, an integer past 64 bits, a path the file system cannot take. The type
check itself (:func:`check_type`, :func:`type_name`) is the Python API's too
(:mod:`qkd_sweep.api`), so that a spec file and a call say the same of one value.
"""

from __future__ import annotations

import difflib
import math
import typing
from pathlib import Path
from typing import Any

from sweep.spec_errors import SpecError, show
from workers.config import TrialConfig

#: TrialConfig fields a spec may not set in grid/trial: they have sections of their own.
_NOT_TRIAL_FIELDS = {"teacher_settings", "data_root", "download", "cache_dir"}
TRIAL_FIELDS: dict[str, Any] = {
    k: v for k, v in typing.get_type_hints(TrialConfig).items() if k not in _NOT_TRIAL_FIELDS
}

#: Integers are stored as 64-bit numbers in the result tables (and torch seeds take no more).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Longest file or folder name most file systems take, in bytes (the spec name names a folder).
MAX_NAME_BYTES = 255


def type_name(tp: Any) -> str:
    """How a message names type ``tp``: ``an integer``, ``a number or a string (or null)``."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    text = " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)
    return text + (" (or null)" if type(None) in typing.get_args(tp) else "")


def check_type(value: Any, tp: Any) -> Any:
    """``value`` as ``tp`` (an int where a float is asked is a float), or raise TypeError."""
    allowed = typing.get_args(tp) or (tp,)
    if value is None:
        if type(None) in allowed:
            return None
        raise TypeError
    if isinstance(value, bool):
        if bool in allowed:
            return value
        raise TypeError
    if int in allowed and isinstance(value, int):
        return value
    if float in allowed and isinstance(value, int | float):
        value = float(value)  # OverflowError for an int past 1e308
        if not math.isfinite(value):
            raise TypeError
        return value
    if str in allowed and isinstance(value, str):
        return value
    raise TypeError


def path_problem(where: str) -> str | None:
    """Why the file system cannot take path or URI ``where`` (a NUL, a name over 255 bytes), or None."""
    if "\x00" in where:
        return f"{show(where)}: a path cannot hold a NUL character"
    if "://" not in where and any(len(part.encode()) > MAX_NAME_BYTES for part in Path(where).parts):
        return f"{show(where)}: a file or folder name is longer than {MAX_NAME_BYTES} bytes"
    return None


def _unknown(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1) if isinstance(key, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"unknown key {show(key)}{hint}"


class Reader:
    """Walks the parsed YAML, raising SpecError with the path of the offending field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> typing.NoReturn:
        raise SpecError(where, message, self.source)

    def mapping(self, value: Any, where: str, known: typing.Iterable[str]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping of keys to values, got {show(value)}")
        known = list(known)
        for key in value:
            if key not in known:
                plain = isinstance(key, str) and 0 < len(key) <= 80 and key.strip() == key
                name = key if plain else show(key)  # '' or ' x' quoted: the path names the key
                self.fail(f"{where}.{name}" if where else name, _unknown(key, known))
        return value

    def typed(self, value: Any, tp: Any, where: str) -> Any:
        try:
            value = check_type(value, tp)
        except TypeError:
            self.fail(where, f"expected {type_name(tp)}, got {show(value)}")
        except OverflowError:
            self.fail(where, f"{show(value)} is out of range for a number")
        if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            self.fail(where, f"{show(value)} is out of range: integers here are 64-bit (at most 2**63 - 1)")
        return value

    def path(self, value: Any, tp: Any, where: str) -> Any:
        value = self.typed(value, tp, where)
        if isinstance(value, str) and (problem := path_problem(value)):
            self.fail(where, problem)
        return value

    def trial_value(self, name: str, value: Any, where: str) -> Any:
        if name == "shots":  # 0 in TrialConfig; spelled out in a spec so that shots: 0 is caught
            if value == "exact":
                return 0
            if not isinstance(value, bool) and isinstance(value, int) and value < 1:
                self.fail(where, f"must be an integer >= 1, or 'exact' for exact probabilities; got {show(value)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                self.fail(where, f"expected an integer >= 1, 'exact' or null, got {show(value)}")
            return self.typed(value, int | None, where)
        if name == "classes" and isinstance(value, int) and not isinstance(value, bool):
            self.fail(where, f"expected a class subset written as a string like '0-5' or '0,3,5', got {show(value)}")
        return self.typed(value, TRIAL_FIELDS[name], where)
