"""Top-k evaluation of any recommender against one catalogue.

:func:`evaluate_top_k` ranks the whole catalogue for every query of a dataset
and reports hit rate at k (TFRS' top-k categorical accuracy), NDCG at k and
the mean reciprocal rank. It takes a :class:`~ctxfeatures.RetrievalModel`
or any object that follows the :class:`Scorer` protocol, such as the
baselines of :mod:`ctxfeatures.baselines`, so that every model and baseline is
measured by the same code, on the same queries, with the same exclusions.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import tensorflow as tf

from ctxfeatures._data import as_dataset, is_columns
from ctxfeatures.catalogue import Catalogue, CatalogueIndex
from ctxfeatures.layers._inputs import batched, check_feature_dataset
from ctxfeatures.tower import PreparedBatch

__all__ = ["DEFAULT_KS", "CatalogueIndex", "Scorer", "evaluate_top_k"]

#: The default cut-offs of :func:`evaluate_top_k` (those above the catalogue
#: size are dropped).
DEFAULT_KS = (1, 5, 10, 50, 100)
_EVAL_BATCH = 4096
# Scores held at once per batch (rows x catalogue chunk): 2**24 float32 is
# 64 MB, whatever the catalogue size.
_CHUNK_CELLS = 2**24


@runtime_checkable
class Scorer(Protocol):
    """What :func:`evaluate_top_k` needs from a recommender that is not a model.

    Attributes:
        candidate_ids: ``(num_candidates,)`` tensor of the catalogue's ids, in
            the order of the columns of :meth:`score`.
        candidate_id: Feature key of each query's true item in the data.
        feature_names: Feature keys :meth:`score` reads.
    """

    candidate_ids: tf.Tensor
    candidate_id: str
    feature_names: Sequence[str]

    def score(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``(batch, num_candidates)`` scores of a batch of queries (traceable)."""


class _Ranker:
    """One recommender's scores, catalogue index and compiled step."""

    def __init__(self, catalogue: CatalogueIndex) -> None:
        self.catalogue = catalogue
        self.ids = self.catalogue.ids
        self.step = tf.function(self._step, reduce_retracing=True)

    @tf.autograph.experimental.do_not_convert
    def _step(
        self,
        batch: Mapping[str, Any],
        extra: Any,
        exclude: Any,
        positive_id: tf.Tensor,
        cutoffs: tf.Tensor,
        chunk_size: tf.Tensor,
    ) -> tf.Tensor:
        """Per-metric sums over one batch: hits and NDCG per k, RR, count."""
        catalogue = self.catalogue
        distinct = catalogue.lookup(positive_id)
        # One rule for models and scorers: a true item outside the catalogue
        # cannot be recommended, so it is a miss (a model could otherwise
        # score it through its candidate tower and count a hit).
        miss = distinct < 0
        chunk_scores, positive = self.scores(batch, extra, distinct)
        rows = tf.shape(positive, out_type=tf.int64)[0]
        keys = None
        if exclude is not None:
            keys = catalogue.excluded_keys(exclude, rows)
            # A true item among the excluded ones cannot be recommended.
            first = tf.gather(catalogue.first, tf.maximum(distinct, 0))
            seen = catalogue.contains(keys, first * rows + tf.range(rows))
            miss |= seen & (distinct >= 0)
        count = self._count_better(
            chunk_scores, positive, distinct, keys, rows, chunk_size
        )
        rank = 1.0 + tf.cast(count, tf.float64)
        found = tf.cast(~miss, tf.float64)
        cut = tf.cast(cutoffs, tf.float64)[None, :]
        hits = tf.cast(rank[:, None] <= cut, tf.float64) * found[:, None]
        ndcg = hits * (np.log(2.0) / tf.math.log(rank + 1.0))[:, None]
        return tf.concat(
            [
                tf.reduce_sum(hits, 0),
                tf.reduce_sum(ndcg, 0),
                tf.reduce_sum(found / rank)[None],
                tf.cast(tf.shape(rank)[:1], tf.float64),
            ],
            axis=0,
        )

    def _count_better(
        self,
        chunk_scores: Any,
        positive: tf.Tensor,
        distinct: tf.Tensor,
        keys: tf.Tensor | None,
        rows: tf.Tensor,
        chunk_size: tf.Tensor,
    ) -> tf.Tensor:
        """Entries scoring above each row's true item, one catalogue chunk at
        a time: memory is ``rows * chunk_size`` whatever the catalogue size."""
        size = tf.shape(self.ids, out_type=tf.int64)[0]

        def body(start: tf.Tensor, count: tf.Tensor) -> tuple:
            stop = tf.minimum(start + chunk_size, size)
            better = chunk_scores(start, stop) > positive[:, None]
            # The true item never outranks itself. A model scores its own
            # entry with another kernel than the true item's score, and float
            # rounding would otherwise put it above in about half the rows
            # (TFRS' FactorizedTopK counts those: its top-1 reads low).
            better &= self.catalogue.position[start:stop][None, :] != distinct[:, None]
            if keys is not None:
                better &= ~self.catalogue.chunk_mask(keys, rows, start, stop)
            # Integer counting is the cheap pass over the scores.
            return stop, count + tf.reduce_sum(tf.cast(better, tf.int32), axis=1)

        _, count = tf.while_loop(
            lambda start, _: start < size,
            body,
            (tf.constant(0, tf.int64), tf.zeros(tf.cast(rows, tf.int32), tf.int32)),
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None])),
            # One chunk at a time: parallel iterations would multiply memory.
            parallel_iterations=1,
        )
        return count

    def scores(
        self, batch: Mapping[str, Any], extra: Any, distinct: tf.Tensor
    ) -> tuple[Any, tf.Tensor]:
        """``(scores of catalogue[start:stop] as a function, true-item scores)``."""
        raise NotImplementedError


