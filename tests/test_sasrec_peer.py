"""The SASRec+ peer of benchmarks/: causal, trainable, ranked by our evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import sasrec
from ctxfeatures import evaluation

ITEMS = 30


def cyclic_log(users: int = 200, length: int = 10, seed: int = 0):
    """Each user walks the catalogue in order from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(ITEMS, size=users)
    steps = np.arange(length)
    items = (starts[:, None] + steps[None]) % ITEMS + 1
    users_column = np.repeat(np.arange(users), length)
    return users_column, items.ravel(), np.tile(steps, users)


def test_training_sequences_are_each_users_latest_events_left_padded():
    users = np.array([1, 1, 1, 2, 2, 3])
    items = np.array([5, 6, 7, 8, 9, 4])
    times = np.array([3, 1, 2, 1, 2, 1])
    rows = sasrec.training_sequences(users, items, times, length=3)
    # User 1 in time order (6, 7, 5); user 3 has one event: nothing to predict.
    np.testing.assert_array_equal(rows, [[0, 6, 7, 5], [0, 0, 8, 9]])
    np.testing.assert_array_equal(
        sasrec.training_sequences(users, items, times, length=1), [[7, 5], [8, 9]]
    )


def test_right_aligned_keeps_the_latest_items_in_order():
    indices = tf.constant([[0, 3, 4, 5], [7, 8, 0, 0], [0, 0, 0, 0]])
    aligned = sasrec.right_aligned(indices, 3).numpy()
    np.testing.assert_array_equal(aligned, [[3, 4, 5], [0, 7, 8], [0, 0, 0]])


def test_a_state_sees_only_earlier_items():
    tf.keras.utils.set_random_seed(1)
    model = sasrec.SASRec(ITEMS, sasrec.Settings(max_length=6, dim=8))
    first = tf.constant([[0, 1, 2, 3, 4, 5]])
    later_changed = tf.constant([[0, 1, 2, 3, 9, 7]])
    a, b = model(first).numpy(), model(later_changed).numpy()
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-3


def test_learns_the_next_item_and_is_ranked_by_the_evaluator():
    users, items, times = cyclic_log()
    settings = sasrec.Settings(max_length=12, dim=16, batch_size=64)
    tf.keras.utils.set_random_seed(0)
    model = sasrec.SASRec(ITEMS, settings)
    sasrec.fit_epochs(model, sasrec.training_sequences(users, items, times, 12), 25, 0)
    catalogue = np.asarray([f"i{k}" for k in range(1, ITEMS + 1)])
    scorer = sasrec.SASRecScorer(model, catalogue, "item")
    # Histories padded at either end; the true next item follows the last.
    history = np.array([["", "i3", "i4", "i5"], ["i27", "i28", "", ""]] * 8)
    data = {"history": history, "item": np.array(["i6", "i29"] * 8)}
    result = evaluation.evaluate_top_k(scorer, data, ks=(1,), exclude="history")
    assert result["top_1"] == pytest.approx(1.0)
    # An untrained model does not: the result comes from training.
    untrained = sasrec.SASRecScorer(sasrec.SASRec(ITEMS, settings), catalogue, "item")
    assert evaluation.evaluate_top_k(untrained, data, ks=(1,))["top_1"] < 0.5
