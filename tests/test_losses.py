"""InBatchSoftmax and InBatchRetrieval against TFRS, by hand, and their effects."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures.losses import InBatchSoftmax, dot_scores

# TFRS needs Keras 2: under Keras 3 (TF_USE_LEGACY_KERAS=0) this module skips.
tfrs = pytest.importorskip(
    "tensorflow_recommenders",
    reason="TFRS, and so RetrievalModel, need Keras 2",
    exc_type=ImportError,
)

from ctxfeatures.task import InBatchRetrieval  # noqa: E402


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


def _task_loss_and_gradients(task, query, candidate, **kwargs):
    with tf.GradientTape() as tape:
        tape.watch([query, candidate])
        loss = task(
            query,
            candidate,
            compute_metrics=False,
            compute_batch_metrics=False,
            **kwargs,
        )
    return [loss, *tape.gradient(loss, [query, candidate])]


@pytest.mark.parametrize("temperature", [None, 0.2])
@pytest.mark.parametrize("logq", [False, True])
@pytest.mark.parametrize("hits", [False, True])
def test_in_batch_retrieval_equals_the_tfrs_task(temperature, logq, hits):
    rng = np.random.default_rng(3)
    batch = 131  # a shape whose gradient TFRS' form rounds differently
    query = tf.constant(rng.normal(size=(batch, 16)), tf.float32)
    candidate = tf.constant(rng.normal(size=(batch, 16)), tf.float32)
    kwargs = {"sample_weight": tf.constant(rng.uniform(0, 2, batch), tf.float32)}
    if logq:
        kwargs["candidate_sampling_probability"] = tf.constant(
            rng.uniform(1e-3, 0.1, batch), tf.float32
        )
    if hits:  # 20 distinct ids: many accidental hits to remove
        kwargs["candidate_ids"] = tf.constant(rng.integers(0, 20, batch))
    settings_ = {"temperature": temperature, "remove_accidental_hits": hits}
    ours = _task_loss_and_gradients(
        InBatchRetrieval(InBatchSoftmax(), **settings_), query, candidate, **kwargs
    )
    theirs = _task_loss_and_gradients(
        tfrs.tasks.Retrieval(loss=InBatchSoftmax(), **settings_),
        query,
        candidate,
        **kwargs,
    )
    assert float(ours[0]) == float(theirs[0])  # same scores, same steps after
    for mine, reference in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)


def _transposed_score_gradients(task, batch=64, dim=8):
    """MatMul ops of the task's gradient that read a (batch, batch) operand
    transposed: the slow form."""
    spec = tf.TensorSpec([batch, dim], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def gradients(query, candidate):
        return _task_loss_and_gradients(task, query, candidate)

    graph = gradients.get_concrete_function().graph
    flags = {"MatMul": "transpose_a", "BatchMatMulV2": "adj_x"}
    return [
        op.name
        for op in graph.get_operations()
        if op.type in flags
        and op.get_attr(flags[op.type])
        and op.inputs[0].shape.as_list() == [batch, batch]
    ]


def test_in_batch_retrieval_never_reads_the_score_gradient_transposed():
    assert _transposed_score_gradients(tfrs.tasks.Retrieval(loss=InBatchSoftmax()))
    assert not _transposed_score_gradients(InBatchRetrieval(InBatchSoftmax()))


def test_the_model_scores_its_batches_with_the_fast_task(synthetic, build_model):
    data, catalogue = synthetic(n=64)
    model = build_model(data, catalogue, temperature=0.5)
    assert not _transposed_score_gradients(model.task)


def test_dot_scores_hand_computed():
    query = tf.constant([[1.0, 2.0], [0.0, 1.0]])
    candidates = tf.constant([[3.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    expected = [[5.0, 3.0, 4.0], [1.0, 1.0, 2.0]]
    np.testing.assert_array_equal(dot_scores(query, candidates), expected)


def test_in_batch_retrieval_refuses_metrics():
    task = InBatchRetrieval(InBatchSoftmax())
    vectors = tf.ones([4, 2])
    with pytest.raises(ValueError, match="computes no metrics"):
        task(vectors, vectors, compute_metrics=True)
