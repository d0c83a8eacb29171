"""Train/test splits of interaction datasets, random and honest-in-time.

Time-feature layers (``NormalizedTimestamp``, ``TimestampBuckets``) must adapt
on the training part only: adapting on all data would let the test period's
range and statistics shape the training features, a quiet form of leakage that
inflates test accuracy and hides how the model extrapolates to later times.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import is_batched

__all__ = ["chronological_split", "leave_last_out", "random_split"]


def _check_data(data: Any, owner: str) -> int:
    """The number of examples of an unbatched, non-empty dataset."""
    if not isinstance(data, tf.data.Dataset):
        raise TypeError(
            f"{owner} takes a tf.data.Dataset; received {type(data).__name__}."
        )
    if isinstance(data.element_spec, dict) and is_batched(data):
        raise ValueError(
            f"{owner} received batched data, which it would split batch by "
            "batch. Split the unbatched events, then call `.batch()` on each part."
        )
    size = int(data.cardinality())
    if size < 0:
        size = int(data.reduce(0, lambda count, _: count + 1))
    if size == 0:
        raise ValueError(f"{owner} received an empty dataset.")
    return size


def _fraction(value: Any, name: str) -> float:
    """A fraction in (0, 1) of any real type (Python or numpy)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a number in (0, 1). Received: {name}={value!r}"
        )
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1). Received: {name}={value}")
    return value


def random_split(
    data: tf.data.Dataset,
    train_size: int | float = 0.8,
    *,
    seed: int = 42,
    buffer_size: int | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffles once with a fixed seed, then takes train and the rest as test.

    This is the TFRS tutorial's split: ``shuffle(100_000, seed=42,
    reshuffle_each_iteration=False)``, then ``take(80_000)`` / ``skip``. Events
    from every period land on both sides, so the model "learns from the
    future"; see :func:`chronological_split`.

    Args:
        data: An unbatched dataset.
        train_size: Number of training examples (any integer type), or a
            fraction in ``(0, 1)`` (any real type, e.g. ``np.float32(0.8)``).
        seed: Shuffle seed.
        buffer_size: Shuffle buffer (default: the whole dataset).

    Returns:
        ``(train, test)`` datasets that iterate in the same order every time.

    Raises:
        ValueError: empty or batched data, or a ``train_size`` that leaves a
            part empty.
        TypeError: a ``train_size`` that is not a number.
    """
    size = _check_data(data, "random_split()")
    count = _count(train_size, size)
    shuffled = data.shuffle(
        buffer_size or size, seed=seed, reshuffle_each_iteration=False
    )
    return shuffled.take(count), shuffled.skip(count)


def _count(train_size: Any, size: int) -> int:
    """Training examples: a count (any integer type) or a fraction (any real)."""
    if isinstance(train_size, numbers.Integral) and not isinstance(
        train_size, (bool, np.bool_)
    ):
        count = int(train_size)
    else:
        count = int(round(size * _fraction(train_size, "train_size")))
    if not 0 < count < size:
        raise ValueError(
            f"random_split(): train_size={train_size!r} leaves {count} of {size} "
            "examples for training: both parts must hold at least one. Pass a "
            f"count between 1 and {size - 1}, or another fraction."
        )
    return count


def _column(data: tf.data.Dataset, key: str, owner: str) -> np.ndarray:
    if not isinstance(data.element_spec, dict):
        raise TypeError(f"{owner} takes a tf.data.Dataset of feature dicts.")
    if key not in data.element_spec:
        raise ValueError(
            f"The dataset has no '{key}' feature. Keys: {sorted(data.element_spec)}."
        )
    values = [batch.numpy() for batch in data.map(lambda x: x[key]).batch(65_536)]
    return np.concatenate(values) if values else np.asarray([])


def _times(data: tf.data.Dataset, key: str, owner: str) -> np.ndarray:
    times = _column(data, key, owner)
    if times.dtype.kind not in "iu":
        # Text sorts "1000" before "999", floats hide NaN: either would put
        # later events in training.
        raise TypeError(
            f"{owner}: time column '{key}' holds {times.dtype}, but must hold "
            "integer seconds. Convert it first, e.g. "
            "`tf.strings.to_number(x, tf.int64)` for strings."
        )
    return times


def _select(data: tf.data.Dataset, mask: np.ndarray) -> tf.data.Dataset:
    keep = tf.constant(mask)
    selected = data.enumerate().filter(lambda i, _: tf.gather(keep, i))
    return selected.map(lambda _, x: x)


def chronological_split(
    data: tf.data.Dataset, train_fraction: float = 0.8, *, time_key: str = "timestamp"
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Splits at one global time cut: every test event is later than all training.

    The cut is the timestamp at the ``train_fraction`` quantile; events at the
    cut stay in training, so the training share can be slightly larger.

    Returns:
        ``(train, test)`` in the original order.

    Raises:
        ValueError: a fraction outside ``(0, 1)``, a missing time column,
            empty or batched data, or a cut that leaves the test set empty.
        TypeError: a time column that does not hold integers.
    """
    owner = "chronological_split()"
    train_fraction = _fraction(train_fraction, "train_fraction")
    _check_data(data, owner)
    times = _times(data, time_key, owner)
    ordered = np.sort(times)
    cut = ordered[max(math.ceil(len(ordered) * train_fraction) - 1, 0)]
    train = times <= cut
    if train.all():
        raise ValueError(
            "chronological_split: every event is at or before the cut; there is "
            "no later period to test on."
        )
    return _select(data, train), _select(data, ~train)


def leave_last_out(
    data: tf.data.Dataset, *, user_key: str = "user_id", time_key: str = "timestamp"
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Holds out each user's latest event (ties: the later one in the data).

    Users with a single event keep it in training.

    Returns:
        ``(train, test)`` in the original order.

    Raises:
        ValueError: a missing column, empty or batched data.
        TypeError: a time column that does not hold integers.
    """
    owner = "leave_last_out()"
    _check_data(data, owner)
    users = _column(data, user_key, owner)
    times = _times(data, time_key, owner)
    order = np.lexsort((np.arange(len(times)), times, users))
    last = np.zeros(len(times), bool)
    sorted_users = users[order]
    is_last = np.append(sorted_users[1:] != sorted_users[:-1], True)
    first = np.insert(sorted_users[1:] != sorted_users[:-1], 0, True)
    last[order[is_last & ~first]] = True
    return _select(data, ~last), _select(data, last)
