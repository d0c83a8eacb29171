"""What both engines check before computing histories, in one place.

The checks and their messages are those of
:func:`ctxfeatures.history.add_history`; an engine supplies its schema as
column kinds (``"text"``, ``"integer"`` or its own type name) and runs one
aggregate query for the value checks.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ctxfeatures.history import HISTORY, PAD_INT, PAD_STRING, SECONDS_SINCE_LAST


class Relation(Protocol):
    """An engine's view of the log."""

    def quote(self, name: str) -> str: ...

    def schema(self) -> dict[str, str]: ...

    def aggregate(self, expressions: list[str]) -> tuple: ...


class LogColumns(NamedTuple):
    """The output's input columns, and whether items are strings."""

    kept: list[str]
    item_is_text: bool


class Pad(NamedTuple):
    type: str
    value: str


def pad_sql(item_is_text: bool) -> Pad:
    """The padding of histories as an SQL type and literal."""
    if item_is_text:
        return Pad("VARCHAR", "'" + PAD_STRING + "'")
    return Pad("BIGINT", str(PAD_INT))


def check_log(
    relation: Relation,
    user: str,
    item: str,
    time: str,
    tie_breaker: str | None,
    owner: str,
    reserved: tuple[str, ...] = (),
    reserved_hint: str = "Rename them.",
) -> LogColumns:
    """Checks the log's columns and values; returns the columns to keep.

    ``reserved`` are the names the engine adds to the log for itself.
    """
    schema = relation.schema()
    roles = {"user": user, "item": item, "time": time}
    if tie_breaker is not None:
        roles["tie_breaker"] = tie_breaker
    for role, key in roles.items():
        if key not in schema:
            raise ValueError(
                f"{owner}: the {role} column '{key}' is missing. Columns: "
                f"{sorted(schema)}. Pass `{role}=` with the right name."
            )
    clash = sorted(set(reserved) & set(schema))
    if clash:
        raise ValueError(
            f"{owner}: the log has columns {clash}, which the engine adds for "
            f"itself. {reserved_hint}"
        )
    for role in ("user", "item"):
        if schema[roles[role]] not in ("text", "integer"):
            raise TypeError(
                f"{owner}: {role} column '{roles[role]}' must hold string or "
                f"integer ids; its type is {schema[roles[role]]}. Cast it first."
            )
    if schema[time] != "integer":
        raise TypeError(
            f"{owner}: time column '{time}' must hold integer Unix seconds; "
            f"its type is {schema[time]}. Convert it, e.g. "
            "`epoch(ts)::BIGINT` in DuckDB or `unix_timestamp(ts)` in Spark."
        )
    item_is_text = schema[item] == "text"
    _check_values(relation, user, item, time, pad_sql(item_is_text), owner)
    replaced = (HISTORY, SECONDS_SINCE_LAST)
    kept = [name for name in schema if name not in replaced]
    return LogColumns(kept, item_is_text)


def _check_values(
    relation: Relation, user: str, item: str, time: str, pad: Pad, owner: str
) -> None:
    q = relation.quote
    u, i, t = q(user), q(item), q(time)
    count, missing, earliest, padded = relation.aggregate(
        [
            "count(*)",
            f"sum(CASE WHEN {u} IS NULL OR {i} IS NULL OR {t} IS NULL "
            "THEN 1 ELSE 0 END)",
            f"min({t})",
            f"sum(CASE WHEN {i} = {pad.value} THEN 1 ELSE 0 END)",
        ]
    )
    if not count:
        raise ValueError(f"{owner}: the event log is empty.")
    if missing:
        raise ValueError(
            f"{owner}: {missing} events have a missing (null) user, item or "
            "time. Drop those events or give them values."
        )
    if earliest is not None and earliest < 0:
        raise ValueError(
            f"{owner}: time column '{time}' holds negative values; times must "
            "be >= 0 seconds since the Unix epoch."
        )
    if padded:
        raise ValueError(
            f"{owner}: item column '{item}' holds {_pad_value(pad)!r}, which "
            "pads histories. Drop those events or give them another id."
        )


def _pad_value(pad: Pad) -> Any:
    return PAD_STRING if pad.type == "VARCHAR" else PAD_INT
