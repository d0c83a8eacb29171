"""RetrievalTask (no TFRS): hand-computed, and equal to TFRS' task under Keras 2."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures.retrieval_task import RetrievalTask


def softmax_loss(scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    losses = -np.diag(log_softmax)
    return float((losses if weights is None else losses * weights).sum())


def test_hand_computed_with_every_correction():
    query = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    candidate = np.array([[1.0, 1.0], [0.0, 1.0], [2.0, 0.0]], np.float32)
    probability = np.array([0.5, 0.25, 0.25], np.float32)
    ids = tf.constant(["x", "y", "x"])
    weights = np.array([1.0, 2.0, 0.5], np.float32)
    task = RetrievalTask(temperature=0.5, remove_accidental_hits=True)
    got = task(query, candidate, weights, probability, ids)
    scores = query @ candidate.T / 0.5 - np.log(probability)[None, :]
    scores[0, 2] = scores[2, 0] = np.finfo(np.float32).min / 100  # same id "x"
    assert float(got) == pytest.approx(softmax_loss(scores, weights), rel=1e-5)
    # Each correction changes the loss: none of them is ignored.
    for other in (
        RetrievalTask(temperature=0.5, remove_accidental_hits=True)(
            query, candidate, weights, None, ids
        ),
        RetrievalTask(remove_accidental_hits=True)(
            query, candidate, weights, probability, ids
        ),
        RetrievalTask(temperature=0.5)(query, candidate, weights, probability),
        task(query, candidate, None, probability, ids),
    ):
        assert abs(float(other) - float(got)) > 1e-3


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="`candidate_ids` must be given"):
        RetrievalTask(remove_accidental_hits=True)(tf.eye(2), tf.eye(2))
    with pytest.raises(ValueError, match="computes no metrics"):
        RetrievalTask()(tf.eye(2), tf.eye(2), compute_metrics=True)
    with pytest.raises(ValueError, match="`temperature` must be"):
        RetrievalTask(temperature=0.0)


@pytest.mark.keras2
@pytest.mark.parametrize("temperature", [None, 0.2])
@pytest.mark.parametrize("logq", [False, True])
@pytest.mark.parametrize("hits", [False, True])
def test_equals_the_tfrs_task(temperature, logq, hits):
    # TFRS' own task, and the library's Keras 2 task that delegates to ours.
    from ctxfeatures._tfrs import tfrs  # Keras 2 only
    from ctxfeatures.task import InBatchRetrieval

    rng = np.random.default_rng(0)
    query = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    candidate = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    kwargs = dict(
        sample_weight=tf.constant(rng.uniform(0.5, 2.0, 6), tf.float32),
        candidate_sampling_probability=(
            tf.constant(rng.uniform(0.01, 1.0, 6), tf.float32) if logq else None
        ),
        candidate_ids=tf.constant(["a", "b", "a", "c", "b", "d"]),
    )
    settings = dict(temperature=temperature, remove_accidental_hits=hits)
    ours = RetrievalTask(**settings)(query, candidate, **kwargs)
    tfrs_task = tfrs.tasks.Retrieval(loss=cf.InBatchSoftmax(), **settings)
    theirs = tfrs_task(query, candidate, compute_metrics=False, **kwargs)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-6)
    library = InBatchRetrieval(cf.InBatchSoftmax(), **settings)
    assert float(library(query, candidate, **kwargs)) == float(ours)
