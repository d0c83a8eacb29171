"""MostPopular and EASE: closed forms by hand, the issue's MovieLens numbers."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from ctxfeatures import baselines, evaluation
from ctxfeatures.datasets import movielens
from ctxfeatures.history import add_history

EVENTS = {
    "user_id": np.array(["a", "a", "b", "b", "b", "c", "c", "d"]),
    "item": np.array(["x", "y", "x", "y", "z", "y", "z", "z"]),
    "timestamp": np.array([1, 2, 3, 4, 5, 6, 7, 8], np.int64),
}


def test_most_popular_counts_and_window():
    popular = baselines.MostPopular().fit(EVENTS, item="item")
    assert popular.top(3) == ["y", "z", "x"]  # 3, 3 (tie: catalogue order), 2
    recent = baselines.MostPopular(window_seconds=3).fit(EVENTS, item="item")
    # Only times 6, 7, 8 count: y once, z twice; x is never counted.
    assert recent.top(3) == ["z", "y", "x"]
    scores = popular.score({"item": tf.constant(["x", "y"])}).numpy()
    assert scores.shape == (2, 3) and len(set(scores[0].tolist())) == 3


def test_candidates_widen_the_catalogue_and_unseen_ones_rank_last():
    popular = baselines.MostPopular().fit(
        EVENTS, item="item", candidates=["w", "x", "y", "z", "x"]
    )
    assert popular.candidate_ids.numpy().astype(str).tolist() == ["w", "x", "y", "z"]
    assert popular.top(4)[-1] == "w"


def test_ease_matches_the_closed_form():
    ease = baselines.EASE(l2=2.0).fit(EVENTS, item="item")
    items = ease.candidate_ids.numpy().astype(str).tolist()
    users = sorted(set(EVENTS["user_id"]))
    x = np.zeros((len(users), len(items)))
    for u, i in zip(EVENTS["user_id"], EVENTS["item"]):
        x[users.index(u), items.index(i)] = 1
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(len(items)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0)
    history = tf.constant([["x", "", "x"], ["y", "z", ""]])
    expected = np.stack([b[0], b[1] + b[2]])
    got = ease.score({"history": history}).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_evaluated_ease_is_freed_with_its_matrix_when_dropped():
    # The traced ranking graph outlives the EASE: it must not hold it (and
    # so its matrix) through the function that reads the weights.
    ease = baselines.EASE(l2=2.0).fit(EVENTS, item="item")
    queries = tf.data.Dataset.from_tensor_slices(
        {"history": tf.constant([["x", "y"], ["y", ""]]), "item": ["z", "x"]}
    ).batch(2)
    result = evaluation.evaluate_top_k(ease, queries, ks=[1])
    assert 0.0 <= result["top_1"] <= 1.0
    alive = weakref.ref(ease)
    del ease
    gc.collect()
    assert alive() is None


def test_ease_breaks_ties_by_popularity():
    ease = baselines.EASE(l2=2.0).fit(EVENTS, item="item")
    scores = ease.score({"history": tf.constant([[""]])}).numpy()[0]
    order = ease.candidate_ids.numpy()[np.argsort(-scores)].astype(str).tolist()
    assert order == baselines.MostPopular().fit(EVENTS, item="item").top(3)


BASELINE_ERRORS = [
    (
        "ease-size",
        lambda: baselines.EASE(max_items=2).fit(EVENTS, item="item"),
        ValueError,
        "3 x 3 item-item matrix.*max_items=2",
    ),
    ("l2", lambda: baselines.EASE(l2=0), ValueError, "`l2` must be a number > 0"),
    (
        "window",
        lambda: baselines.MostPopular(window_seconds=-1),
        ValueError,
        "`window_seconds` must be > 0",
    ),
    (
        "missing-item",
        lambda: baselines.EASE().fit(EVENTS),
        ValueError,
        "item column 'movie_title' is missing",
    ),
    (
        "not-fitted",
        lambda: baselines.MostPopular().top(1),
        ValueError,
        "not fitted yet",
    ),
    (
        "missing-history",
        lambda: (
            baselines.EASE()
            .fit(EVENTS, item="item")
            .score({"item": tf.constant(["x"])})
        ),
        ValueError,
        "feature 'history'",
    ),
    (
        "history-dtype",
        lambda: (
            baselines.EASE()
            .fit(EVENTS, item="item")
            .score({"history": tf.constant([[1]], tf.int64)})
        ),
        TypeError,
        "holds int64",
    ),
]


@pytest.mark.parametrize(
    "call, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in BASELINE_ERRORS],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# The issue's own numpy run: ml-100k, next-event protocol (full histories
# known at request time, seen items excluded), EASE l2=250, seed 0.
EXPECTED = {
    "random": {"ease": (0.502, 0.106), "popular": (0.375, 0.081)},
    "chronological": {"ease": (0.564, 0.136), "popular": (0.359, 0.074)},
}


@pytest.mark.slow
@pytest.mark.parametrize("split", ["random", "chronological"])
def test_movielens_numbers_match_the_reference_run(ml100k, split):
    ratings, movies = movielens.load_arrays(str(ml100k))
    size = ratings["timestamp"].size
    if split == "random":
        train = np.zeros(size, bool)
        train[np.random.default_rng(0).permutation(size)[:80_000]] = True
    else:
        times = ratings["timestamp"]
        train = times <= np.sort(times)[int(np.ceil(size * 0.8)) - 1]
    # Test events first, so that the test part is a cheap take().
    order = np.concatenate([np.flatnonzero(~train), np.flatnonzero(train)])
    log = {key: value[order] for key, value in ratings.items()}
    events = add_history(tf.data.Dataset.from_tensor_slices(log), max_length=1000)
    test = events.take(int((~train).sum()))
    fitted = {key: value[train] for key, value in ratings.items()}
    for name, model in (
        ("ease", baselines.EASE(250.0)),
        ("popular", baselines.MostPopular()),
    ):
        model.fit(fitted, candidates=movies["movie_title"])
        got = evaluation.evaluate_top_k(model, test, ks=(10, 100), exclude="history")
        top100, top10 = EXPECTED[split][name]
        assert got["top_100"] == pytest.approx(top100, abs=0.005), (name, got)
        assert got["top_10"] == pytest.approx(top10, abs=0.005), (name, got)


@pytest.mark.slow
def test_ease_scores_a_batch_of_long_histories_in_batch_x_catalogue_memory():
    rng = np.random.default_rng(0)
    items = np.arange(2000)
    events = {
        "user_id": rng.integers(0, 300, 40_000).astype(str),
        "item": rng.choice(items, 40_000),
    }
    ease = baselines.EASE(l2=10.0).fit(events, item="item")
    # 1,024 requests with 3,000-long histories: 3.07M (request, item) pairs.
    # Gathering one weight row per pair would need 3.07M x 2,000 floats
    # (24 GB); the sparse product needs the (1,024 x 2,000) result only.
    history = rng.choice(items, (1024, 3000))
    history[:, :100] = -1  # padding
    scores = ease.score({"history": tf.constant(history)}).numpy()
    assert scores.shape == (1024, 2000)
    # One triangle of the symmetric matrix is kept: half of a dense one.
    assert ease._inverse._packed.nbytes == 4 * 2000 * 2001 // 2
    # Steck's closed form in numpy; the popularity tie-break is below 1e-6.
    ids = ease.candidate_ids.numpy().tolist()
    x = np.zeros((300, len(ids)))
    x[events["user_id"].astype(int), np.searchsorted(ids, events["item"])] = 1
    p = np.linalg.inv(x.T @ x + 10.0 * np.eye(len(ids)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0)
    for row in (0, 511, 1023):
        distinct = np.unique(np.searchsorted(ids, history[row][history[row] >= 0]))
        np.testing.assert_allclose(scores[row], b[distinct].sum(axis=0), atol=1e-4)
