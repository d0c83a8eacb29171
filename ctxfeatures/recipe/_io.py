"""Reading the recipe's input: CSV files of events and item features."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctxfeatures._data import as_columns

USER, ITEM, TIME = "user", "item", "timestamp"
# Names the recipe adds to every event: item features may not use them.
RESERVED = {USER, ITEM, TIME, "history", "seconds_since_last", "probability"}


def read_csv(
    path: str | os.PathLike, columns: Sequence[str], delimiter: str = ","
) -> dict[str, np.ndarray]:
    """The named ``columns`` of a CSV file with a header row, as strings."""
    path = os.fspath(path)
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header row.")
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(
                f"{path} has no column {missing[0]!r}; its columns are {header}. "
                "Name the right ones with --user, --item, --time, --text, --multi."
            )
        where = [header.index(c) for c in columns]
        rows = [[row[i] for i in where] for row in reader if row]
    if not rows:
        raise ValueError(f"{path} has a header but no rows.")
    return dict(zip(columns, (np.asarray(v, dtype=str) for v in zip(*rows))))


def as_seconds(values: np.ndarray, name: str) -> np.ndarray:
    """Integer Unix seconds, or ISO-8601 times converted to them."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    try:
        return values.astype(np.int64)
    except (ValueError, TypeError):
        pass
    try:
        return values.astype("datetime64[s]").astype(np.int64)
    except ValueError:
        bad = next((v for v in values.tolist() if not _is_time(v)), values[0])
        raise ValueError(
            f"Column {name!r} must hold integer Unix seconds or ISO-8601 times "
            f"such as 2024-05-01T12:30:00, one kind per file. Received: {bad!r}"
        ) from None


def _is_time(value: Any) -> bool:
    if str(value).lstrip("-").isdigit():
        return True
    try:
        np.datetime64(value, "s")
    except ValueError:
        return False
    return True


def events_from_columns(
    data: Mapping[str, Any],
    user: str,
    item: str,
    time: str,
    where: str,
    first_line: int | None = None,
) -> dict[str, np.ndarray]:
    """The recipe's event columns (user, item, timestamp) from a user's own."""
    columns = as_columns(data, "run_recipe()", "events")
    for name in (user, item, time):
        if name not in columns:
            raise ValueError(
                f"{where} has no column {name!r}; its columns are "
                f"{sorted(columns)}. Name the right ones (--user, --item, --time)."
            )
    ids = {name: np.asarray(columns[name]).astype(str) for name in (user, item)}
    for name, values in ids.items():
        # An empty id would read as a history's padding.
        empty = np.flatnonzero(values == "")
        if empty.size:
            place = (
                f"line {empty[0] + first_line}"
                if first_line is not None
                else f"row {empty[0]}"
            )
            raise ValueError(
                f"{where} {place}: column {name!r} is empty; drop or fill such rows."
            )
    return {
        USER: ids[user],
        ITEM: ids[item],
        TIME: as_seconds(np.asarray(columns[time]), time),
    }


def check_feature_names(features: Sequence[str]) -> None:
    clash = RESERVED & set(features)
    if clash:
        raise ValueError(
            f"Item feature names {sorted(clash)} are used by the recipe itself: "
            "rename those columns in the items file."
        )


def join_items(
    events: dict[str, np.ndarray],
    items: Mapping[str, Any] | None,
    item: str,
    features: Sequence[str],
    where: str,
) -> dict[str, np.ndarray]:
    """The catalogue, with each event given its item's features."""
    if items is None:
        if features:
            raise ValueError("--text and --multi name columns of --items: pass it.")
        return {ITEM: np.unique(events[ITEM])}
    check_feature_names(features)
    table = as_columns(items, "run_recipe()", "items")
    missing = [name for name in [item, *features] if name not in table]
    if missing:
        raise ValueError(
            f"{where} has no column {missing[0]!r}; its columns are {sorted(table)}."
        )
    ids = np.asarray(table[item]).astype(str)
    position = {value: row for row, value in enumerate(ids.tolist())}
    if len(position) != ids.size:
        raise ValueError(f"{where} lists an item twice in {item!r}.")
    unknown = [i for i in np.unique(events[ITEM]).tolist() if i not in position]
    if unknown:
        raise ValueError(
            f"{len(unknown)} items of the events are not in {where}, e.g. "
            f"{unknown[0]!r}: every item needs a row of features."
        )
    rows = np.asarray([position[i] for i in events[ITEM].tolist()])
    columns = {name: np.asarray(table[name]).astype(str) for name in features}
    # Training examples carry their item's features, as the catalogue does.
    events.update({name: column[rows] for name, column in columns.items()})
    return {ITEM: ids, **columns}
