"""InBatchSoftmax against TFRS' loss, by hand, and its effects."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures.losses import InBatchSoftmax


def tfrs_default_loss(scores, weights):
    labels = tf.eye(tf.shape(scores)[0], tf.shape(scores)[1])
    loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum")
    return loss(labels, scores, sample_weight=weights)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # TFRS loss on 1 x 1
@settings(max_examples=25, deadline=None)
@given(
    queries=st.integers(1, 12),
    extra=st.integers(0, 5),
    scale=st.floats(0.1, 60.0),
    seed=st.integers(0, 10_000),
)
def test_in_batch_softmax_equals_tfrs_loss_and_gradient(queries, extra, scale, seed):
    rng = np.random.default_rng(seed)
    scores = tf.constant(
        rng.normal(size=(queries, queries + extra)) * scale, tf.float32
    )
    weights = tf.constant(rng.uniform(0.0, 2.0, queries), tf.float32)
    results = []
    for loss_fn in (InBatchSoftmax(), tfrs_default_loss):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            if isinstance(loss_fn, InBatchSoftmax):
                value = loss_fn(tf.eye(queries, queries + extra), scores, weights)
            else:
                value = loss_fn(scores, weights)
        results.append((float(value), tape.gradient(value, scores).numpy()))
    (ours, our_grad), (theirs, their_grad) = results
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-3)
    np.testing.assert_allclose(our_grad, their_grad, rtol=1e-4, atol=1e-5)


def test_in_batch_softmax_hand_computed():
    # Two queries, two candidates: loss_i = log(e^a + e^b) - diagonal.
    scores = tf.constant([[1.0, 0.0], [2.0, 2.0]])
    expected = (np.log(np.e + 1.0) - 1.0) + (np.log(2 * np.e**2) - 2.0)
    assert float(InBatchSoftmax()(tf.eye(2), scores)) == pytest.approx(expected)


def test_a_sample_weight_of_two_doubles_that_examples_contribution(
    synthetic, build_model
):
    data, catalogue = synthetic(n=64)
    model = build_model(data, catalogue, sample_weight="w")
    batch = next(iter(data.batch(8)))

    def loss(weights):
        return float(model.compute_loss({**batch, "w": tf.constant(weights)}))

    ones = [1.0] * 8
    only_first = [1.0] + [0.0] * 7
    doubled = [2.0] + [1.0] * 7
    # The loss is a weighted sum over examples: w=2 adds the first one's once more.
    assert loss(doubled) - loss(ones) == pytest.approx(loss(only_first), rel=1e-4)
    assert loss(only_first) > 0
