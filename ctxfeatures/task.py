"""InBatchRetrieval: TFRS' retrieval task, scoring with
:func:`~ctxfeatures.losses.dot_scores`.

Its own module because it needs TensorFlow Recommenders, which the layers,
towers and losses do not (``import ctxfeatures`` works without it).
"""

from __future__ import annotations

import tensorflow as tf

from ctxfeatures._tfrs import tfrs
from ctxfeatures.retrieval_task import RetrievalTask


class InBatchRetrieval(tfrs.tasks.Retrieval):
    """``tfrs.tasks.Retrieval`` whose scores' gradient runs as faster products.

    TFRS scores with ``matmul(query, candidate, transpose_b=True)``, whose
    gradient for the candidates is ``matmul(grad, query, transpose_a=True)``:
    a product that reads the ``(batch, batch)`` score gradient transposed,
    which TensorFlow's CPU kernels run at half the speed of the same
    arithmetic written ``transpose(matmul(transpose(query), grad))`` (5.5 ms
    against 2.8 ms at 1024 x 1024 x 64). It scores with
    :func:`~ctxfeatures.losses.dot_scores`,
    whose gradient takes that second form. The scores are bitwise TFRS' own
    and the gradients equal to float rounding (tests/test_losses.py); what
    follows the scores is TFRS' steps, in TFRS' order
    (:class:`~ctxfeatures.retrieval_task.RetrievalTask`, held equal to
    ``tfrs.tasks.Retrieval``).

    :class:`~ctxfeatures.RetrievalModel` builds it with its loss, temperature and
    accidental-hit setting; it takes no metrics and no hard-negative mining.

    Args:
        loss: The loss of the corrected scores (an
            :class:`~ctxfeatures.InBatchSoftmax`).
        temperature: Optional divisor of the scores.
        remove_accidental_hits: Mask negatives that share the positive's id.
    """

    def __init__(
        self,
        loss: tf.keras.losses.Loss,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
    ) -> None:
        super().__init__(
            loss=loss,
            metrics=None,
            temperature=temperature,
            remove_accidental_hits=remove_accidental_hits,
        )
        # TFRS' steps in TFRS' order, in ops shared with Keras 3's task.
        self._task = RetrievalTask(loss, temperature, remove_accidental_hits)

    def call(
        self,
        query_embeddings: tf.Tensor,
        candidate_embeddings: tf.Tensor,
        sample_weight: tf.Tensor | None = None,
        candidate_sampling_probability: tf.Tensor | None = None,
        candidate_ids: tf.Tensor | None = None,
        compute_metrics: bool = False,
        compute_batch_metrics: bool = False,
    ) -> tf.Tensor:
        """The summed loss of one batch (TFRS' arguments; no metrics)."""
        if compute_metrics or compute_batch_metrics:
            raise ValueError(
                "InBatchRetrieval computes no metrics: pass "
                "compute_metrics=False and compute_batch_metrics=False."
            )
        return self._task(
            query_embeddings,
            candidate_embeddings,
            sample_weight=sample_weight,
            candidate_sampling_probability=candidate_sampling_probability,
            candidate_ids=candidate_ids,
        )
