"""Train/test splits of interaction datasets, random and honest-in-time.

Time-feature layers (``NormalizedTimestamp``, ``TimestampBuckets``) must adapt
on the training part only: adapting on all data would let the test period's
range and statistics shape the training features, a quiet form of leakage that
inflates test accuracy and hides how the model extrapolates to later times.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = ["chronological_split", "leave_last_out", "random_split"]


def _size(data: tf.data.Dataset) -> int:
    size = int(data.cardinality())
    if size < 0:
        size = int(data.reduce(0, lambda count, _: count + 1))
    return size


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
        train_size: Number of training examples, or a fraction in ``(0, 1)``.
        seed: Shuffle seed.
        buffer_size: Shuffle buffer (default: the whole dataset).

    Returns:
        ``(train, test)`` datasets that iterate in the same order every time.
    """
    size = _size(data)
    count = _count(train_size, size)
    shuffled = data.shuffle(
        buffer_size or size, seed=seed, reshuffle_each_iteration=False
    )
    return shuffled.take(count), shuffled.skip(count)


def _count(train_size: int | float, size: int) -> int:
    if isinstance(train_size, float):
        if not 0.0 < train_size < 1.0:
            raise ValueError(
                f"`train_size` as a fraction must be in (0, 1). Received: {train_size}"
            )
        return int(round(size * train_size))
    if not 0 < train_size < size:
        raise ValueError(
            f"`train_size` must be between 1 and {size - 1}. Received: {train_size}"
        )
    return int(train_size)


def _column(data: tf.data.Dataset, key: str) -> np.ndarray:
    if key not in data.element_spec:
        raise ValueError(
            f"The dataset has no '{key}' feature. Keys: {sorted(data.element_spec)}."
        )
    values = [batch.numpy() for batch in data.map(lambda x: x[key]).batch(65_536)]
    return np.concatenate(values) if values else np.asarray([])


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
        ValueError: a fraction outside ``(0, 1)``, a missing time column, or a
            cut that leaves the test set empty.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(
            f"`train_fraction` must be in (0, 1). Received: {train_fraction}"
        )
    times = _column(data, time_key)
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
    """
    users = _column(data, user_key)
    times = _column(data, time_key)
    order = np.lexsort((np.arange(len(times)), times, users))
    last = np.zeros(len(times), bool)
    sorted_users = users[order]
    is_last = np.append(sorted_users[1:] != sorted_users[:-1], True)
    first = np.insert(sorted_users[1:] != sorted_users[:-1], 0, True)
    last[order[is_last & ~first]] = True
    return _select(data, ~last), _select(data, last)
