"""to_sequences: every event a target once, histories as add_history gives them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures import history, sequences


def test_hand_computed_rows_with_a_shared_second():
    log = {
        "user_id": np.array(["a", "a", "b", "a", "a", "a"]),
        "movie_title": np.array(["x", "y", "x", "z", "w", "v"]),
        "timestamp": np.array([10, 20, 20, 30, 30, 40]),
    }
    rows = sequences.to_sequences(log, length=2, context=2)
    # a: x@10 y@20 z@30 w@30 v@40, runs (w, v), (y, z), (x). The run (w, v)
    # starts in second 30: its context counts back from z (which w cannot
    # see) to x and y, one position wider than context + length.
    assert rows["movie_title"].tolist() == [
        ["x", "y", "z", "w", "v"],
        ["", "", "x", "y", "z"],
        ["", "", "", "", "x"],
        ["", "", "", "", "x"],
    ]
    assert rows["is_target"].tolist() == [
        [False, False, False, True, True],
        [False, False, False, True, True],
        [False, False, False, False, True],
        [False, False, False, False, True],
    ]
    assert rows["seconds_since_last"][0].tolist() == [-1, 10, 10, 10, 10]
    assert rows["user_id"][3].tolist() == ["", "", "", "", "b"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 6)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 4),
    st.integers(0, 3),
)
def test_every_event_is_one_target_and_sees_its_history(events, length, context):
    users, items, times = (np.asarray(column) for column in zip(*events))
    log = {
        "user_id": users.astype(str),
        "item": items + 1,
        "timestamp": times.astype(np.int64),
        "row": np.arange(users.size),
    }
    rows = sequences.to_sequences(log, item="item", length=length, context=context)
    targets = rows["row"][rows["is_target"]]
    assert sorted(targets.tolist()) == list(range(users.size))
    # A target's visible items (strictly earlier, in its row), the last
    # `context` of them, are add_history's with max_length=context.
    expected = history.add_history(log, item="item", max_length=max(context, 1))
    for r, t in zip(*np.nonzero(rows["is_target"])):
        event = rows["row"][r, t]
        row_times, row_items = rows["timestamp"][r], rows["item"][r]
        seen = row_items[(row_items > 0) & (row_times < row_times[t])]
        want = expected["history"][event]
        want = want[want > 0]
        if context:
            assert seen[-context:].tolist() == want.tolist()
        assert rows["seconds_since_last"][r, t] == expected["seconds_since_last"][event]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"length": 0}, ValueError, "`length` must be"),
        ({"context": -1}, ValueError, "`context` must be an integer >= 0"),
        ({"item": "title"}, ValueError, "item column 'title' is missing"),
    ],
)
def test_errors_name_the_argument(kwargs, error, match):
    log = {"user_id": ["a"], "movie_title": ["x"], "timestamp": [1]}
    with pytest.raises(error, match=match):
        sequences.to_sequences(log, **kwargs)


def test_a_dataset_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="mapping of numpy columns"):
        sequences.to_sequences([1, 2, 3])
