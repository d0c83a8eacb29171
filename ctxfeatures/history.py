"""What a user did just before each event: ``history`` and ``seconds_since_last``.

:func:`add_history` runs once on the whole, time-stamped event log, before any
train/test split. Each event gets the items of the same user's strictly
earlier events and the time since the latest of them. That is exactly what a
live system knows at the moment of a request, so the features can be used
honestly on any split: a test event sees the user's training events and the
earlier test events, and no event ever sees itself, an event at the same
second, or a later one.

Histories are stored as offsets into one time-sorted copy of the item column
and gathered batch by batch, so memory does not grow with ``max_length``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from ctxfeatures._columns import as_ids, read_columns
from ctxfeatures.layers._inputs import check_positive_int

__all__ = [
    "HISTORY",
    "NO_PREVIOUS_EVENT",
    "PAD_INT",
    "PAD_STRING",
    "SECONDS_SINCE_LAST",
    "add_history",
]

#: Name of the added history feature.
HISTORY = "history"
#: Name of the added duration feature.
SECONDS_SINCE_LAST = "seconds_since_last"
#: ``seconds_since_last`` of a user's first event (no earlier event).
NO_PREVIOUS_EVENT = -1
#: Padding of string histories (never a real item).
PAD_STRING = ""
#: Padding of integer histories (never a real item).
PAD_INT = -1

_GATHER_BATCH = 4096
_GATHER_CELLS = 2**20
_ROLES = ("user", "item", "time")
_OWNER = "add_history()"


class _Offsets(NamedTuple):
    """Per event (original order): history slice ``[start, end)`` and gap."""

    start: np.ndarray
    end: np.ndarray
    since: np.ndarray


def add_history(
    events: tf.data.Dataset | Mapping[str, Any],
    *,
    user: str = "user_id",
    item: str = "movie_title",
    time: str = "timestamp",
    max_length: int = 50,
) -> tf.data.Dataset | dict[str, np.ndarray]:
    """Adds each event's recent history and the time since the previous event.

    Two features are added to every event:

    * ``history``: the items of the same user's events with a strictly earlier
      timestamp, most recent last, at most ``max_length`` of them, padded *at
      the front* to ``max_length`` with :data:`PAD_STRING` (``""``) for string
      items or :data:`PAD_INT` (``-1``) for integer items. Every element has
      the fixed shape ``(max_length,)``, so a plain ``Dataset.batch`` (after
      any ``map``, ``filter`` or ``cache``) gives ``(batch, max_length)``.
      :class:`~ctxfeatures.HistoryEmbedding`, :mod:`ctxfeatures.evaluation`
      and :class:`~ctxfeatures.baselines.EASE` take either form and ignore
      the padding.
    * ``seconds_since_last``: int64 seconds since that user's latest strictly
      earlier event, or :data:`NO_PREVIOUS_EVENT` (``-1``) when there is none.

    Leak rule: an event's history never holds the event itself, nor any event
    of the same second or later. Events of one user at the same second do not
    see each other.

    Run it on the whole log before splitting; see :doc:`/leakage`.

    Args:
        events: An unbatched ``tf.data.Dataset`` of feature dicts, or a mapping
            of equal-length numpy columns (or lists).
        user: Key of the user id column.
        item: Key of the item id column (string or integer ids).
        time: Key of the integer Unix-seconds column.
        max_length: Most items kept per history.

    Returns:
        The same kind as ``events``, with the two features added and the event
        order unchanged. A dataset stores one sorted copy of the item column
        and two offsets per event, and gathers histories batch by batch as it
        is read, so its memory does not grow with ``max_length``: prefer it
        for large logs. A mapping gets the ``(n, max_length)`` array itself.

    Raises:
        ValueError: ``max_length < 1``, a missing column, columns of unequal
            length, negative or non-integer times, an empty log, or an item
            equal to the padding value.
        TypeError: events of another kind, a batched dataset, or columns of
            the wrong dtype.

    Example:
        >>> log = {"user_id": np.array(["a", "a", "b", "a"]),
        ...        "movie_title": np.array(["x", "y", "x", "z"]),
        ...        "timestamp": np.array([10, 20, 20, 20])}
        >>> out = ctxfeatures.history.add_history(log, max_length=2)
        >>> out["history"].tolist()
        [['', ''], ['', 'x'], ['', ''], ['', 'x']]
        >>> out["seconds_since_last"].tolist()
        [-1, 10, -1, 10]
    """
    max_length = check_positive_int(max_length, "max_length")
    if isinstance(events, tf.data.Dataset):
        return _add_to_dataset(events, user, item, time, max_length)
    if isinstance(events, Mapping):
        return _add_to_columns(events, user, item, time, max_length)
    raise TypeError(
        f"{_OWNER} takes a tf.data.Dataset of feature dicts or a mapping of "
        f"numpy columns; received {type(events).__name__}."
    )


# ----------------------------------------------------------------- columns
def _check_columns(
    events: Any, user: str, item: str, time: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checked user, item and time columns of a dataset or a mapping."""
    columns = read_columns(events, (user, item, time), _OWNER, _ROLES)
    users, items, times = (columns[key] for key in (user, item, time))
    if users.ndim != 1 or items.ndim != 1 or times.ndim != 1:
        raise ValueError(
            f"{_OWNER}: the user, item and time columns must be one-dimensional "
            "(one value per event)."
        )
    if times.size == 0:
        raise ValueError(f"{_OWNER}: the event log is empty.")
    return users, _check_items(items, item), _check_times(times, time)


