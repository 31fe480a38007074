"""Result files: Parquet tables that pandas reads as they are.

Rows are appended by rewriting the file whole under a temporary name and
renaming it into place, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from workers.io import Location, StorageError, location, write_parquet

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
TEACHERS = "teachers.parquet"


def read_table(path: str | Path | Location) -> pd.DataFrame | None:
    """The table at ``path``, or None when there is none yet."""
    loc = location(path)
    if not loc.exists():
        return None
    try:
        return loc.read_parquet().to_pandas()
    except (pa.ArrowException, OSError) as exc:
        # Never guess at a damaged results file: a sweep that read it as empty would rerun
        # (and then overwrite) every trial it holds.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(
            f"{loc}: not a readable Parquet file ({reason}); move it away to keep what can be saved, "
            "or rerun with --fresh"
        ) from None


def append_rows(path: str | Path | Location, rows: list[dict], key: str | None = None) -> pd.DataFrame:
    """Append ``rows`` to the Parquet file at ``path``; with ``key``, a new row replaces
    an old one with the same key. Returns the whole table."""
    new = pd.DataFrame(rows)
    old = read_table(path)
    if old is not None:
        if key is not None:
            old = old[~old[key].isin(new[key])]
        new = pd.concat([old, new], ignore_index=True)
    write_parquet(pa.Table.from_pandas(new, preserve_index=False), path)
    return new
