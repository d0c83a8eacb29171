"""The in-batch softmax retrieval loss: :class:`InBatchSoftmax`, without a label
matrix, and :func:`dot_scores`, the scores with a faster gradient.

Neither needs TensorFlow Recommenders; the task that uses both is in
:mod:`ctxfeatures.task`."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class InBatchSoftmax(tf.keras.losses.Loss):
    """The TFRS retrieval loss, without materialising its label matrix.

    ``tfrs.tasks.Retrieval`` scores every query against every candidate of the
    batch and passes ``labels = tf.eye(num_queries, num_candidates)``: query
    ``i``'s positive is column ``i``. Softmax cross-entropy against those
    labels is ``logsumexp(scores_i) - scores_ii``, which this loss computes
    directly. The values equal TFRS' default
    ``CategoricalCrossentropy(from_logits=True, reduction=SUM)``; the step is
    faster because the dense label matrix is never built or read. Temperature,
    logQ correction and accidental-hit removal are applied by the task to the
    scores before this loss sees them, as with the default.

    :class:`RetrievalModel` uses it; it also drops into a plain TFRS model:
    ``tfrs.tasks.Retrieval(loss=ctxfeatures.InBatchSoftmax())``. It assumes
    those identity labels, so do not combine it with TFRS' hard-negative
    mining, which reorders them.

    Args:
        name: Name of the loss.

    Example:
        >>> scores = tf.constant([[1.0, 0.0], [2.0, 2.0]])
        >>> round(float(ctxfeatures.InBatchSoftmax()(tf.eye(2), scores)), 4)
        1.0064
    """

    def __init__(self, name: str = "in_batch_softmax") -> None:
        # "sum": Keras 2's Reduction.SUM, and the only spelling Keras 3 takes.
        super().__init__(reduction="sum", name=name)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @tf.autograph.experimental.do_not_convert
    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        # y_true is the identity by construction; reading it would cost a
        # (batch, batch) tensor per step.
        del y_true
        return _softmax_cross_entropy_on_diagonal(y_pred)


@tf.custom_gradient
def _softmax_cross_entropy_on_diagonal(scores: tf.Tensor) -> Any:
    """``logsumexp(scores_i) - scores_ii`` per row, with a hand-written gradient.

    The gradient is ``softmax(scores) - I``. Written out, it reuses the
    forward pass's exponentials and edits the diagonal in place, where
    autodiff would recompute them and add a dense matrix for the diagonal
    (the measured effect is in docs/performance.rst).
    """
    peak = tf.stop_gradient(tf.reduce_max(scores, axis=1, keepdims=True))
    exps = tf.exp(scores - peak)
    sums = tf.reduce_sum(exps, axis=1, keepdims=True)
    loss = tf.squeeze(tf.math.log(sums) + peak, 1) - tf.linalg.diag_part(scores)

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        probabilities = exps * (upstream[:, None] / sums)
        diagonal = tf.linalg.diag_part(probabilities) - upstream
        return tf.linalg.set_diag(probabilities, diagonal)

    return loss, grad


def dot_scores(query: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """``(queries, candidates)`` dot products, with a fast gradient on CPU.

    ``matmul(query, transpose(candidates))``, not ``transpose_b=True``: the
    values are the same, but TensorFlow then differentiates the candidates
    as ``transpose(matmul(transpose(query), grad))``, which reads the score
    gradient untransposed, instead of ``matmul(grad, query,
    transpose_a=True)``, which its CPU kernels run at half the speed.
    """
    return tf.linalg.matmul(query, tf.transpose(candidates))


# The floor under a sampling probability before its log (log(0) is -inf).
MIN_PROBABILITY = 1e-6


def corrected_logits(
    scores: tf.Tensor, temperature: float | None, probability: Any = None
) -> tf.Tensor:
    """``scores / temperature - log(clip(probability, 1e-6, 1))``.

    The logits of a sampled softmax: the temperature divides the similarities
    only, and the logQ correction (TFRS') is subtracted after it, so that it
    stays one log-count whatever the temperature.

    Args:
        scores: ``(queries, candidates)`` similarities.
        temperature: Optional divisor of the similarities.
        probability: Optional ``(candidates,)`` sampling probability of each
            column.

    Returns:
        The ``(queries, candidates)`` logits.
    """
    if temperature is not None:
        scores = scores / temperature
    if probability is None:
        return scores
    probability = tf.cast(probability, scores.dtype)
    return scores - tf.math.log(tf.clip_by_value(probability, MIN_PROBABILITY, 1.0))
