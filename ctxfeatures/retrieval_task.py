"""RetrievalTask: the in-batch retrieval loss without TensorFlow Recommenders.

The same steps as ``tfrs.tasks.Retrieval`` (and
:class:`~ctxfeatures.task.InBatchRetrieval`), in the same order, in
TensorFlow ops only, so that it runs under Keras 2 and Keras 3 alike: scores as
:func:`~ctxfeatures.losses.dot_scores`, divided by the temperature, the logQ
correction ``scores - log(clip(probability, 1e-6, 1))``, accidental hits
pushed to ``float32.min / 100`` and the summed softmax cross-entropy of
:class:`~ctxfeatures.InBatchSoftmax`. It is the task a Keras 3
``RetrievalModel`` will train with; tests hold it equal to TFRS' task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._checks import check_temperature
from ctxfeatures.losses import InBatchSoftmax, corrected_logits, dot_scores

__all__ = ["RetrievalTask"]

# TFRS' value (tensorflow_recommenders.layers.loss.MIN_FLOAT): low enough to
# remove a candidate from the softmax, high enough to stay finite in sums.
MIN_FLOAT = float(np.finfo(np.float32).min / 100.0)


class RetrievalTask:
    """In-batch softmax over a batch's query and candidate vectors.

    Query ``i``'s positive is candidate ``i``; every other candidate of the
    batch (and any extra rows of ``candidate``) is a negative. A pure
    function of the embeddings: it holds no variables.

    Args:
        loss: The loss of the corrected scores; by default
            :class:`~ctxfeatures.InBatchSoftmax` (summed over the batch).
        temperature: Optional divisor of the scores, > 0.
        remove_accidental_hits: Remove negatives whose candidate id equals
            the positive's (the ids are then required).

    Call arguments:
        query: ``(batch, dim)`` query vectors.
        candidate: ``(num_candidates, dim)`` candidate vectors, positives
            first.
        sample_weight: Optional ``(batch,)`` weight of each query.
        candidate_sampling_probability: Optional ``(num_candidates,)``
            probability of each candidate's being sampled (logQ).
        candidate_ids: ``(num_candidates,)`` ids, for accidental hits.

    Returns:
        The scalar loss of the batch.

    Example:
        >>> from ctxfeatures.retrieval_task import RetrievalTask
        >>> query = tf.constant([[1.0, 0.0], [0.0, 1.0]])
        >>> round(float(RetrievalTask()(query, query)), 4)  # 2 * log(1 + e^-1)
        0.6265
    """

    def __init__(
        self,
        loss: Any = None,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
    ) -> None:
        check_temperature(temperature)
        self.loss = loss if loss is not None else InBatchSoftmax()
        self.temperature = temperature
        self.remove_accidental_hits = remove_accidental_hits

    def __call__(
        self,
        query: tf.Tensor,
        candidate: tf.Tensor,
        sample_weight: tf.Tensor | None = None,
        candidate_sampling_probability: tf.Tensor | None = None,
        candidate_ids: tf.Tensor | None = None,
        compute_metrics: bool = False,
        compute_batch_metrics: bool = False,
    ) -> tf.Tensor:
        if compute_metrics or compute_batch_metrics:
            raise ValueError(
                "RetrievalTask computes no metrics: pass compute_metrics=False "
                "and compute_batch_metrics=False."
            )
        scores = dot_scores(query, candidate)
        labels = tf.eye(tf.shape(scores)[0], tf.shape(scores)[1])
        scores = corrected_logits(
            scores, self.temperature, candidate_sampling_probability
        )
        if self.remove_accidental_hits:
            if candidate_ids is None:
                raise ValueError(
                    "RetrievalTask: with remove_accidental_hits=True, "
                    "`candidate_ids` must be given."
                )
            scores = scores + MIN_FLOAT * _accidental_hits(labels, candidate_ids)
        return self.loss(y_true=labels, y_pred=scores, sample_weight=sample_weight)


def _accidental_hits(labels: tf.Tensor, candidate_ids: tf.Tensor) -> tf.Tensor:
    """1 where a negative shares its row's positive id, else 0."""
    positive_ids = tf.gather(candidate_ids, tf.math.argmax(labels, axis=1))
    same = tf.equal(positive_ids[:, None], candidate_ids[None, :])
    return tf.cast(same, labels.dtype) - labels
