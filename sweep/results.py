"""Result files: Parquet tables that pandas reads as they are.

Rows are appended by rewriting the file whole under a temporary name and
renaming it into place, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workers.io import write_parquet

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
TEACHERS = "teachers.parquet"


def read_table(path: str | Path) -> pd.DataFrame | None:
    """The table at ``path``, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    return pq.read_table(path).to_pandas()


def append_rows(path: str | Path, rows: list[dict], key: str | None = None) -> pd.DataFrame:
    """Append ``rows`` to the Parquet file at ``path``; with ``key``, a new row replaces
    an old one with the same key. Returns the whole table."""
    path = Path(path)
    new = pd.DataFrame(rows)
    old = read_table(path)
    if old is not None:
        if key is not None:
            old = old[~old[key].isin(new[key])]
        new = pd.concat([old, new], ignore_index=True)
    write_parquet(pa.Table.from_pandas(new, preserve_index=False), path)
    return new
