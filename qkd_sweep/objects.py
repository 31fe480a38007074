"""The user's objects (a circuit, a teacher, a dataset defined in a notebook cell) as
references, and the ones a sweep must send to its Ray workers.

Wherever a reference (``PKG.MODULE:CALLABLE``) goes, the API takes the callable itself.
One that imports back by its module and name becomes that reference, as the CLI would
write it. One that does not (defined in ``__main__``, a notebook's cell, or inside a
function) is registered in :data:`workers.refs.REGISTERED` under
``__main__:NAME@HASH``, where HASH is :func:`workers.refs.source_hash` of its source: the
reference, and so each trial's config hash (what a rerun skips as finished), follows the
code, not the object. Running a cell again unchanged gives the same reference (a sweep
resumes); editing it gives a new one (its trials run again), in this kernel or the next.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from qkd_sweep.errors import QKDError
from sweep.spec import Spec
from workers import refs


def reference(obj: Callable | str, field: str = "reference") -> str:
    """The reference that stands for ``obj`` (a string is one already)."""
    if isinstance(obj, str):
        return obj
    if not callable(obj):
        raise QKDError(f"{field}: expected a reference PKG.MODULE:CALLABLE or a callable, got {obj!r}", field)
    known = next((ref for ref, o in refs.REGISTERED.items() if o is obj), None)
    if known:  # registered by the user, under a name of their choice, or by an earlier call
        return known
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "") or ""
    if module not in (None, "__main__") and "<" not in qualname:
        return refs.reference_of(obj)  # MODULE:QUALNAME where that imports back to it
    name = getattr(obj, "__name__", "") or ""
    if not name or "<" in name:
        raise QKDError(f"{field}: {obj!r} has no name to be referred to by: define it with def, or register it "
                       "with qkd_sweep.register(obj, name=...)", field)  # fmt: skip
    return refs.register(obj, name=f"{name}@{source_hash(obj)}")


def source_hash(obj: Callable, n: int = 8) -> str:
    """:func:`workers.refs.source_hash`, and for a class whose source ``inspect`` cannot find (one
    defined in a notebook cell: Python looks for it in ``__main__``'s file, which a kernel does
    not have) the hash of its bases' names and of each of its functions' sources, so that an
    edited method gives a new reference there too."""
    try:
        inspect.getsource(obj)
    except (OSError, TypeError):
        if isinstance(obj, type):
            parts = [b.__qualname__ for b in obj.__bases__]
            for key, value in sorted(vars(obj).items()):
                fn = getattr(value, "__func__", value)  # a classmethod's or staticmethod's function
                if inspect.isfunction(fn):
                    parts.append(f"{key}={refs.source_hash(fn, 64)}")
            return hashlib.sha256(repr(parts).encode()).hexdigest()[:n]
    return refs.source_hash(obj, n)


def with_references(value: Any, field: str = "") -> Any:
    """``value`` (an option, a spec mapping, a list of grid values) with every callable in it
    replaced by its reference."""
    if isinstance(value, dict):
        return {k: with_references(v, f"{field}.{k}" if field else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(with_references(v, f"{field}[{i}]") for i, v in enumerate(value))
    if callable(value) and not isinstance(value, str):
        return reference(value, field)
    return value


def used_objects(spec: Spec) -> dict[str, Callable]:
    """The registered objects a spec's trials name (grid and subgrid values, fixed trial
    settings, a study's choices): what its Ray workers need."""
    values = [v for grid in spec.grids for axis in grid.values() for v in axis]
    values += list(spec.trial.values())
    if spec.search is not None:
        values += [v for p in spec.search.params for v in (p.choices or ())]
    return {v: refs.REGISTERED[v] for v in values if isinstance(v, str) and v in refs.REGISTERED}
