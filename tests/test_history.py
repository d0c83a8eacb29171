"""add_history: the leak rule, both input kinds, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures.history import NO_PREVIOUS_EVENT, add_history

LOG = {
    "user_id": np.array(["a", "a", "b", "a", "a", "b"]),
    "movie_title": np.array(["x", "y", "x", "z", "w", "y"]),
    "timestamp": np.array([10, 20, 20, 20, 35, 21], np.int64),
}


def test_hand_computed_fixture():
    out = add_history(LOG, max_length=2)
    # a: x@10, y@20, z@20, w@35 -> y and z share a second: neither sees the other.
    assert out["history"].tolist() == [
        ["", ""],
        ["", "x"],
        ["", ""],
        ["", "x"],
        ["y", "z"],
        ["", "x"],
    ]
    assert out["seconds_since_last"].tolist() == [-1, 10, -1, 10, 15, 1]
    # The input columns are kept, in the original order.
    assert out["movie_title"].tolist() == LOG["movie_title"].tolist()


def test_dataset_gives_the_same_histories_and_batches_after_map_and_filter():
    columns = add_history(LOG, max_length=3)
    dataset = add_history(tf.data.Dataset.from_tensor_slices(LOG), max_length=3)
    assert dataset.element_spec["history"].shape == (3,)
    rows = list(dataset.as_numpy_iterator())
    assert [r["history"].astype(str).tolist() for r in rows] == [
        h.tolist() for h in columns["history"]
    ]
    assert [int(r["seconds_since_last"]) for r in rows] == columns[
        "seconds_since_last"
    ].tolist()
    # Fixed shapes survive any map/filter/cache and batch with plain batch().
    mapped = dataset.map(lambda x: {**x, "one": 1}).filter(lambda x: x["one"] > 0)
    batch = next(iter(mapped.cache().batch(4)))
    assert batch["history"].shape == (4, 3)


def test_dataset_keeps_its_known_length():
    # Keras 3 warns "ran out of data" at every epoch of a dataset of unknown
    # length; the output has one element per event, so its length is known.
    events = tf.data.Dataset.from_tensor_slices(LOG)
    dataset = add_history(events, max_length=2)
    assert int(dataset.cardinality()) == len(LOG["timestamp"])
    assert int(dataset.skip(2).cardinality()) == len(LOG["timestamp"]) - 2


def test_dataset_gathers_long_histories_in_small_batches(monkeypatch):
    # Gather batches hold about _GATHER_CELLS history cells, so a long
    # max_length reads few events per batch (here 2): the same histories.
    from ctxfeatures import history

    monkeypatch.setattr(history, "_GATHER_CELLS", 8)
    sizes, batch = [], tf.data.Dataset.batch

    def spy(self, size, *args, **kwargs):
        sizes.append(size)
        return batch(self, size, *args, **kwargs)

    columns = add_history(LOG, max_length=4)
    events = tf.data.Dataset.from_tensor_slices(LOG)
    monkeypatch.setattr(tf.data.Dataset, "batch", spy)
    dataset = add_history(events, max_length=4)
    assert sizes[-1] == 2  # the gather batch (earlier ones read the columns)
    rows = [r["history"].astype(str).tolist() for r in dataset.as_numpy_iterator()]
    assert rows == columns["history"].tolist()


def test_integer_items_pad_with_minus_one():
    log = {"u": np.array([1, 1]), "i": np.array([5, 6]), "t": np.array([1, 2])}
    out = add_history(log, user="u", item="i", time="t", max_length=2)
    assert out["history"].tolist() == [[-1, -1], [-1, 5]]
    data = add_history(
        tf.data.Dataset.from_tensor_slices(log), user="u", item="i", time="t"
    )
    assert data.element_spec["history"].dtype == tf.int64


def brute_force(users, items, times, max_length):
    histories, gaps = [], []
    for u, t in zip(users, times):
        earlier = sorted(
            (tt, k)
            for k, (uu, tt) in enumerate(zip(users, times))
            if uu == u and tt < t
        )
        # Same-time events of one user keep their log order among themselves.
        seq = [items[k] for _, k in earlier][-max_length:]
        histories.append(seq)
        gaps.append(t - earlier[-1][0] if earlier else NO_PREVIOUS_EVENT)
    return histories, gaps


events = st.lists(
    st.tuples(
        st.integers(0, 3),  # user
        st.integers(0, 6),  # item
        st.integers(0, 12),  # time: small, so that ties are common
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(events, st.integers(1, 6))
def test_history_is_exactly_the_strictly_earlier_events(rows, max_length):
    users = np.array([f"u{u}" for u, _, _ in rows])
    items = np.array([f"i{i}" for _, i, _ in rows])
    times = np.array([t for _, _, t in rows], np.int64)
    out = add_history(
        {"user_id": users, "movie_title": items, "timestamp": times},
        max_length=max_length,
    )
    expected, gaps = brute_force(users, items, times, max_length)
    for row, want in zip(out["history"], expected):
        got = [x for x in row.tolist() if x != ""]
        # Earlier events at one second keep their log order.
        assert got == want and len(got) <= max_length
    assert out["seconds_since_last"].tolist() == gaps


@settings(max_examples=40, deadline=None)
@given(events)
def test_no_event_sees_itself_or_the_same_second_or_later(rows):
    users = np.array([u for u, _, _ in rows], np.int64)
    # Unique item per event: the history names exactly which events it holds.
    items = np.arange(len(rows), dtype=np.int64)
    times = np.array([t for _, _, t in rows], np.int64)
    out = add_history(
        {"user_id": users, "movie_title": items, "timestamp": times}, max_length=50
    )
    for k, row in enumerate(out["history"]):
        seen = row[row >= 0]
        assert k not in seen
        assert (users[seen] == users[k]).all()
        assert (times[seen] < times[k]).all()
        # Most recent last.
        assert (np.diff(times[seen]) >= 0).all()


@pytest.mark.parametrize(
    "events, kwargs, error, match",
    [
        (LOG, {"max_length": 0}, ValueError, "`max_length` must be >= 1"),
        (LOG, {"user": "uid"}, ValueError, "user column 'uid' is missing"),
        (LOG, {"item": "title"}, ValueError, "item column 'title' is missing"),
        (LOG, {"time": "ts"}, ValueError, "time column 'ts' is missing"),
        (
            {**LOG, "timestamp": LOG["timestamp"] + 0.5},
            {},
            ValueError,
            "whole seconds",
        ),
        (
            {**LOG, "timestamp": -LOG["timestamp"]},
            {},
            ValueError,
            "negative values",
        ),
        (
            {**LOG, "timestamp": LOG["timestamp"].astype(str)},
            {},
            TypeError,
            "integer Unix seconds",
        ),
        (
            {**LOG, "movie_title": np.array(["x", "", "x", "z", "w", "y"])},
            {},
            ValueError,
            "which pads histories",
        ),
        (
            {**LOG, "movie_title": np.array([1.5] * 6)},
            {},
            TypeError,
            "string or integer ids",
        ),
        ({**LOG, "user_id": LOG["user_id"][:3]}, {}, ValueError, "equal lengths"),
        ([1, 2, 3], {}, TypeError, "received list"),
        ({k: v[:0] for k, v in LOG.items()}, {}, ValueError, "log is empty"),
    ],
)
def test_errors_name_the_column_and_the_fix(events, kwargs, error, match):
    with pytest.raises(error, match=match):
        add_history(events, **kwargs)


DATASET_ERRORS = [
    ("batched", lambda d: add_history(d.batch(2)), TypeError, "unbatched dataset"),
    (
        "missing-time",
        lambda d: add_history(d, time="when"),
        ValueError,
        "time column 'when' is missing",
    ),
    (
        "not-utf8",
        lambda d: add_history(d.map(lambda x: {**x, "movie_title": b"\xff"})),
        ValueError,
        "not UTF-8",
    ),
]


@pytest.mark.parametrize(
    "call, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in DATASET_ERRORS],
)
def test_dataset_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(tf.data.Dataset.from_tensor_slices(LOG))