class _ScorerRanker(_Ranker):
    def __init__(self, scorer: Scorer) -> None:
        super().__init__(CatalogueIndex(scorer.candidate_ids))
        # Weak: the cache below is keyed by the scorer, which must stay free
        # to be collected.
        self._scorer = weakref.ref(scorer)
        self.key = scorer.candidate_id
        self.feature_names = list(scorer.feature_names)

    def scores(
        self, batch: Mapping[str, Any], extra: Any, distinct: tf.Tensor
    ) -> tuple[Any, tf.Tensor]:
        # A scorer gives the whole row at once; only the masks are chunked.
        scores = tf.cast(self._scorer().score(batch), tf.float32)
        where = tf.gather(self.catalogue.first, tf.maximum(distinct, 0))
        positive = tf.gather(scores, where, batch_dims=1)
        return (lambda start, stop: scores[:, start:stop]), positive


class _ModelRanker(_Ranker):
    """A RetrievalModel: the true item is scored through the candidate tower,
    exactly as TFRS' FactorizedTopK does."""

    def __init__(self, model: Any) -> None:
        # The model's own index, shared with the losses that read it.
        super().__init__(model.catalogue.index)
        self._model = weakref.ref(model)  # see _ScorerRanker
        self.key = model.candidate_id
        self.feature_names = (
            model.query_tower.feature_names + model.candidate_tower.feature_names
        )

    def scores(
        self, batch: Mapping[str, Any], vectors: Any, distinct: tf.Tensor
    ) -> tuple[Any, tf.Tensor]:
        query, candidate = self._model().embed_batch(batch, training=False)

        def chunk(start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
            return tf.linalg.matmul(query, vectors[start:stop], transpose_b=True)

        return chunk, tf.reduce_sum(query * candidate, axis=1)


# One ranker per recommender, so repeated evaluations never retrace.
_RANKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_two_tower(model: Any) -> bool:
    # A RetrievalModel, recognised by what is used (this module sits below it).
    return isinstance(getattr(model, "catalogue", None), Catalogue) and hasattr(
        model, "embed_batch"
    )


def _ranker(model_or_scorer: Any) -> tuple[_Ranker, Any]:
    if _is_two_tower(model_or_scorer):
        # Embedded once per evaluation: the catalogue's vectors change in fit.
        _, vectors = model_or_scorer.catalogue.embed()
        ranker = _RANKERS.get(model_or_scorer)
        if ranker is None:
            ranker = _RANKERS[model_or_scorer] = _ModelRanker(model_or_scorer)
        return ranker, vectors
    if not isinstance(model_or_scorer, Scorer):
        raise TypeError(
            "evaluate_top_k() takes a RetrievalModel or a Scorer (an object with "
            "`candidate_ids`, `candidate_id`, `feature_names` and `score()`, "
            "e.g. ctxfeatures.baselines.EASE after fit()); received "
            f"{type(model_or_scorer).__name__}."
        )
    ranker = _RANKERS.get(model_or_scorer)
    if ranker is None or ranker.ids is not model_or_scorer.candidate_ids:
        ranker = _RANKERS[model_or_scorer] = _ScorerRanker(model_or_scorer)
    return ranker, None


def _check_ks(ks: Sequence[int] | None, size: int) -> list[int]:
    if ks is None:
        return [k for k in DEFAULT_KS if k <= size] or [size]
    values = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"Every k in `ks` must be an integer. Received: ks={ks}")
        values.append(int(k))
    values = sorted(set(values))
    if not values or values[0] < 1 or values[-1] > size:
        raise ValueError(
            f"Every k in `ks` must be between 1 and the catalogue size "
            f"({size}). Received: ks={values}"
        )
    return values


