"""The error a spec fails with, and the text of the values its message quotes.

Every check before a sweep runs (the YAML, each field, the grid it expands to, the data,
nodes and disk it needs) fails with a :class:`SpecError`: one line naming the file, the
field (as a path such as ``grid.lam[1]``) and the value, which a shell, a log or a
notebook shows whole. Two helpers keep it so, here in one place for the spec's modules
and the Python API's errors (:mod:`qkd_sweep.errors`): :func:`one_line` escapes the line
breaks a key or a file name may hold, and :func:`show` bounds the repr of a value (one
built from YAML aliases can be billions of items).
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

from workers.errors import ConfigError

#: Characters that end a line for str.splitlines(): an error message must stay one line.
_LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with every line break escaped (a key or a file name may hold one)."""
    return text.translate(str.maketrans(_LINE_BREAKS))


_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlong = 3, 80, 80, 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = _short.maxfrozenset = 6


def show(value: Any) -> str:
    """A bounded repr for messages: a value built from YAML aliases can be billions of items."""
    try:
        text = _short.repr(value)
    except ValueError:  # an int past sys.get_int_max_str_digits() (YAML reads 0x... of any length)
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


class SpecError(ConfigError):
    """A spec that cannot run; the message is one line naming the file, field and value."""

    def __init__(self, where: str, message: str, source: str | Path | None = None):
        text = f"{source}: {where}: {message}" if source else f"{where}: {message}"
        ValueError.__init__(self, one_line(text))
        self.field = where
