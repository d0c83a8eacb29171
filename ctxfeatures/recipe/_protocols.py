"""The recipe's evaluation protocols: which events are test and validation.

* ``chronological``: the latest fraction of the events in time is the test,
  the latest 10% of the rest the validation slice (one global clock).
* ``leave-last-out``: each user's last event is the test and the one before
  it the validation, the protocol of next-item papers; for logs whose times
  are only comparable within a user. Users with one event (two, for the
  validation) keep it in training.
* ``random``: a random fraction of the events (drawn with the seed) is the
  test, a random 10% of the rest the validation: the TFRS tutorial's split,
  where training holds events later than some test events (every event still
  sees only its user's earlier items).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctxfeatures import splits

PROTOCOLS = ("chronological", "leave-last-out", "random")
VALIDATION_FRACTION = 0.1


def test_events(
    protocol: str,
    users: np.ndarray,
    times: np.ndarray,
    fraction: float,
    seed: int = 42,
) -> np.ndarray:
    """Boolean mask of the test events."""
    return _chosen(protocol, users, times, np.arange(times.size), fraction, seed)


def validation_events(
    protocol: str,
    users: np.ndarray,
    times: np.ndarray,
    train: np.ndarray,
    seed: int = 42,
) -> np.ndarray:
    """Boolean mask of the validation events, all among ``train``."""
    rows = np.flatnonzero(train)
    chosen = np.zeros_like(train)
    # Another draw than the test's: seed + 1.
    fraction, seed = VALIDATION_FRACTION, seed + 1
    chosen[rows] = _chosen(protocol, users, times, rows, fraction, seed)
    return chosen


def _chosen(
    protocol: str,
    users: np.ndarray,
    times: np.ndarray,
    rows: np.ndarray,
    fraction: float,
    seed: int,
) -> np.ndarray:
    if protocol == "chronological":
        return latest(times, rows, fraction)
    if protocol == "random":
        return drawn(rows, fraction, seed)
    return last_of_each_user(users, times, rows)


def drawn(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which of ``rows`` fall in a random ``fraction`` of them, by the
    library's :func:`~ctxfeatures.splits.random_split` (the tutorial's)."""
    index = tf.data.Dataset.from_tensor_slices({"row": rows})
    size = rows.size
    test_size = int(round(fraction * size))
    if not 0 < test_size < size:  # too few rows to leave both sides some
        return np.zeros(size, bool)
    _, test = splits.random_split(index, size - test_size, seed=seed)
    chosen = np.fromiter(test.map(lambda x: x["row"]).as_numpy_iterator(), np.int64)
    return np.isin(rows, chosen)


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
