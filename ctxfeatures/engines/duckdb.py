"""``history`` and ``seconds_since_last`` for Parquet logs, out of core (DuckDB).

The same columns as :func:`ctxfeatures.history.add_history`, from Parquet files
to Parquet files, in memory bounded by ``memory_limit`` plus one chunk of rows.
DuckDB sorts the log by user, time and position (an external sort that spills
to disk), and the sorted rows stream through the history window chunk by
chunk. Unlike a SQL window, no single user's events, however many, need to fit
in memory at once.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> log = pa.table({"user_id": ["a", "a", "b", "a"],
    ...                 "movie_title": ["x", "y", "x", "z"],
    ...                 "timestamp": [10, 20, 20, 20]})
    >>> pq.write_table(log, f"{tmp}/log.parquet")
    >>> files = ctxfeatures.engines.duckdb.add_history(
    ...     f"{tmp}/log.parquet", f"{tmp}/out", max_length=2)
    >>> out = pq.read_table(files).to_pydict()
    >>> out["user_id"], out["movie_title"]
    (['a', 'a', 'a', 'b'], ['x', 'y', 'z', 'x'])
    >>> out["history"]
    [['', ''], ['', 'x'], ['', 'x'], ['', '']]
    >>> out["seconds_since_last"]
    [-1, 10, 10, -1]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ctxfeatures.engines import _rule
from ctxfeatures.engines._window import SortedWindow
from ctxfeatures.history import HISTORY, SECONDS_SINCE_LAST
from ctxfeatures.layers._inputs import check_positive_int
from ctxfeatures.shards import parquet_files

__all__ = ["add_history"]

_OWNER = "ctxfeatures.engines.duckdb.add_history()"
# DuckDB's own columns for a row's file and position in it (ties' order).
_FILE, _ROW = "filename", "file_row_number"
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_CHUNK = 1 << 19


def add_history(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    destination: str | os.PathLike,
    *,
    user: str = "user_id",
    item: str = "movie_title",
    time: str = "timestamp",
    max_length: int = 50,
    tie_breaker: str | None = None,
    memory_limit: str = "1GB",
    threads: int | None = None,
    rows_per_file: int = 4_000_000,
) -> list[str]:
    """Adds ``history`` and ``seconds_since_last`` to a Parquet log.

    Each event gets what :func:`ctxfeatures.history.add_history` gives it on
    the concatenated files: at most ``max_length`` items of the same user's
    strictly earlier seconds, most recent last, front-padded with ``""``
    (string items) or ``-1`` (integer items, as int64), and
    ``seconds_since_last``, ``-1`` for a user's first event. Events of one
    user at the same second never see each other; among earlier events, ties
    in time keep the log's order (files in path order, rows in file order) or
    follow ``tie_breaker``.

    Args:
        source: A Parquet file, a directory of ``*.parquet`` files, a glob
            pattern, or a list of files. Read in sorted path order.
        destination: A new (or empty) directory for the output files. They
            are written under a temporary name beside it and moved in when
            complete, so a failed job leaves nothing behind.
        user: Key of the user id column (string or integer).
        item: Key of the item id column (string or integer).
        time: Key of the integer Unix-seconds column.
        max_length: Most items kept per history.
        tie_breaker: A column that orders events of the same second (e.g. an
            event id), instead of their position in the files.
        memory_limit: DuckDB's memory limit, e.g. ``"1GB"``; its sort spills
            to a temporary directory beside ``destination`` above it.
        threads: DuckDB threads (default: one per core).
        rows_per_file: Rows per output file; many files let data-parallel
            workers each read their own (see :mod:`ctxfeatures.shards`).

    Returns:
        The output Parquet files, in order, with every input column, then
        ``history`` and ``seconds_since_last`` (replacing columns of those
        names). Rows are grouped by user and sorted by time within a user,
        not in the log's order: shuffle them for training.

    Raises:
        ValueError: a missing column or file, an empty log, missing values,
            negative times, an item equal to the padding value, or a
            destination that is not empty.
        TypeError: columns of the wrong type.
        ImportError: DuckDB or pyarrow is not installed.
    """
    max_length = check_positive_int(max_length, "max_length")
    rows_per_file = check_positive_int(rows_per_file, "rows_per_file")
    if threads is not None:
        threads = check_positive_int(threads, "threads")
    files = parquet_files(source, _OWNER)
    destination = _check_destination(destination)
    work = tempfile.mkdtemp(
        prefix=".ctxfeatures-", dir=os.path.dirname(os.path.abspath(destination))
    )
    try:
        connection = _connect(memory_limit, threads, os.path.join(work, "spill"))
        with connection:
            relation = _Relation(connection, files)
            # Without a tie breaker, ties follow each row's file and position,
            # which DuckDB adds as columns of its own.
            positions = () if tie_breaker else (_FILE, _ROW)
            columns = _rule.check_log(
                relation,
                user,
                item,
                time,
                tie_breaker,
                _OWNER,
                reserved=positions,
                reserved_hint="Rename them, or pass `tie_breaker=` (a column "
                "that orders events of the same second).",
            )
            ties = [quote(tie_breaker)] if tie_breaker else list(positions)
            sorted_rows = _arrow_reader(
                connection.sql(
                    f"SELECT {', '.join(quote(c) for c in columns.kept)} "
                    f"FROM {relation.read(positions)} "
                    f"ORDER BY {quote(user)}, {quote(time)}, {', '.join(ties)}"
                )
            )
            output = os.path.join(work, "out")
            os.mkdir(output)
            window = SortedWindow(max_length)
            chunks = (
                _with_history(batch, window, user, item, time, columns.item_is_text)
                for batch in sorted_rows
            )
            written = _write(chunks, output, rows_per_file)
        written = _publish(written, destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return written


def _arrow_reader(relation: Any) -> Any:
    """The relation's rows as Arrow batches of ``_CHUNK`` rows, streamed."""
    # DuckDB 1.x names it fetch_record_batch, deprecated in 2.x.
    read = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
    return read(_CHUNK)