def _check_items(items: np.ndarray, key: str) -> np.ndarray:
    items = as_ids(items, key, _OWNER)
    pad = PAD_STRING if items.dtype.kind == "U" else PAD_INT
    if (items == pad).any():
        raise ValueError(
            f"{_OWNER}: item column '{key}' holds {pad!r}, which pads histories. "
            "Drop those events or give them another id."
        )
    return items


def _check_times(times: np.ndarray, key: str) -> np.ndarray:
    if times.dtype.kind == "f":
        if not np.isfinite(times).all() or (times != np.round(times)).any():
            raise ValueError(
                f"{_OWNER}: time column '{key}' must hold whole seconds; "
                "found a fractional or non-finite value. Round or drop them."
            )
        times = times.astype(np.int64)
    elif times.dtype.kind not in "iu":
        raise TypeError(
            f"{_OWNER}: time column '{key}' must hold integer Unix seconds; "
            f"received dtype {times.dtype}. Convert it, e.g. "
            "`.astype('datetime64[s]').astype(np.int64)`."
        )
    times = times.astype(np.int64, copy=False)
    if (times < 0).any():
        raise ValueError(
            f"{_OWNER}: time column '{key}' holds negative values; times "
            "must be >= 0 seconds since the Unix epoch."
        )
    return times


def _offsets(
    users: np.ndarray, times: np.ndarray, max_length: int
) -> tuple[np.ndarray, _Offsets]:
    """Sort order of the log and each event's history slice within it."""
    # int32 positions and codes: half the memory of int64 on large logs.
    index = np.int32 if users.size < 2**31 else np.int64
    user_codes = np.unique(users, return_inverse=True)[1].astype(index)
    order = np.lexsort((times, user_codes)).astype(index)
    sorted_times = times[order]
    user_codes = user_codes[order]
    new_user = np.ones(order.size, bool)
    np.not_equal(user_codes[1:], user_codes[:-1], out=new_user[1:])
    del user_codes
    new_second = new_user.copy()
    new_second[1:] |= sorted_times[1:] != sorted_times[:-1]
    positions = np.arange(order.size, dtype=index)
    user_start = np.maximum.accumulate(np.where(new_user, positions, 0))
    del new_user
    # Events of one user at one second share a history that ends before
    # the first of them: none of them sees the others.
    end = np.maximum.accumulate(np.where(new_second, positions, 0))
    del new_second
    start = np.maximum(user_start, end - max_length)
    since = sorted_times - sorted_times[np.maximum(end - 1, 0)]
    since[end == user_start] = NO_PREVIOUS_EVENT
    del user_start, sorted_times
    original = np.empty_like(order)
    original[order] = positions
    del positions
    offsets = _Offsets(start[original], end[original], since[original])
    return order, offsets


