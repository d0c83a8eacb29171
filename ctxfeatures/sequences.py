"""Users' event sequences for sequence-level training.

:func:`to_sequences` turns an event log into fixed-width rows of one user's
consecutive events, oldest first, so that
:class:`~ctxfeatures.sequence_model.SequenceRetrievalModel` encodes every
position of a row at once and trains on each position's item. A row's first
``context`` positions only feed later positions' histories; its ``length``
target positions are each trained once, and every event of the log is a
target exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ctxfeatures.history import (
    NO_PREVIOUS_EVENT,
    PAD_INT,
    PAD_STRING,
    _check_items,
    _check_times,
)
from ctxfeatures.layers._inputs import check_positive_int

__all__ = ["IS_TARGET", "SECONDS_SINCE_LAST", "to_sequences"]

#: Key of the ``(rows, width)`` boolean column marking the target positions.
IS_TARGET = "is_target"
#: Key of the per-position seconds since the user's previous earlier event
#: (the rule and value of :func:`ctxfeatures.history.add_history`).
SECONDS_SINCE_LAST = "seconds_since_last"

_OWNER = "to_sequences()"


def to_sequences(
    events: Mapping[str, Any],
    *,
    user: str = "user_id",
    item: str = "movie_title",
    time: str = "timestamp",
    length: int = 50,
    context: int = 50,
) -> dict[str, np.ndarray]:
    """Each user's events as rows of ``context + length`` positions.

    A user's events, ordered by time (ties in log order), are cut into runs of
    ``length`` from the most recent backwards; each run becomes one row,
    preceded by up to ``context`` of the user's earlier events, counted from
    the first event of the run's first second (which that event cannot see).
    Rows are ``context + length`` wide, wider where a user has several events
    in one second at a run's start. Rows
    are left-padded: item columns with ``""`` / ``-1`` (the padding of
    :func:`~ctxfeatures.history.add_history`), other columns with ``0`` /
    ``""``. Every column of ``events`` is kept, one value per position.

    A position's history is the row's items of a strictly earlier time, the
    leak rule of :func:`~ctxfeatures.history.add_history`: with ``context``
    at least the history length used per event, a position sees exactly the
    history that function gives its event.

    Args:
        events: A mapping of equal-length numpy columns (or lists), one value
            per event.
        user: Key of the user id column.
        item: Key of the item id column (string or integer ids).
        time: Key of the integer Unix-seconds column.
        length: Target positions per row.
        context: Positions before them, for histories only.

    Returns:
        A dict of ``(rows, width)`` numpy arrays: every column of
        ``events``, :data:`IS_TARGET` (bool) and :data:`SECONDS_SINCE_LAST`
        (int64, ``-1`` where no earlier event exists).

    Raises:
        ValueError: ``length < 1``, ``context < 0``, a missing column, columns
            of unequal length, an empty log, bad times, or an item equal to
            the padding.

    Example:
        >>> log = {"user_id": np.array(["a", "a", "b", "a"]),
        ...        "movie_title": np.array(["x", "y", "x", "z"]),
        ...        "timestamp": np.array([10, 20, 20, 30])}
        >>> rows = ctxfeatures.sequences.to_sequences(log, length=2, context=1)
        >>> rows["movie_title"].tolist()
        [['x', 'y', 'z'], ['', '', 'x'], ['', '', 'x']]
        >>> rows["is_target"].tolist()
        [[False, True, True], [False, False, True], [False, False, True]]
    """
    length = check_positive_int(length, "length")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"`context` must be an integer >= 0. Received: {context!r}")
    columns = _columns(events, user, item, time)
    order = np.lexsort((np.arange(columns[time].size), columns[time], columns[user]))
    users, times = columns[user][order], columns[time][order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], users.size]
    groups = _group_starts(users, times)
    spans = [
        _span(start, end - stop, length, context, groups)
        for start, end in zip(starts, ends)
        for stop in range(0, end - start, length)
    ]
    width = max(context + length, max(end - first for first, _, end in spans))
    rows = {
        key: _fill(values[order], spans, width, key == item)
        for key, values in columns.items()
    }
    rows[IS_TARGET] = _targets(spans, width)
    rows[SECONDS_SINCE_LAST] = _since_last(users, times, groups, spans, width)
    return rows


def _span(
    start: int, end: int, length: int, context: int, groups: np.ndarray
) -> tuple[int, int, int]:
    """(first context position, first target, end) of the run ending at
    ``end`` among a user's events from ``start``. The context counts back
    from the first event of the first target's second, which that target
    cannot see: every target then has ``context`` visible events or all."""
    target = max(start, end - length)
    return max(start, groups[target] - context), target, end


def _group_starts(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each sorted event, the index of its (user, second)'s first event."""
    index = np.arange(times.size)
    new_user = np.r_[True, users[1:] != users[:-1]]
    new_time = new_user | np.r_[True, times[1:] != times[:-1]]
    return np.maximum.accumulate(np.where(new_time, index, 0))


def _columns(
    events: Mapping[str, Any], user: str, item: str, time: str
) -> dict[str, np.ndarray]:
    if not isinstance(events, Mapping):
        raise TypeError(
            f"{_OWNER} takes a mapping of numpy columns (or lists); received "
            f"{type(events).__name__}."
        )
    columns = {key: np.asarray(value) for key, value in events.items()}
    for role, key in (("user", user), ("item", item), ("time", time)):
        if key not in columns:
            raise ValueError(
                f"{_OWNER}: the {role} column '{key}' is missing; columns: "
                f"{sorted(columns)}. Name it with `{role}=`."
            )
    sizes = {key: value.shape[:1] for key, value in columns.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{_OWNER}: columns of unequal length: {sizes}.")
    if columns[time].size == 0:
        raise ValueError(f"{_OWNER}: the event log is empty.")
    columns[item] = _check_items(columns[item], item)
    columns[time] = _check_times(columns[time], time)
    return columns


def _fill(
    values: np.ndarray, spans: list[tuple[int, int, int]], width: int, is_item: bool
) -> np.ndarray:
    """``(rows, width)``: each span's values, right-aligned."""
    if is_item:
        pad = PAD_STRING if values.dtype.kind == "U" else PAD_INT
    else:
        pad = "" if values.dtype.kind == "U" else 0
    out = np.full((len(spans), width, *values.shape[1:]), pad, values.dtype)
    for row, (first, _, end) in enumerate(spans):
        out[row, width - (end - first) :] = values[first:end]
    return out


def _targets(spans: list[tuple[int, int, int]], width: int) -> np.ndarray:
    out = np.zeros((len(spans), width), bool)
    for row, (_, target, end) in enumerate(spans):
        out[row, width - (end - target) :] = True
    return out


def _since_last(
    users: np.ndarray,
    times: np.ndarray,
    groups: np.ndarray,
    spans: list[tuple[int, int, int]],
    width: int,
) -> np.ndarray:
    """Seconds since each event's latest strictly earlier event of its user."""
    new_user = np.r_[True, users[1:] != users[:-1]]
    before = groups - 1
    has_earlier = (before >= 0) & ~new_user[groups]
    since = np.where(
        has_earlier, times - times[np.maximum(before, 0)], NO_PREVIOUS_EVENT
    )
    return _fill(since.astype(np.int64), spans, width, False)
