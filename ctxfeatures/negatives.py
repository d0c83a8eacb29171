"""Where a retrieval model's negatives come from: the batch, the catalogue, or both.

A two-tower model learns by scoring each query's true candidate above other
candidates, its *negatives*. :class:`~ctxfeatures.RetrievalModel` takes one of:

* :class:`InBatchNegatives` (``"in-batch"``, the default and the TFRS
  tutorial's): the other examples' candidates in the same batch. Cheap, but
  popular items are over-sampled (hence the logQ correction) and rare items
  are almost never seen as negatives.
* :class:`CatalogueNegatives` (``"catalogue"``): a full softmax over every
  candidate of the catalogue at every step. Exact, no sampling and so no
  correction; the step embeds the whole catalogue, so it suits catalogues of
  up to some 10^5 items.
* :class:`MixedNegatives`: in-batch negatives plus ``num_sampled``
  candidates drawn uniformly from the catalogue at every step (Yang et al.,
  "Mixed Negative Sampling", WWW 2020). With a sampling probability, each
  kind of negative gets its own logQ correction.

In every form a negative that is the query's own true candidate (an
"accidental hit") is masked, and the loss is the sum over the batch of
``logsumexp(logits) - positive logit``, weighted by the sample weights.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ctxfeatures.catalogue import Catalogue
from ctxfeatures.losses import corrected_logits, dot_scores

__all__ = [
    "CatalogueNegatives",
    "InBatchNegatives",
    "MixedNegatives",
    "Negatives",
    "gather_replicas",
    "get_negatives",
    "softmax_loss",
]


class Negatives:
    """Base class: computes the retrieval loss of one batch.

    Subclasses implement :meth:`loss`. ``needs_ids`` says whether the loss
    reads each example's candidate id (the model then keeps that column in
    prepared batches).
    """

    needs_ids = True

    def check(self, model: Any) -> None:
        """Rejects model settings this kind of negative cannot honour."""

    def loss(
        self,
        model: Any,
        query: tf.Tensor,
        candidate: tf.Tensor,
        *,
        ids: tf.Tensor | None,
        weight: tf.Tensor | None,
        probability: tf.Tensor | None,
    ) -> tf.Tensor:
        """The summed loss of one batch of query and true-candidate vectors."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InBatchNegatives(Negatives):
    """The other examples' candidates in the batch (TFRS' in-batch softmax).

    Computed by the model's ``tfrs.tasks.Retrieval`` task (an
    :class:`~ctxfeatures.task.InBatchRetrieval`), with its
    temperature, logQ correction and (with ``remove_accidental_hits``)
    accidental-hit removal. Under several replicas the candidates are
    gathered, so each query sees the whole global batch.
    """

    needs_ids = False

    def loss(self, model, query, candidate, *, ids, weight, probability):
        candidate, probability, ids = gather_replicas(candidate, probability, ids)
        return model.task(
            query,
            candidate,
            sample_weight=weight,
            candidate_sampling_probability=probability,
            candidate_ids=ids,
            compute_metrics=False,
            compute_batch_metrics=False,
        )


class CatalogueNegatives(Negatives):
    """Every catalogue candidate is a negative: a full softmax at every step.

    The catalogue is prepared once (lookups, tokenising) and embedded by the
    candidate tower at every step, with gradients, so the step costs one
    ``(batch × catalogue)`` product plus the catalogue's embedding. Nothing
    is sampled, so a ``candidate_sampling_probability`` is refused.
    """

    def check(self, model: Any) -> None:
        if model.sampling_probability_key is not None:
            raise ValueError(
                "CatalogueNegatives scores every candidate, so there is no "
                "sampling bias to correct: remove `candidate_sampling_probability`"
                " (or use MixedNegatives, which samples)."
            )

    def loss(self, model, query, candidate, *, ids, weight, probability):
        catalogue: Catalogue = model.catalogue
        positions, prepared = catalogue.prepared()
        vectors = model.candidate_tower.embed(prepared, training=True)
        positive = tf.reduce_sum(query * candidate, axis=1)
        scores = dot_scores(query, vectors)
        hit = _same_candidate(catalogue.index.lookup(ids), positions)
        return softmax_loss(positive, scores, hit, weight, model.temperature)