def _padded(sorted_items: np.ndarray, offsets: _Offsets, width: int, pad: Any):
    """``(n, width)`` front-padded histories, with numpy (for mappings)."""
    if sorted_items.dtype.kind == "U":
        # References to shared str objects, not width copies of each string.
        sorted_items = sorted_items.astype(object)
    columns = offsets.end[:, None] - width + np.arange(width)[None, :]
    valid = columns >= offsets.start[:, None]
    values = sorted_items[np.clip(columns, 0, None)]
    return np.where(valid, values, pad)


def _add_to_columns(
    columns: Mapping[str, Any], user: str, item: str, time: str, max_length: int
) -> dict[str, np.ndarray]:
    users, items, times = _check_columns(columns, user, item, time)
    order, offsets = _offsets(users, times, max_length)
    pad = PAD_STRING if items.dtype.kind == "U" else PAD_INT
    result = {key: np.asarray(value) for key, value in columns.items()}
    result[HISTORY] = _padded(items[order], offsets, max_length, pad)
    result[SECONDS_SINCE_LAST] = offsets.since.astype(np.int64)
    return result


# ----------------------------------------------------------------- datasets
def _add_to_dataset(
    events: tf.data.Dataset, user: str, item: str, time: str, max_length: int
) -> tf.data.Dataset:
    spec = events.element_spec
    if isinstance(spec, Mapping) and any(
        key in spec and spec[key].shape.rank != 0 for key in (user, item, time)
    ):
        raise TypeError(
            f"{_OWNER} takes an unbatched dataset (one event per element); call "
            "it before `.batch()`, or on `dataset.unbatch()`."
        )
    users, items, times = _check_columns(events, user, item, time)
    order, offsets = _offsets(users, times, max_length)
    pad = PAD_STRING if items.dtype.kind == "U" else PAD_INT
    # Items are stored once, sorted by user and time; string items as int32
    # codes into a table of distinct ids. Each event holds only its bounds.
    if items.dtype.kind == "U":
        table, codes = np.unique(items, return_inverse=True)
        table = tf.constant(table, tf.string)
        codes = tf.constant(codes.astype(np.int32)[order])
    else:
        table, codes = None, tf.constant(items[order], tf.int64)
    del order, items, users, times
    width = tf.range(max_length, dtype=tf.int64)

    def gather(batch: dict[str, tf.Tensor], bounds: dict[str, tf.Tensor]) -> dict:
        # Front padding: column j holds the item max_length - j steps back.
        end = tf.cast(bounds["end"], tf.int64)
        columns = end[:, None] - max_length + width[None, :]
        valid = columns >= tf.cast(bounds["start"], tf.int64)[:, None]
        values = tf.gather(codes, tf.maximum(columns, 0))
        if table is not None:
            values = tf.gather(table, values)
        history = tf.where(valid, values, tf.constant(pad, values.dtype))
        return {**batch, HISTORY: history, SECONDS_SINCE_LAST: bounds["since"]}

    bounds = tf.data.Dataset.from_tensor_slices(
        {"start": offsets.start, "end": offsets.end, "since": offsets.since}
    )
    # Gathering per batch keeps the per-event cost of tf.data low; batches
    # of about _GATHER_CELLS history cells keep its memory (a few batches in
    # flight) independent of max_length.
    rows = max(1, min(_GATHER_BATCH, _GATHER_CELLS // max_length))
    # unbatch() forgets the count, which is known here (one output per event):
    # without it, Keras 3 warns "ran out of data" at every epoch's end.
    known = tf.data.experimental.assert_cardinality(len(offsets.start))
    return (
        tf.data.Dataset.zip(events, bounds)
        .batch(rows)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
        .apply(known)
    )
