"""References to the user's own code: ``PKG.MODULE:CALLABLE``, or an object registered in
this process (a notebook's cell).

Wherever a circuit, a teacher or a dataset is named, a reference may stand instead of a
built-in name. This module is the one place that turns a reference into the callable, says
in one line what is wrong with one, and hashes a callable's source for cache keys. It needs
neither torch nor Qiskit.

Objects defined where no import can find them (a notebook's ``__main__``) are registered
with :func:`register` under a reference of the same form, ``__main__:NAME``; resolution
looks there first. The Python API ships the registered objects to the Ray workers it starts
(``qkd_sweep``), so that a worker resolves the same reference to the same object.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Objects registered in this process, by reference (``MODULE:NAME``).
REGISTERED: dict[str, Callable] = {}


class RefError(ValueError):
    """A reference that cannot be resolved or called; the message is one line."""


def is_reference(text: object) -> bool:
    """Whether ``text`` has the form of a reference (``PKG.MODULE:CALLABLE``) rather than a
    built-in kind's name. ``torchvision:NAME`` is a reference too (a built-in family)."""
    return isinstance(text, str) and ":" in text


def last_line(exc: BaseException) -> str:
    """``TypeName: the last line of its message``: what a user's code raised, in one line."""
    text = (str(exc).strip().splitlines() or [""])[-1].strip()
    return type(exc).__name__ + (f": {text}" if text else "")


@contextmanager
def user_code(error: Callable[[str], Exception], what: str, passes: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Run the user's (or a package's) code: whatever it raises, but ``passes``, becomes
    ``error(what + its last line)``, one line without a traceback: the one rule for calls
    into code this project did not write (a circuit builder, a check, a loader, a model)."""
    try:
        yield
    except passes:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise error(f"{what}{last_line(exc)}") from None


def register(obj: Callable, name: str | None = None, module: str = "__main__") -> str:
    """Register ``obj`` under ``MODULE:NAME`` (default: its own ``__name__`` in ``__main__``)
    and return that reference, which a spec or a config may then use."""
    if not callable(obj):
        raise RefError(f"{obj!r} is {type(obj).__name__}, not a callable")
    name = name or getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not name or "<" in name:
        raise RefError(f"{obj!r} needs a name to be registered under (a lambda has none): pass name=")
    ref = f"{module}:{name}"
    REGISTERED[ref] = obj
    return ref


def reference_of(obj: Callable | str) -> str:
    """A reference for ``obj``: itself if a string; ``module:qualname`` if that imports back
    to the same object; else the reference it is registered under (registering it)."""
    if isinstance(obj, str):
        return obj
    for ref, known in REGISTERED.items():
        if known is obj:
            return ref
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        try:
            if resolve(f"{module}:{qualname}") is obj:
                return f"{module}:{qualname}"
        except RefError:
            pass  # defined where no import finds it: registered below
    return register(obj)


def resolve(ref: str | Callable) -> Callable:
    """The callable a ``PKG.MODULE:CALLABLE`` reference names (or a callable, returned as
    it is). Raises :class:`RefError` in one line: not of that form, a module that does not
    import (its error's last line), a missing attribute, not callable."""
    if callable(ref):
        return ref
    ref = str(ref)
    if ref in REGISTERED:
        return REGISTERED[ref]
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise RefError(f"{ref!r} is not a reference of the form PKG.MODULE:CALLABLE")
    try:
        obj = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module: whatever its import raises, in one line
        raise RefError(f"{ref!r} cannot be imported: {last_line(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RefError(f"{ref!r} cannot be imported: {module!r} has no attribute {part!r}") from None
    if not callable(obj):
        raise RefError(f"{ref!r} is {type(obj).__name__}, not a callable")
    return obj


def source_hash(obj: Callable, n: int = 12) -> str:
    """A hash of ``obj``'s source (its module's file for a class or function that has one),
    for cache keys: editing the callable gives a new key. Falls back to the code object's
    bytes, then to the qualified name, where no source can be read."""
    try:
        data = inspect.getsource(obj).encode()
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        data = _code_text(code).encode() if code is not None else str(getattr(obj, "__qualname__", repr(obj))).encode()
    return hashlib.sha256(data).hexdigest()[:n]


def _code_text(code) -> str:
    """A code object's bytecode, names and constants, nested code objects included, as text
    that is the same in every process (a nested code object's repr holds its address)."""
    consts = [_code_text(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code.hex(), code.co_names, code.co_varnames, consts))


__all__ = ["REGISTERED", "RefError", "is_reference", "last_line", "reference_of", "register", "resolve", "source_hash"]


def load(ref: str) -> Callable:
    """The class or function a ``module:name`` reference to this project's own code names,
    imported now (unlike :func:`resolve`, for the user's code, its errors are not reworded)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
