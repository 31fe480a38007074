"""Result files: Parquet tables that pandas reads as they are, written at a cost that
does not grow with the table.

**At rest** (after a sweep, and as every earlier version wrote them) a table is one
Parquet file, e.g. ``results/<name>/trials.parquet``. :func:`append_rows` adds rows to such
a file by rewriting it whole under a temporary name and renaming it into place, so a reader
(or a crash) never sees half a file.

**While a sweep runs**, ``trials.parquet`` and ``epochs.parquet`` are Parquet dataset
folders of that name: the driver adds one part per finished trial (:class:`PartedTable`),
so a trial's write costs the same after ten rows as after ten thousand (rewriting the whole
file per trial made a sweep's writes grow with the square of its trials;
``bench/writes.py`` measures both). When the sweep ends, and when a sweep starts on a
folder a killed driver left in parts, :func:`compact` turns the parts back into one file.
The old single-file layout needs no conversion step of its own: it is the at-rest form, and
the first write of a resumed sweep moves that file into the folder as its first part.

Either form reads with the documented one-liner, ``pd.read_parquet(".../trials.parquet")``,
and with ``pyarrow.dataset.dataset(...)``:

- ``part-0000000000.parquet`` holds no rows, only the schema every part is read as (pyarrow
  takes a dataset's schema from its first file, by name). When a new row brings a column, or
  a wider type (a value where every earlier row had None, a float where they had ints), that
  file is rewritten before the part is added: a cost in columns, not rows. Each part is
  written conformed to it, so parts never disagree on a column's type.
- Parts go in under a hidden temporary name and are renamed in, so a reader sees whole
  parts only (pyarrow and pandas skip names that start with ``.``). The driver writes a
  trial's epochs before its row, so a trial with a row is a finished trial.
- A row that replaces an older one with the same key (a trial rerun after an ``error``)
  lands in a newer part: :func:`read_table` and :func:`compact` keep, per key, the rows of
  the newest part that has the key, which is what rewriting the file did. A plain
  ``pd.read_parquet`` during a sweep still shows the replaced row until the sweep ends.
  The key is stored in the schema file's metadata.

Changing form is crash-safe: a folder becomes a file by writing the whole compacted file
to ``.<name>.compacted`` first (a reader and the next writer take it as the table while it
exists), moving the folder away to ``.<name>.retired`` and the file into place; a file
becomes a folder by moving it to ``.<name>.base`` (read as the first part while it is
there) and then into the new folder. A writer finishes whatever a killed one left
(:func:`settle`) before it writes. For a moment of a change a plain ``pd.read_parquet``
finds no table (the driver's own reads never do).

``teachers.parquet`` stays one file rewritten whole: it has a row per teacher (a sweep has
a handful; the paper's grid, twelve), not per trial, so its cost does not grow with a
sweep's trials, and the driver rewrites it only when a teacher's row changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workers.io import Location, StorageError, location, write_parquet

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
TEACHERS = "teachers.parquet"

#: The zero-row first part that holds the schema every part is read as.
SCHEMA_PART = "part-0000000000.parquet"
#: Schema metadata: the column a newer row replaces older ones by.
KEY_META = b"qkd_sweep.key"


def _side(loc: Location, tag: str) -> Location:
    """A hidden sibling used while a table changes form (see the module docstring)."""
    return loc.parent / f".{loc.name}.{tag}"


def _unreadable(where: Location | str, exc: Exception) -> StorageError:
    # Never guess at a damaged results file: a sweep that read it as empty would rerun
    # (and then overwrite) every trial it holds.
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StorageError(
        f"{where}: not a readable Parquet file ({reason}); move it away to keep what can be saved, "
        "or rerun with --fresh"
    )


def _read_file(loc: Location, display: Location | None = None) -> pa.Table:
    try:
        return loc.read_parquet()
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(display or loc, exc) from None


def _index_columns(schema: pa.Schema) -> list[str]:
    """The columns in which pandas keeps a DataFrame's index (a file pandas wrote with one)."""
    meta = schema.metadata or {}
    try:
        index = json.loads(meta[b"pandas"]).get("index_columns", []) if b"pandas" in meta else []
    except ValueError:
        index = []
    return [c for c in index if isinstance(c, str) and c in schema.names]


