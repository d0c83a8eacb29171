"""Splits: numeric fractions of any type, no leak in time, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures import splits

EVENTS = {
    "user_id": np.array(["a", "a", "b", "b", "c"]),
    "timestamp": np.array([5, 1, 3, 9, 7], np.int64),
}


def events(**columns) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({**EVENTS, **columns})


def count(data: tf.data.Dataset) -> int:
    return sum(1 for _ in data)


@pytest.mark.parametrize(
    "train_size",
    [0.6, np.float32(0.6), np.float64(0.6), 3, np.int32(3), np.int64(3)],
    ids=["float", "float32", "float64", "int", "int32", "int64"],
)
def test_random_split_takes_any_numeric_type(train_size):
    train, test = splits.random_split(events(), train_size)
    assert (count(train), count(test)) == (3, 2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=2, max_size=40), st.floats(0.1, 0.9))
def test_chronological_split_never_puts_a_later_event_in_training(times, fraction):
    data = tf.data.Dataset.from_tensor_slices({"timestamp": np.array(times, np.int64)})
    if len(set(times)) == 1:
        return
    try:
        train, test = splits.chronological_split(data, fraction)
    except ValueError as error:  # every event at or before the cut
        assert "no later period" in str(error)
        return
    latest = max(int(x["timestamp"]) for x in train)
    assert all(int(x["timestamp"]) > latest for x in test)
    assert count(train) + count(test) == len(times)


SPLIT_ERRORS = [
    (
        "no-later-period",
        lambda: splits.chronological_split(events(timestamp=np.ones(5, np.int64)), 0.5),
        ValueError,
        "no later period",
    ),
    (
        "fraction-above-one",
        lambda: splits.random_split(events(), 1.5),
        ValueError,
        "`train_size` must be in \\(0, 1\\)",
    ),
    (
        "fraction-rounds-to-all",
        lambda: splits.random_split(events(), 0.95),
        ValueError,
        "leaves 5 of 5 examples for training",
    ),
    (
        "fraction-rounds-to-none",
        lambda: splits.random_split(events(), 0.05),
        ValueError,
        "leaves 0 of 5",
    ),
    (
        "count-too-large",
        lambda: splits.random_split(events(), 5),
        ValueError,
        "between 1 and 4",
    ),
    (
        "bool",
        lambda: splits.random_split(events(), True),
        TypeError,
        "must be a number",
    ),
    (
        "string",
        lambda: splits.random_split(events(), "0.8"),
        TypeError,
        "must be a number",
    ),
    (
        "chrono-fraction",
        lambda: splits.chronological_split(events(), 1.0),
        ValueError,
        "`train_fraction` must be in",
    ),
    (
        "empty",
        lambda: splits.random_split(events().take(0), 0.8),
        ValueError,
        "empty dataset",
    ),
    (
        "empty-chrono",
        lambda: splits.chronological_split(events().take(0)),
        ValueError,
        "empty dataset",
    ),
    (
        "batched",
        lambda: splits.random_split(events().batch(2), 0.5),
        ValueError,
        "batched data.*Split the unbatched events",
    ),
    (
        "batched-chrono",
        lambda: splits.chronological_split(events().batch(2)),
        ValueError,
        "batched data",
    ),
    (
        "string-times",
        lambda: splits.chronological_split(
            events(timestamp=EVENTS["timestamp"].astype(str))
        ),
        TypeError,
        "time column 'timestamp' holds .*integer seconds.*to_number",
    ),
    (
        "float-times",
        lambda: splits.leave_last_out(
            events(timestamp=np.array([1.0, 2, 3, 4, np.nan]))
        ),
        TypeError,
        "integer seconds",
    ),
    (
        "no-user",
        lambda: splits.leave_last_out(
            events().map(lambda x: {"timestamp": x["timestamp"]})
        ),
        ValueError,
        "no 'user_id'",
    ),
    (
        "not-a-dataset",
        lambda: splits.random_split(EVENTS, 0.5),
        TypeError,
        "takes a tf.data.Dataset",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*case[1:], id=case[0]) for case in SPLIT_ERRORS]
)
def test_split_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