class MixedNegatives(Negatives):
    """In-batch negatives plus ``num_sampled`` uniform draws from the catalogue.

    In-batch negatives follow the training data's popularity; the uniform
    draws reach the long tail that batches rarely hold. When the model has a
    ``candidate_sampling_probability`` (each example's candidate frequency
    ``p``), in-batch logits are corrected by ``-log(p)`` as TFRS does, and
    the uniform draws by ``-log(num_sampled / (catalogue size × batch))``,
    the same per-draw scale, so that the two kinds are comparable. As in the
    in-batch task, the temperature divides the similarities and the
    corrections are subtracted after it.

    Args:
        num_sampled: Catalogue candidates drawn (with replacement) per step.

    Raises:
        ValueError: ``num_sampled`` below 1.
    """

    def __init__(self, num_sampled: int = 1024) -> None:
        if isinstance(num_sampled, bool) or not isinstance(num_sampled, int):
            raise TypeError(
                f"`num_sampled` must be an integer. Received: {num_sampled!r}"
            )
        if num_sampled < 1:
            raise ValueError(
                f"`num_sampled` must be >= 1. Received: num_sampled={num_sampled}"
            )
        self.num_sampled = num_sampled

    def __repr__(self) -> str:
        return f"MixedNegatives(num_sampled={self.num_sampled})"

    def _draw(self, size: tf.Tensor) -> tf.Tensor:
        """The catalogue entries this step samples: ``num_sampled`` indices
        in ``[0, size)``, uniform, with replacement."""
        return tf.random.uniform([self.num_sampled], 0, size, dtype=tf.int64)

    def loss(self, model, query, candidate, *, ids, weight, probability):
        catalogue: Catalogue = model.catalogue
        positions, prepared = catalogue.prepared()
        size = tf.shape(positions, out_type=tf.int64)[0]
        draws = self._draw(size)
        sampled = tf.nest.map_structure(lambda x: tf.gather(x, draws), prepared)
        vectors = model.candidate_tower.embed(sampled, training=True)
        index = catalogue.index
        distinct = index.lookup(ids)
        # Gathered as catalogue indices: collectives cannot gather strings.
        batch, batch_probability, batch_distinct = gather_replicas(
            candidate, probability, distinct
        )
        # The temperature divides the similarities, not the corrections, as
        # in the in-batch task (TFRS'): dividing both made each log-count
        # 1/temperature times too large, and at 0.2 the uniform draws (most
        # of them rare items) outweighed the batch's popular ones.
        in_batch = corrected_logits(
            dot_scores(query, batch), model.temperature, batch_probability
        )
        drawn = corrected_logits(dot_scores(query, vectors), model.temperature)
        if probability is not None:
            rows = tf.cast(tf.shape(batch)[0], tf.float32)
            share = self.num_sampled / (tf.cast(size, tf.float32) * rows)
            drawn -= tf.math.log(share)
        # This replica's rows come first in the gathered batch: the diagonal
        # holds each query's positive.
        own = tf.shape(query)[0]
        positive = tf.linalg.diag_part(in_batch[:, :own])
        # The diagonal is the positive itself, listed once, first.
        diagonal = tf.eye(own, tf.shape(batch)[0], dtype=tf.bool)
        hits = tf.concat(
            [
                _same_candidate(distinct, batch_distinct) | diagonal,
                _same_candidate(distinct, tf.gather(positions, draws)),
            ],
            axis=1,
        )
        negatives = tf.concat([in_batch, drawn], axis=1)
        return softmax_loss(positive, negatives, hits, weight, None)


def _same_candidate(query_ids: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """``(batch, columns)``: column holds the query's own true candidate.

    Both are distinct-id indices of the catalogue; ids outside it (-1) match
    nothing, so an unknown positive keeps every negative.
    """
    return (columns[None, :] == query_ids[:, None]) & (query_ids[:, None] >= 0)


def softmax_loss(
    positive: tf.Tensor,
    negatives: tf.Tensor,
    masked: tf.Tensor,
    weight: tf.Tensor | None,
    temperature: float | None,
) -> tf.Tensor:
    """``Σ_i w_i (logsumexp([s_i⁺, s_i·]) - s_i⁺)`` with masked negatives dropped.

    Args:
        positive: ``(batch,)`` logits of the true candidates.
        negatives: ``(batch, n)`` logits of the negatives.
        masked: ``(batch, n)`` negatives to leave out (accidental hits).
        weight: Optional ``(batch,)`` sample weights.
        temperature: Optional divisor of every logit.

    Returns:
        The scalar summed loss.
    """
    logits = tf.concat(
        [positive[:, None], tf.where(masked, -float("inf"), negatives)], axis=1
    )
    if temperature is not None:
        logits /= temperature
    losses = tf.reduce_logsumexp(logits, axis=1) - logits[:, 0]
    if weight is not None:
        losses *= weight
    return tf.reduce_sum(losses)


def gather_replicas(candidate: tf.Tensor, *extra: Any) -> tuple[Any, ...]:
    """Gives each replica the global batch as negatives, its own rows first.

    TFRS treats row i of the candidates as the positive of query i, so the
    gathered rows are rotated to put this replica's slice at the top. String
    ids are gathered as 62-bit hashes (collectives cannot gather strings),
    which keeps what accidental-hit removal reads: which ids are equal.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return (candidate, *extra)
    extra = tuple(
        tf.strings.to_hash_bucket_fast(x, 2**62)
        if x is not None and x.dtype == tf.string
        else x
        for x in extra
    )
    size = tf.shape(candidate)[:1]
    sizes = context.all_gather(size, axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    rotate = lambda x: tf.roll(  # noqa: E731
        context.all_gather(x, axis=0), shift=-offset, axis=0
    )
    return (rotate(candidate), *(None if x is None else rotate(x) for x in extra))


_NAMES = {"in-batch": InBatchNegatives, "catalogue": CatalogueNegatives}


def get_negatives(negatives: str | Negatives) -> Negatives:
    """A :class:`Negatives` from itself or its name (``"in-batch"``,
    ``"catalogue"``).

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor a :class:`Negatives`.
    """
    if isinstance(negatives, Negatives):
        return negatives
    if isinstance(negatives, str):
        if negatives not in _NAMES:
            raise ValueError(
                f"`negatives` must be one of {sorted(_NAMES)} or a Negatives "
                f"object such as MixedNegatives(1024). Received: {negatives!r}"
            )
        return _NAMES[negatives]()
    raise TypeError(
        "`negatives` must be a name or a ctxfeatures.negatives.Negatives. "
        f"Received: {type(negatives).__name__}"
    )