def _plain(table: pa.Table) -> pa.Table:
    """``table`` as one part among others: without pandas' index columns and metadata, which
    only pandas understands and only for the file they came with."""
    return table.drop_columns(_index_columns(table.schema)).replace_schema_metadata(None)


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    drop = set(_index_columns(schema))
    return pa.schema([f for f in schema if f.name not in drop])


def _parts(loc: Location) -> list[Location]:
    return [f for f in loc.files() if f.name.endswith(".parquet") and not f.name.startswith((".", "_"))]


def _key_of(loc: Location) -> str | None:
    """The key a parted table's writer recorded in its schema part, if any."""
    schema_part = loc / SCHEMA_PART
    if not schema_part.is_file():
        return None
    try:
        meta = pq.read_schema(schema_part.path, filesystem=schema_part.fs).metadata or {}
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(schema_part, exc) from None
    return meta[KEY_META].decode() if KEY_META in meta else None


def _newest(tables: list[pa.Table], key: str | None, where: Location) -> pa.Table:
    """The tables one after another, with per key only the rows of the last table that has it."""
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StorageError(f"{where}: parts whose columns do not agree ({str(exc).splitlines()[0]})") from None
    if key is None or key not in table.column_names or len(tables) < 2:
        return table
    source = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    keys = table[key]
    unique = pc.unique(keys)
    which = np.asarray(pc.index_in(keys, value_set=unique))
    newest = np.full(len(unique), -1)
    np.maximum.at(newest, which, source)
    return table.filter(pa.array(source == newest[which]))


def read_arrow(path: str | Path | Location, key: str | None = None) -> pa.Table | None:
    """The table at ``path`` in either form (see the module docstring), or None when there is
    none yet. In parts, rows replaced by a newer part's rows with the same ``key`` (default: the
    key its writer recorded) are left out."""
    loc = location(path)
    compacted = _side(loc, "compacted")
    if compacted.is_file():  # a compaction was under way: this file holds the whole table
        return _plain(_read_file(compacted, loc))
    if loc.is_file():
        return _read_file(loc)
    base = _side(loc, "base")
    sources = ([base] if base.is_file() else []) + _parts(loc)
    if not sources:
        return None
    tables = [_plain(_read_file(s, loc / s.name if s is not base else loc)) for s in sources]
    return _newest(tables, key or _key_of(loc), loc)


def read_table(path: str | Path | Location, key: str | None = None) -> pd.DataFrame | None:
    """The table at ``path`` (a file, or a sweep's parts), or None when there is none yet."""
    table = read_arrow(path, key)
    return None if table is None else table.to_pandas()


def append_rows(path: str | Path | Location, rows: list[dict], key: str | None = None) -> pd.DataFrame:
    """Append ``rows`` to the table at ``path``; with ``key``, a new row replaces an old one
    with the same key. Returns the whole table.

    A file (or no table yet) is rewritten whole; a table in parts (a sweep is writing it,
    or a killed one left it so) gets one more part."""
    loc = location(path)
    if loc.is_dir():
        PartedTable(loc, key).append(rows)
        return read_table(loc, key)
    new = pd.DataFrame(rows)
    old = read_table(loc)
    if old is not None:
        if key is not None:
            old = old[~old[key].isin(new[key])]
        new = pd.concat([old, new], ignore_index=True)
    write_parquet(pa.Table.from_pandas(new, preserve_index=False), loc)
    return new


# ------------------------------------------------------------------ parts
def _arrow_rows(rows: list[dict]) -> pa.Table:
    """Rows as a table: every column any row has, in first-seen order, types as pyarrow infers."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({n: pa.array([r.get(n) for r in rows]) for n in names})


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order and types (null where it has none)."""
    have = dict(zip(table.column_names, table.columns, strict=True))
    cols = []
    for f in schema:
        col = have.get(f.name)
        if col is None:
            col = pa.nulls(table.num_rows, f.type)
        cols.append(col if col.type == f.type else col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema.remove_metadata())


def _write_schema_part(loc: Location, schema: pa.Schema, key: str | None) -> None:
    schema = schema.remove_metadata()
    if key:
        schema = schema.with_metadata({KEY_META: key.encode()})
    write_parquet(schema.empty_table(), loc / SCHEMA_PART)


def _file_schema(loc: Location, display: Location) -> pa.Schema:
    """The schema of the Parquet file at ``loc``, from its footer, as a part's."""
    try:
        return _plain_schema(pq.read_schema(loc.path, filesystem=loc.fs))
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(display, exc) from None