def _check_exclude(spec: Mapping[str, Any], exclude: str, ids: tf.Tensor) -> None:
    if exclude not in spec:
        raise ValueError(
            f"evaluate_top_k(): `exclude` names feature '{exclude}', which the "
            f"data lacks. Features: {sorted(spec)}. Add it (e.g. with "
            "ctxfeatures.history.add_history) or pass exclude=None."
        )
    dtype = spec[exclude].dtype
    if (dtype == tf.string) != (ids.dtype == tf.string):
        raise TypeError(
            f"evaluate_top_k(): feature '{exclude}' holds {dtype.name} but the "
            f"catalogue ids are {ids.dtype.name}: they must be the same kind."
        )


def evaluate_top_k(
    model_or_scorer: Any,
    data: tf.data.Dataset | Mapping[str, Any],
    ks: Sequence[int] | None = None,
    exclude: str | None = None,
    batch_size: int = _EVAL_BATCH,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Ranks the catalogue for every query: hit rate and NDCG at k, and MRR.

    A query's rank is one plus the number of catalogue entries (excluded ones
    aside) that score strictly higher than its true item, the rule of
    ``tf.math.in_top_k`` that TFRS' ``FactorizedTopK`` applies; so ``top_k``
    is the same number as TFRS' top-k categorical accuracy. With a single true
    item, NDCG at k is ``1 / log2(1 + rank)`` within the cut-off and 0 beyond
    it; MRR averages ``1 / rank`` over all queries.

    ``exclude`` names a feature holding, per query, items that must not be
    recommended: typically ``"history"`` from
    :func:`ctxfeatures.history.add_history` (do not recommend what the user
    has already seen). Those items leave the ranking, and a query whose true
    item is among them counts as a miss (a deployed recommender could not
    return it). Ids outside the catalogue and padding are ignored.

    A query whose true item is not in the catalogue is a miss, for a model
    and a scorer alike: neither could recommend it.

    Args:
        model_or_scorer: A :class:`~ctxfeatures.RetrievalModel`, or a
            :class:`Scorer` such as a fitted baseline.
        data: A dataset of feature dicts (batched or not), or a mapping of
            equal-length columns, with the features
            the recommender reads, its true item's id and the ``exclude``
            feature; for a model also the output of its ``prepare()`` (no
            ``exclude``; the id column must have been in the prepared data).
        ks: The cut-offs; by default those of 1, 5, 10, 50 and 100 that do
            not exceed the catalogue size.
        exclude: Optional feature of items to remove from each ranking.
        batch_size: Batch size when ``data`` is unbatched.
        chunk_size: Catalogue entries scored at once. Memory is
            ``batch * chunk_size`` scores and mask cells, whatever the
            catalogue size; the result does not depend on it. By default
            ``2**24 // batch`` (64 MB of scores).

    Returns:
        ``{"top_1": ..., "ndcg_1": ..., ..., "mrr": ...}``, each in ``[0, 1]``.

    Raises:
        TypeError: a recommender of another kind, data that is not a dataset
            of dicts, an ``exclude`` feature of the wrong dtype.
        ValueError: a cut-off outside ``[1, catalogue size]``, a missing
            feature (the ``exclude`` one included), or an empty dataset.

    Example:
        >>> from ctxfeatures import baselines, evaluation
        >>> events = {"user_id": np.array(["a", "b", "b"]),
        ...           "item": np.array(["x", "x", "y"])}
        >>> popular = baselines.MostPopular().fit(events, item="item")
        >>> test = tf.data.Dataset.from_tensor_slices(
        ...     {"item": ["y"], "history": [["x"]]})
        >>> evaluation.evaluate_top_k(popular, test, ks=[1], exclude=None)
        {'top_1': 0.0, 'ndcg_1': 0.0, 'mrr': 0.5}
        >>> evaluation.evaluate_top_k(popular, test, ks=[1], exclude="history")
        {'top_1': 1.0, 'ndcg_1': 1.0, 'mrr': 1.0}
    """
    if is_columns(data):
        data = as_dataset(data, "evaluate_top_k()")
    if not (isinstance(data, tf.data.Dataset) and _is_prepared(data.element_spec)):
        check_feature_dataset(data, "evaluate_top_k()")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(
            f"`chunk_size` must be an integer >= 1 or None. Received: "
            f"chunk_size={chunk_size!r}"
        )
    ranker, extra = _ranker(model_or_scorer)
    ks = _check_ks(ks, int(ranker.ids.shape[0]))
    spec = data.element_spec
    prepared = _is_prepared(spec)
    if prepared and exclude is not None:
        raise ValueError(
            "evaluate_top_k(): prepared batches drop the `exclude` feature; pass "
            "the raw batches instead (they are prepared on the fly)."
        )
    # The true item's id: scorers rank by it; for every recommender it
    # decides the unknown-item rule and the exclusion of seen items.
    if prepared and ranker.key not in spec.context:
        raise ValueError(
            f"evaluate_top_k(): the prepared batches lack the true item's id "
            f"'{ranker.key}'. Prepare data that holds that column, or pass the "
            "raw batches."
        )
    keys = [] if prepared else [ranker.key]
    if not prepared:
        keys += ranker.feature_names
    if exclude is not None:
        _check_exclude(spec, exclude, ranker.ids)
        keys.append(exclude)
    for key in keys:
        if key not in spec:
            raise ValueError(
                f"evaluate_top_k(): feature '{key}' is missing. Keys: {sorted(spec)}."
            )
    if not prepared:
        keys = list(dict.fromkeys(keys))
        data = batched(data, batch_size).map(
            lambda batch: {key: batch[key] for key in keys}
        )
    cutoffs = tf.constant(ks, tf.int32)
    totals = np.zeros(2 * len(ks) + 2, np.float64)
    for batch in data:
        ids = batch.context[ranker.key] if prepared else batch[ranker.key]
        positive_id = tf.reshape(ids, [-1])
        excluded = batch[exclude] if exclude is not None else None
        rows = max(1, int(positive_id.shape[0]))
        chunk = tf.constant(chunk_size or max(1, _CHUNK_CELLS // rows), tf.int64)
        totals += ranker.step(
            batch, extra, excluded, positive_id, cutoffs, chunk
        ).numpy()
    count = totals[-1]
    if count == 0:
        raise ValueError("evaluate_top_k() received an empty dataset.")
    result = {f"top_{k}": totals[i] / count for i, k in enumerate(ks)}
    result.update({f"ndcg_{k}": totals[len(ks) + i] / count for i, k in enumerate(ks)})
    result["mrr"] = totals[-2] / count
    return {key: float(value) for key, value in result.items()}


def _is_prepared(spec: Any) -> bool:
    return isinstance(spec, PreparedBatch)