def _check_destination(destination: str | os.PathLike) -> str:
    destination = os.fspath(destination)
    if os.path.exists(destination) and (
        not os.path.isdir(destination) or os.listdir(destination)
    ):
        raise ValueError(
            f"{_OWNER}: destination '{destination}' exists and is not an empty "
            "directory. Choose a new directory; nothing is overwritten."
        )
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    return destination


def _connect(memory_limit: str, threads: int | None, temp_directory: str) -> Any:
    try:
        import duckdb
        import pyarrow  # noqa: F401  (DuckDB streams its result as Arrow)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{_OWNER} needs DuckDB and pyarrow ({error.name} is missing): "
            '`pip install "ctxfeatures[engines]"`.'
        ) from None
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": temp_directory,
        "preserve_insertion_order": False,
    }
    if threads is not None:
        config["threads"] = threads
    try:
        return duckdb.connect(config=config)
    except duckdb.Error as error:
        raise ValueError(f"{_OWNER}: {str(error).splitlines()[0]}") from None


class _Relation:
    """The log as DuckDB reads it, for the checks shared with Spark."""

    def __init__(self, connection: Any, files: list[str]) -> None:
        self.connection = connection
        self.files = files
        self.source = self.read(())

    def read(self, positions: tuple[str, ...]) -> str:
        """``read_parquet`` of the files, with the position columns named."""
        options = "".join(f", {name} = true" for name in positions)
        return f"read_parquet({_literal(self.files)}{options})"

    def quote(self, name: str) -> str:
        return quote(name)

    def schema(self) -> dict[str, str]:
        rows = self.connection.execute(f"DESCRIBE SELECT * FROM {self.source}")
        return {name: _kind(kind) for name, kind, *_ in rows.fetchall()}

    def aggregate(self, expressions: list[str]) -> tuple:
        query = f"SELECT {', '.join(expressions)} FROM {self.source}"
        return self.connection.execute(query).fetchall()[0]


def _kind(duckdb_type: str) -> str:
    if duckdb_type == "VARCHAR":
        return "text"
    if duckdb_type.removeprefix("U") in _INTEGERS:
        return "integer"
    return duckdb_type


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    """A DuckDB literal of a string or a list of strings."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "[" + ", ".join(_literal(v) for v in value) + "]"


def _with_history(
    batch: Any,
    window: SortedWindow,
    user: str,
    item: str,
    time: str,
    item_is_text: bool,
) -> Any:
    """One sorted Arrow batch with its two history columns appended."""
    import pyarrow as pa

    columns = {
        key: batch.column(key).to_numpy(zero_copy_only=False)
        for key in (user, item, time)
    }
    items = columns[item].astype(str if item_is_text else np.int64)
    history, since = window(columns[user], items, columns[time].astype(np.int64))
    flat = pa.array(history.reshape(-1), pa.string() if item_is_text else pa.int64())
    offsets = pa.array(np.arange(0, len(flat) + 1, window.max_length, np.int32))
    table = pa.Table.from_batches([batch])
    table = table.append_column(HISTORY, pa.ListArray.from_arrays(offsets, flat))
    return table.append_column(SECONDS_SINCE_LAST, pa.array(since))


def _write(chunks: Iterator[Any], output: str, rows_per_file: int) -> list[str]:
    """Writes tables into files of ``rows_per_file`` rows, in order."""
    import pyarrow.parquet as pq

    written: list[str] = []
    writer, rows = None, 0
    for table in chunks:
        while table.num_rows:
            if writer is None:
                written.append(os.path.join(output, f"part-{len(written):05d}.parquet"))
                writer, rows = pq.ParquetWriter(written[-1], table.schema), 0
            part = table.slice(0, rows_per_file - rows)
            writer.write_table(part)
            rows += part.num_rows
            table = table.slice(part.num_rows)
            if rows == rows_per_file:
                writer.close()
                writer = None
    if writer is not None:
        writer.close()
    return written


def _publish(written: list[str], destination: str) -> list[str]:
    """Moves the finished files into ``destination``."""
    os.makedirs(destination, exist_ok=True)
    published = []
    for path in written:
        target = os.path.join(destination, os.path.basename(path))
        os.replace(path, target)
        published.append(target)
    return published