def _into_parts(loc: Location, base: Location, key: str | None, schema: pa.Schema | None = None) -> None:
    """Finish turning a file into parts: ``base`` (the file, moved aside) becomes part 1."""
    loc.mkdir()
    if not (loc / SCHEMA_PART).is_file():
        _write_schema_part(loc, schema or _file_schema(base, loc), key)
    base.move(loc / _part_name(1))


def _part_name(seq: int) -> str:
    return f"part-{seq:010d}.parquet"


def settle(path: str | Path | Location, key: str | None = None) -> None:
    """Finish a change of form that a killed writer left half done (see the module docstring)."""
    loc = location(path)
    compacted, retired, base = _side(loc, "compacted"), _side(loc, "retired"), _side(loc, "base")
    if compacted.is_file():  # the whole table: the parts (and any base) are older copies of it
        if loc.is_dir():
            retired.delete()
            loc.move(retired)
        if loc.exists():  # a copy-and-delete move (object store) that got as far as the copy
            compacted.delete()
        else:
            compacted.move(loc)
        base.delete()
    retired.delete()
    if base.is_file():
        if loc.is_file():  # moved aside by copy-and-delete, the delete not done: the file is the table
            base.delete()
        else:
            _into_parts(loc, base, key)


def compact(path: str | Path | Location, key: str | None = None) -> None:
    """Turn a table in parts into one file (newest rows per key); a file, or no table, stays."""
    loc = location(path)
    settle(loc, key)
    if not loc.is_dir():
        return
    table = read_arrow(loc, key)
    compacted, retired = _side(loc, "compacted"), _side(loc, "retired")
    if table is None:  # an empty folder (a writer killed before its first part)
        loc.delete()
        return
    write_parquet(table, compacted)
    if loc.is_local:  # one rename: a reader sees the parts or nothing, never some of them
        retired.delete()
        loc.move(retired)
        compacted.move(loc)
        retired.delete()
    else:  # an object store cannot rename a folder; readers take the compacted file meanwhile
        loc.delete()
        compacted.move(loc)


def remove_table(path: str | Path | Location) -> None:
    """The table at ``path`` gone, in whatever form (``--fresh``)."""
    loc = location(path)
    for what in (loc, _side(loc, "compacted"), _side(loc, "base"), _side(loc, "retired")):
        what.delete()


class PartedTable:
    """A result table that each :meth:`append` adds one part to (see the module docstring);
    :meth:`compact` folds it back into one file.

    The first append takes the table as it finds it: a file (the at-rest form, or an old
    version's) moves in as part 1; a folder of parts is continued; nothing starts a folder.
    After that an append reads nothing: it writes the part, and the schema part only when
    the columns change.
    """

    def __init__(self, path: str | Path | Location, key: str | None = None):
        self.loc = location(path)
        self.key = key
        self.schema: pa.Schema | None = None
        #: The number of the next part; 0 until the first append has opened the table.
        self.seq = 0

    def _open(self) -> None:
        loc = self.loc
        settle(loc, self.key)
        if loc.is_file():  # read before it moves: a damaged file is refused where it is
            schema = _file_schema(loc, loc)
            base = _side(loc, "base")
            loc.move(base)
            _into_parts(loc, base, self.key, schema)
        if loc.is_dir():
            parts = _parts(loc)
            schema_part = loc / SCHEMA_PART
            if schema_part.is_file():
                self.schema = _read_file(schema_part).schema.remove_metadata()
            numbers = [int(p.name[5:15]) for p in parts if p.name[5:15].isdigit()]
            self.seq = max(numbers, default=0) + 1
        else:
            loc.mkdir()
            self.seq = 1

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        if not self.seq:
            self._open()
        table = _arrow_rows(rows)
        schema = table.schema
        if self.schema is not None:
            try:
                schema = pa.unify_schemas([self.schema, table.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                reason = str(exc).splitlines()[0]
                raise StorageError(f"{self.loc}: rows that do not fit its columns ({reason})") from None
        if self.schema is None or not schema.equals(self.schema):
            _write_schema_part(self.loc, schema, self.key)  # before the part that needs it
            self.schema = schema
        write_parquet(_conform(table, schema), self.loc / _part_name(self.seq))
        self.seq += 1

    def compact(self) -> None:
        compact(self.loc, self.key)
        self.schema, self.seq = None, 0
