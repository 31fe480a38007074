"""A user's module for a test: written to a temporary folder put on ``sys.path``, as a
researcher's own code would be, and forgotten afterwards (its import and the per-process
caches that hold what it made)."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def user_module(folder: Path, monkeypatch, name: str, source: str, caches: tuple[Callable, ...]) -> Iterator[Path]:
    """``name``.py holding ``source`` in ``folder``, importable inside the block; ``caches``
    (``functools.lru_cache`` functions) cleared before and after."""
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))

    def forget():
        sys.modules.pop(name, None)
        for cache in caches:
            cache.cache_clear()

    forget()
    try:
        yield path
    finally:
        forget()
