"""Sampling probabilities for logQ correction: values, and their effect."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf


def test_probability_is_the_candidate_frequency():
    data = tf.data.Dataset.from_tensor_slices({"item": ["a", "a", "a", "b"]})
    values = [float(x["p"]) for x in cf.with_sampling_probability(data, "item", "p")]
    assert values == pytest.approx([0.75, 0.75, 0.75, 0.25])
    with pytest.raises(ValueError, match="empty dataset"):
        cf.with_sampling_probability(data.take(0), "item")


def popularity_model(logq: bool) -> tuple[np.ndarray, np.ndarray]:
    """Item scores learned on events with no user signal, Zipf item popularity."""
    tf.keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    items = 30
    weights = 1.0 / np.arange(1, items + 1)
    n = 6000
    events = {
        "user_id": np.array([f"u{u}" for u in rng.integers(0, 50, n)]),
        "item": np.array(
            [f"i{i}" for i in rng.choice(items, n, p=weights / weights.sum())]
        ),
    }
    data = cf.with_sampling_probability(
        tf.data.Dataset.from_tensor_slices(events), "item", "p"
    )
    catalogue = tf.data.Dataset.from_tensor_slices(
        {"item": [f"i{i}" for i in range(items)]}
    )
    model = cf.build_retrieval_model(
        {"user_id": cf.IdEmbedding(8)},
        {"item": cf.IdEmbedding(8)},
        catalogue,
        candidate_id="item",
        adapt_data=data,
        head_units=(8,),
        candidate_sampling_probability="p" if logq else None,
    )
    model.compile(tf.keras.optimizers.Adam(0.02))
    model.fit(data.batch(256), epochs=4, verbose=0)
    ids, vectors = model.candidate_embeddings()
    users = tf.constant([f"u{u}" for u in range(50)])
    scores = tf.matmul(model.query_tower({"user_id": users}), vectors, transpose_b=True)
    order = [int(i.decode()[1:]) for i in ids.numpy()]
    return scores.numpy().mean(axis=0), np.argsort(order)


def test_logq_correction_ranks_popular_items_higher():
    # In-batch negatives are drawn by popularity, so plain in-batch softmax
    # learns little of it; logQ correction restores it: popular items score
    # higher relative to rare ones.
    def popular_minus_rare(logq):
        mean_scores, position = popularity_model(logq)
        by_popularity = mean_scores[position]  # index = popularity rank
        return by_popularity[:5].mean() - by_popularity[-15:].mean()

    assert popular_minus_rare(True) > popular_minus_rare(False) + 0.5
