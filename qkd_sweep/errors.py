"""The API's one error type: bad input as one line naming the field, as the CLI prints it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from sweep.spec_errors import one_line
from workers.errors import ConfigError
from workers.io import DataError, StorageError
from workers.refs import RefError


class QKDError(ValueError):
    """Input that cannot run (an option, a spec field, a reference, a data file or a folder):
    the one line ``qkd-sweep`` prints for it, naming the field, file or option.

    ``field`` is that name where the check knew it (``epochs``, ``grid.lam[1]``, ``circuit``),
    else None. Raised from the API call itself, never from deep inside: the check's own
    exception is kept as ``error`` for whoever wants its type.
    """

    def __init__(self, message: str, field: str | None = None, error: BaseException | None = None):
        super().__init__(one_line(str(message)))
        self.field = field
        self.error = error


#: What the CLI answers with one line and exit status 2 (sweep.cli.main), plus a bad reference.
BAD_INPUT = (ConfigError, DataError, StorageError, FileNotFoundError, RefError)


#: ``field: the rest``, as data and storage errors begin (``data_root: mnist files ...``).
_FIELD = re.compile(r"^([A-Za-z_][\w.\-\[\]]*): ")


@contextlib.contextmanager
def one_line_errors(field: str | None = None) -> Iterator[None]:
    """Turn bad input raised inside into :class:`QKDError` raised here (no inner traceback);
    its field is the error's own, else the name its message begins with, else ``field``."""
    try:
        yield
    except QKDError:
        raise
    except BAD_INPUT as exc:
        named = getattr(exc, "field", None) or (m.group(1) if (m := _FIELD.match(str(exc))) else field)
        raise QKDError(str(exc), named, exc) from None
