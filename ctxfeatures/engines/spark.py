"""``history`` and ``seconds_since_last`` on Apache Spark (pyspark DataFrames).

The same columns as :func:`ctxfeatures.history.add_history`, computed as
DataFrame windows, so the job runs where the log already is: on a cluster, or
in local mode. One shuffle groups each user's events; every window shares its
partitioning and sort order.

Example (``spark`` is a ``SparkSession``)::

    from ctxfeatures.engines import spark as engine

    events = spark.read.parquet("s3://bucket/events/")
    engine.add_history(events, item="movie_id", max_length=50) \\
        .write.parquet("s3://bucket/events_with_history/")
"""

from __future__ import annotations

from typing import Any

from ctxfeatures.engines import _rule
from ctxfeatures.history import HISTORY, PAD_INT, PAD_STRING, SECONDS_SINCE_LAST
from ctxfeatures.layers._inputs import check_positive_int

__all__ = ["add_history"]

_OWNER = "ctxfeatures.engines.spark.add_history()"
_INTEGERS = ("tinyint", "smallint", "int", "bigint")
# Columns of a file-based DataFrame: each row's file and position in it.
_FILE, _ROW = "_metadata.file_path", "_metadata.row_index"
# Columns this function adds to the log while it works.
_OWN = ("__tie", "__tie_file", "__tie_row", "__first")


def _modules() -> tuple[Any, Any]:
    try:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{_OWNER} needs pyspark: `pip install pyspark` (or "
            '`pip install "ctxfeatures[engines]"`), and Java 17 or later.'
        ) from None
    return F, Window


def add_history(
    events: Any,
    *,
    user: str = "user_id",
    item: str = "movie_title",
    time: str = "timestamp",
    max_length: int = 50,
    tie_breaker: str | None = None,
) -> Any:
    """Adds ``history`` and ``seconds_since_last`` to a Spark DataFrame.

    The result equals :func:`ctxfeatures.history.add_history` on the same
    log, row for row: histories of at most ``max_length`` items of the same
    user's strictly earlier seconds, most recent last, front-padded with
    ``""`` (string items) or ``-1`` (integer items, as long), and
    ``seconds_since_last`` of ``-1`` for a user's first event. Events of one
    user at the same second never see each other; they are ordered by
    ``tie_breaker``, or, for a DataFrame read from Parquet files, by their
    position in the files (files in path order, rows in file order), which is
    the order ``add_history`` sees when it reads the same files.

    Args:
        events: A ``pyspark.sql.DataFrame`` with one row per event.
        user: Key of the user id column (string or integer).
        item: Key of the item id column (string or integer).
        time: Key of the integer Unix-seconds column.
        max_length: Most items kept per history.
        tie_breaker: A column that orders events of the same second (e.g. an
            event id). Required unless ``events`` was read from Parquet files.

    Returns:
        A lazy DataFrame with every input column, then ``history`` and
        ``seconds_since_last`` (replacing columns of those names). Rows are in
        no particular order.

    Raises:
        ValueError: a missing column, an empty log, missing values, negative
            times, an item equal to the padding value, or no ``tie_breaker``
            for a DataFrame that was not read from Parquet files.
        TypeError: ``events`` is not a DataFrame, or columns of the wrong type.
        ImportError: pyspark is not installed.
    """
    F, Window = _modules()
    from pyspark.sql import DataFrame

    if not isinstance(events, DataFrame):
        raise TypeError(
            f"{_OWNER} takes a pyspark DataFrame; received {type(events).__name__}."
            " For Parquet files on one machine see ctxfeatures.engines.duckdb."
        )
    max_length = check_positive_int(max_length, "max_length")
    columns = _rule.check_log(
        _Relation(events), user, item, time, tie_breaker, _OWNER, reserved=_OWN
    )
    kept = [F.col(_rule_name(name)) for name in columns.kept]
    # The ties' order travels as plain columns, since `_metadata` exists only
    # on the DataFrame read from the files.
    ties = _ties(events, tie_breaker, F)
    item_type = "string" if columns.item_is_text else "long"
    base = events.select(*kept, *(col.alias(name) for name, col in ties.items()))
    within = Window.partitionBy(user).orderBy(time, *ties)
    previous = F.lag(time, 1).over(within)
    framed = base.select(
        *kept,
        *ties,
        # Only the first event of a (user, second) group keeps its frame and
        # gap; the others take them below, so they never see each other.
        F.when(
            previous.isNull() | (previous != F.col(time)),
            F.struct(
                F.collect_list(F.col(item).cast(item_type))
                .over(within.rowsBetween(-max_length, -1))
                .alias("items"),
                F.coalesce(F.col(time) - previous, F.lit(-1))
                .cast("long")
                .alias("since"),
            ),
        ).alias("__first"),
    )
    group = F.last("__first", ignorenulls=True).over(
        within.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    pad = F.lit(PAD_STRING if columns.item_is_text else PAD_INT).cast(item_type)
    history = F.concat(
        F.array_repeat(pad, F.lit(max_length) - F.size(group["items"])),
        group["items"],
    )
    return framed.select(
        *kept,
        history.alias(HISTORY),
        group["since"].alias(SECONDS_SINCE_LAST),
    )


def _ties(events: Any, tie_breaker: str | None, F: Any) -> dict[str, Any]:
    """Columns that order events of one second: named ``__tie*``."""
    if tie_breaker is not None:
        return {"__tie": F.col(_rule_name(tie_breaker))}
    try:
        events.select(_FILE, _ROW).schema
    except Exception:
        raise ValueError(
            f"{_OWNER}: the DataFrame was not read from Parquet files, so its "
            "rows have no order. Pass `tie_breaker=` (a column that orders "
            "events of the same second, e.g. an event id or "
            "`monotonically_increasing_id()` taken when the log was in order)."
        ) from None
    return {"__tie_file": F.col(_FILE), "__tie_row": F.col(_ROW)}


def _rule_name(name: str) -> str:
    """A column name as Spark's ``col`` reads it (dots are not paths)."""
    return "`" + name.replace("`", "``") + "`"


class _Relation:
    """The DataFrame as the shared checks read it."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def quote(self, name: str) -> str:
        return _rule_name(name)

    def schema(self) -> dict[str, str]:
        return {name: _kind(kind) for name, kind in self.events.dtypes}

    def aggregate(self, expressions: list[str]) -> tuple:
        return tuple(self.events.selectExpr(*expressions).first())


def _kind(spark_type: str) -> str:
    if spark_type == "string":
        return "text"
    if spark_type in _INTEGERS:
        return "integer"
    return spark_type
