"""The recipe's evaluation protocols: which events are test and validation.

* ``chronological``: the latest fraction of the events in time is the test,
  the latest 10% of the rest the validation slice (one global clock).
* ``leave-last-out``: each user's last event is the test and the one before
  it the validation, the protocol of next-item papers; for logs whose times
  are only comparable within a user. Users with one event (two, for the
  validation) keep it in training.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctxfeatures import splits

PROTOCOLS = ("chronological", "leave-last-out")
VALIDATION_FRACTION = 0.1


def test_events(
    protocol: str, users: np.ndarray, times: np.ndarray, fraction: float
) -> np.ndarray:
    """Boolean mask of the test events."""
    rows = np.arange(times.size)
    if protocol == "chronological":
        return latest(times, rows, fraction)
    return last_of_each_user(users, times, rows)


def validation_events(
    protocol: str, users: np.ndarray, times: np.ndarray, train: np.ndarray
) -> np.ndarray:
    """Boolean mask of the validation events, all among ``train``."""
    rows = np.flatnonzero(train)
    chosen = np.zeros_like(train)
    if protocol == "chronological":
        chosen[rows] = latest(times, rows, VALIDATION_FRACTION)
    else:
        chosen[rows] = last_of_each_user(users, times, rows)
    return chosen


def latest(times: np.ndarray, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Which of ``rows`` fall in the latest ``fraction`` of them in time."""
    index = tf.data.Dataset.from_tensor_slices({"row": rows, "timestamp": times[rows]})
    _, later = splits.chronological_split(index, 1.0 - fraction)
    chosen = np.fromiter(later.map(lambda x: x["row"]).as_numpy_iterator(), np.int64)
    return np.isin(rows, chosen)


def last_of_each_user(
    users: np.ndarray, times: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Which of ``rows`` is its user's latest (ties: the later in the file),
    for users with two or more of ``rows``; the rule of
    :func:`ctxfeatures.splits.leave_last_out`."""
    who, when = users[rows], times[rows]
    order = np.lexsort((rows, when, who))
    ordered = who[order]
    is_last = np.append(ordered[1:] != ordered[:-1], True)
    is_first = np.insert(ordered[1:] != ordered[:-1], 0, True)
    chosen = np.zeros(rows.size, bool)
    chosen[order[is_last & ~is_first]] = True
    return chosen
