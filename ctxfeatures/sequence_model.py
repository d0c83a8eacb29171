"""SequenceRetrievalModel: one step trains every position of users' sequences.

Per-event training gives each event its own copy of the user's history and
encodes it again: a user with 50 events costs 50 history lookups of up to 50
items each. Here a batch holds rows of :func:`ctxfeatures.sequences.to_sequences`
(a user's consecutive events); each row's items are looked up once and every
target position's history is pooled from them at once, causally (a position
sees only items of a strictly earlier time, the rule of
:func:`ctxfeatures.history.add_history`), and the loss covers every target.

The towers are the per-event model's: the query tower's
:class:`~ctxfeatures.HistoryEmbedding` pools the same history with the same
window, recency decay and combiner, so a trained model evaluates, recommends
and exports exactly as a :class:`~ctxfeatures.RetrievalModel` (a request's
history in, top-k out). Other query features are read per position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._base import FeatureLayer
from ctxfeatures.layers.causal_attention_history import CausalAttentionHistory
from ctxfeatures.layers.history_embedding import HistoryEmbedding
from ctxfeatures.retrieval import RetrievalModel
from ctxfeatures.sequences import IS_TARGET
from ctxfeatures.tower import PreparedBatch, Tower

__all__ = ["SequenceRetrievalModel", "causal_history_weights"]


class SequenceRetrievalModel(RetrievalModel):
    """A :class:`~ctxfeatures.RetrievalModel` trained on users' sequences.

    Takes the same towers, catalogue and options (negatives, temperature,
    logQ, accidental hits, sample weights); ``fit`` and ``prepare`` take rows
    of :func:`~ctxfeatures.sequences.to_sequences` (batched), and per-event
    batches (with a ``history``) as :class:`~ctxfeatures.RetrievalModel`
    does, e.g. for validation; ``evaluate_top_k``, ``recommend`` and
    ``export_recommender`` take per-event requests. With
    ``remove_accidental_hits=True`` (advised: a batch of sequences repeats
    popular items), candidates equal to a position's own item are masked.

    Args:
        query_tower: The query :class:`~ctxfeatures.Tower`; its
            :class:`~ctxfeatures.HistoryEmbedding` (feature ``history``) is
            pooled causally from the rows' items; every other feature is
            read at each position. A history layer of another kind has no
            sequence form: train it with :class:`~ctxfeatures.RetrievalModel`.
        candidate_tower: The candidate tower, read at each target position.
        candidates: The catalogue, as for :class:`~ctxfeatures.RetrievalModel`.
        candidate_id: Key of the item id, in rows and in the catalogue.
        time: Key of the rows' Unix-seconds column.
        history: Query feature holding each request's history.
        **kwargs: :class:`~ctxfeatures.RetrievalModel` options.

    Example:
        >>> log = {"user_id": np.array(["a", "a", "a", "b", "b"]),
        ...        "item": np.array(["x", "y", "z", "y", "z"]),
        ...        "timestamp": np.array([1, 2, 3, 1, 2])}
        >>> items = cf.IdEmbedding(8, vocabulary=["x", "y", "z"])
        >>> query = cf.Tower({"history": cf.HistoryEmbedding(item_embedding=items)})
        >>> candidate = cf.Tower({"item": items})
        >>> model = cf.SequenceRetrievalModel(query, candidate,
        ...     {"item": ["x", "y", "z"]}, "item", remove_accidental_hits=True)
        >>> model.compile(tf.keras.optimizers.Adagrad(0.1))
        >>> rows = cf.sequences.to_sequences(log, item="item", length=3, context=0)
        >>> _ = model.fit(model.prepare(rows, batch_size=2), epochs=1, verbose=0)
        >>> model.recommend({"history": [["x", "y"]]}, k=1)[0].shape
        (1, 1)
    """

    def __init__(
        self,
        query_tower: Tower,
        candidate_tower: Tower,
        candidates: Any,
        candidate_id: str,
        *,
        time: str = "timestamp",
        history: str = "history",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            query_tower, candidate_tower, candidates, candidate_id, **kwargs
        )
        self.time_key = time
        self.history_key = history
        for _, feature, layer in query_tower._slots():
            # AttentionHistory attends both ways: no causal form.
            if feature == history and type(layer) not in _CAUSAL:
                raise ValueError(
                    f"SequenceRetrievalModel: feature '{feature}' of tower "
                    f"'{query_tower.name}' is read by {type(layer).__name__}, "
                    "which has no sequence form (HistoryEmbedding and "
                    "CausalAttentionHistory have). Train this tower per event "
                    "with RetrievalModel."
                )

    # ----------------------------------------------------------------- input
    def _is_batched(self, data: tf.data.Dataset) -> bool:
        # A row is already a vector per column: a batch of rows is a matrix.
        spec = data.element_spec
        if isinstance(spec, Mapping) and IS_TARGET in spec:
            return spec[IS_TARGET].shape.rank == 2
        return super()._is_batched(data)

    def prepare_batch(self, batch: Mapping[str, Any]) -> PreparedBatch:
        """A batch of rows: per-position features at the target positions,
        and the rows' items and causal weights for history layers."""
        if isinstance(batch, PreparedBatch):
            return batch
        if isinstance(batch, Mapping) and IS_TARGET not in batch:
            return super().prepare_batch(batch)  # per-event: evaluation
        self._check_rows(batch)
        where = tf.where(tf.reshape(batch[IS_TARGET], [-1]))[:, 0]
        events = {
            key: _at(value, where) for key, value in batch.items() if key != IS_TARGET
        }
        query = {}
        for slot, feature, layer in self.query_tower._slots():
            if feature == self.history_key:
                query[slot] = self._history(layer, batch, where)
            else:
                value = self.query_tower._feature_value(events, feature)
                if isinstance(layer, FeatureLayer):
                    value = self.query_tower._run(feature, layer.preprocess, value)
                query[slot] = value
        keys = self._context_keys(required=False)
        return PreparedBatch(
            query=query,
            candidate=self.candidate_tower.preprocess(events),
            context={key: events[key] for key in keys if key in events},
        )

    def _check_rows(self, batch: Any) -> None:
        if not isinstance(batch, Mapping):
            raise TypeError(
                "SequenceRetrievalModel takes batches of feature dicts; "
                f"received {type(batch).__name__}."
            )
        for key in (self.candidate_id, self.time_key):
            if key not in batch:
                raise ValueError(
                    f"SequenceRetrievalModel: rows lack column '{key}' (the "
                    f"item id and time). Keys: {sorted(batch)}."
                )
        if tf.TensorShape(batch[IS_TARGET].shape).rank != 2:
            raise ValueError(
                f"SequenceRetrievalModel: '{IS_TARGET}' must be (batch, width); "
                f"received shape {batch[IS_TARGET].shape}. Batch the rows."
            )

    def _history(
        self, layer: HistoryEmbedding, batch: Mapping[str, Any], where: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        items = tf.convert_to_tensor(batch[self.candidate_id])
        layer._check_dtype(items.dtype)
        layer._require_adapted()
        pad = tf.constant("" if items.dtype == tf.string else -1, items.dtype)
        present = tf.not_equal(items, pad)
        indices = tf.reshape(layer.lookup_ids(tf.reshape(items, [-1])), tf.shape(items))
        if isinstance(layer, CausalAttentionHistory):
            indices = tf.where(present, tf.cast(indices, tf.int64), -1)
            return indices, _last_visible(present, batch[self.time_key]), where
        weights = causal_history_weights(
            present, batch[self.time_key], layer.window, layer.recency_decay
        )
        return indices, _normalised(weights, layer.combiner), where

    # ----------------------------------------------------------------- embed
    @tf.autograph.experimental.do_not_convert
    def embed_batch(
        self, features: Mapping[str, Any] | PreparedBatch, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Query and candidate vectors of each target position."""
        batch = self.prepare_batch(features)
        tower = self.query_tower
        if not any(isinstance(value, tuple) for value in batch.query.values()):
            return super().embed_batch(batch, training=training)  # per event
        outputs = []
        for slot, feature, layer in tower._slots():
            value = batch.query[slot]
            if feature == self.history_key and isinstance(
                layer, CausalAttentionHistory
            ):
                value = _encoded(layer, *value, training=training)
            elif feature == self.history_key:
                value = _pooled(layer, *value)
            else:
                fn = layer.embed if isinstance(layer, FeatureLayer) else layer
                value = tower._run(feature, fn, value, training=training)
            outputs.append(tf.cast(value, tf.float32))
        candidate = self.candidate_tower.embed(batch.candidate, training=training)
        return tower._head(outputs), candidate


def causal_history_weights(
    present: tf.Tensor,
    times: tf.Tensor,
    window: int | None = None,
    recency_decay: float | None = None,
) -> tf.Tensor:
    """``(rows, width, width)`` weights of position ``j``'s item in position
    ``t``'s history: items of a strictly earlier time, the last ``window``
    of them, the ``p``-th most recent weighted ``recency_decay ** p``.

    Args:
        present: ``(rows, width)`` whether a position holds an item.
        times: ``(rows, width)`` integer times, non-decreasing along a row's
            items.
        window: Most recent items kept, or ``None`` for all.
        recency_decay: Weight decay per step back, or ``None`` (1).

    Returns:
        Float32 weights, 0 where an item is not in a history.
    """
    visible = tf.cast(_earlier(present, times), tf.float32)
    # Rank from the most recent visible item: 1, 2, 3, ...
    rank = tf.cumsum(visible, axis=-1, reverse=True)
    if window is not None:
        visible = visible * tf.cast(rank <= float(window), tf.float32)
    if recency_decay is not None and recency_decay != 1.0:
        decay = tf.constant(recency_decay, tf.float32)
        visible = visible * tf.pow(decay, tf.maximum(rank - 1.0, 0.0))
    return visible


def _earlier(present: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
    """``(rows, width, width)``: whether position ``j`` holds an item of a
    strictly earlier time than position ``t`` (the rule of add_history)."""
    times = tf.cast(times, tf.int64)
    return tf.logical_and(present[:, None, :], times[:, None, :] < times[:, :, None])


def _normalised(weights: tf.Tensor, combiner: str) -> tf.Tensor:
    """Weights divided by their history's norm under ``combiner``."""
    if combiner == "sum":
        return weights
    if combiner == "mean":
        norm = tf.reduce_sum(weights, axis=-1, keepdims=True)
    else:
        norm = tf.sqrt(tf.reduce_sum(weights**2, axis=-1, keepdims=True))
    return weights / tf.maximum(norm, 1e-12)


def _pooled(
    layer: HistoryEmbedding, indices: tf.Tensor, weights: tf.Tensor, where: tf.Tensor
) -> tf.Tensor:
    """Each target position's pooled history, ``(targets, dim)``."""
    distinct, position = tf.unique(tf.reshape(indices, [-1]))
    vectors = tf.gather(layer._table()(distinct), position)
    vectors = tf.reshape(vectors, tf.concat([tf.shape(indices), [-1]], axis=0))
    pooled = tf.matmul(weights, vectors)
    return tf.gather(tf.reshape(pooled, [-1, tf.shape(pooled)[-1]]), where)


def _last_visible(present: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
    """``(rows, width)``: the position of each position's most recent item of
    a strictly earlier time, or -1."""
    earlier = _earlier(present, times)
    positions = tf.range(tf.shape(present, out_type=tf.int64)[1])
    return tf.reduce_max(tf.where(earlier, positions[None, None, :], -1), axis=-1)


def _encoded(
    layer: CausalAttentionHistory,
    indices: tf.Tensor,
    last: tf.Tensor,
    where: tf.Tensor,
    training: bool = False,
) -> tf.Tensor:
    """Each target's history encoding: its row's state at its most recent
    earlier item, ``(targets, dim)`` (zeros without one)."""
    states = layer.encode(indices, training=training)
    width = tf.shape(indices, out_type=tf.int64)[1]
    flat = tf.reshape(states, [-1, tf.shape(states)[-1]])
    last = tf.gather(tf.reshape(last, [-1]), where)
    row = where // width
    picked = tf.gather(flat, row * width + tf.maximum(last, 0))
    return tf.where((last >= 0)[:, None], picked, tf.zeros_like(picked))


_CAUSAL = (HistoryEmbedding, CausalAttentionHistory)


def _at(value: Any, where: tf.Tensor) -> tf.Tensor:
    """A ``(rows, width, ...)`` column's values at the flat target positions."""
    value = tf.convert_to_tensor(value)
    shape = tf.concat([[-1], tf.shape(value)[2:]], axis=0)
    return tf.gather(tf.reshape(value, shape), where)
