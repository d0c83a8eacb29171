"""HistoryEmbedding: a user's recent items, pooled into one vector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._embedding import check_combiner, drop_padding
from ctxfeatures.layers._inputs import check_positive_int
from ctxfeatures.layers._vocabulary import VocabularyEmbeddingBase
from ctxfeatures.layers.id_embedding import IdEmbedding


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class HistoryEmbedding(VocabularyEmbeddingBase):
    """Pools the embeddings of the items a user interacted with just before.

    Takes the ``history`` feature of :func:`ctxfeatures.history.add_history`:
    a ``(batch, length)`` tensor of item ids, most recent last, padded with
    ``""`` (string ids) or ``-1`` (integer ids) at either end; a ragged
    ``(batch, None)`` tensor works too. Padding is dropped, then:

    * ``window=k`` keeps only each row's ``k`` most recent items;
    * ``recency_decay=d`` weights the item ``p`` steps before the most recent
      one by ``d ** p`` (``d = 1`` or ``None``: equal weights);
    * ``combiner`` pools the weighted embeddings: ``"mean"`` (weighted mean),
      ``"sum"`` or ``"sqrtn"`` (sum over the root of the summed squared
      weights).

    An empty history (a new user's first event) gives a zero vector.

    Pass the candidate tower's item :class:`~ctxfeatures.IdEmbedding` as
    ``item_embedding`` to look history items up in *its* vocabulary and
    table, so that history items and candidates live in one space and every
    training step updates both. The layer then learns nothing of its own and
    needs no adapt. Saved on its own, the layer keeps a copy of that table.

    Args:
        embedding_dim: Size of the vectors; ``None`` with ``item_embedding``
            (its size is used).
        vocabulary: Optional list of item ids (own table only).
        item_embedding: Optional :class:`~ctxfeatures.IdEmbedding` whose
            vocabulary and table are shared.
        window: Keep only the most recent ``window`` items.
        recency_decay: Weight decay per step back in time, in ``(0, 1]``.
        combiner: ``"mean"``, ``"sum"`` or ``"sqrtn"``.
        **kwargs: :class:`~ctxfeatures.IdEmbedding` options for an own table
            (``id_dtype``, ``max_tokens``, ``min_frequency``,
            ``num_oov_indices``, ``num_hash_bins``, ``embeddings_initializer``,
            ``embeddings_regularizer``) and base ``Layer`` arguments.

    Call arguments:
        inputs: ``(batch, length)`` item ids, most recent last, padded with
            ``""`` or ``-1``; or ``(batch, None)`` ragged ids.
        training: Unused; accepted for Keras.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, each row's pooled history (zeros
        for an empty history).

    Example:
        >>> layer = ctxfeatures.HistoryEmbedding(2, window=2, combiner="sum",
        ...     vocabulary=["a", "b", "c"], embeddings_initializer="ones")
        >>> layer(tf.constant([["", "a", "b", "c"], ["", "", "", ""]])).numpy()
        array([[2., 2.],
               [0., 0.]], dtype=float32)

    Raises:
        ValueError: bad ``window``, ``recency_decay`` or ``combiner``, an
            ``embedding_dim`` that differs from the shared layer's, options
            for an own table together with ``item_embedding``, calling before
            ``adapt``, a history of rank other than 2.
        TypeError: ``item_embedding`` that is not an ``IdEmbedding``, or a
            history whose dtype is not the items' dtype.
    """

    input_description = "history"
    config_keys = ("window", "recency_decay", "combiner")

    def __init__(
        self,
        embedding_dim: int | None = None,
        vocabulary: Sequence[Any] | None = None,
        *,
        item_embedding: IdEmbedding | dict[str, Any] | None = None,
        window: int | None = None,
        recency_decay: float | None = None,
        combiner: str = "mean",
        **kwargs: Any,
    ) -> None:
        if isinstance(item_embedding, dict):
            item_embedding = tf.keras.layers.deserialize(item_embedding)
        if item_embedding is not None:
            embedding_dim = self._check_shared(
                item_embedding, embedding_dim, vocabulary, kwargs
            )
            kwargs["id_dtype"] = item_embedding.id_dtype
        if embedding_dim is None:
            raise ValueError(
                "HistoryEmbedding needs `embedding_dim`, or an `item_embedding` "
                "to share. Received: embedding_dim=None"
            )
        super().__init__(embedding_dim, vocabulary, **kwargs)
        self.item_embedding = item_embedding
        self.window = None if window is None else check_positive_int(window, "window")
        self.recency_decay = _check_decay(recency_decay)
        self.combiner = check_combiner(combiner)

    @staticmethod
    def _check_shared(
        item: Any, embedding_dim: Any, vocabulary: Any, options: dict[str, Any]
    ) -> int:
        if not isinstance(item, IdEmbedding):
            raise TypeError(
                "`item_embedding` must be the candidate tower's IdEmbedding. "
                f"Received: {type(item).__name__}"
            )
        if embedding_dim is not None and embedding_dim != item.embedding_dim:
            raise ValueError(
                f"`embedding_dim`={embedding_dim} differs from the shared "
                f"item_embedding's {item.embedding_dim}. Leave it as None."
            )
        own = [key for key in _OWN_TABLE_OPTIONS if key in options]
        if vocabulary is not None or own:
            raise ValueError(
                "With `item_embedding`, the vocabulary and table options come "
                f"from that layer; remove {own or ['vocabulary']}."
            )
        return item.embedding_dim

    # ----------------------------------------------------------------- state
    @property
    def _shared(self) -> IdEmbedding | None:
        # Read through getattr: the base initialiser asks for the table before
        # `item_embedding` is assigned (not a class attribute, which would stop
        # Keras from tracking the shared layer).
        return getattr(self, "item_embedding", None)

    def _new_accumulator(self) -> Any:
        if self._shared is not None:
            return None
        return super()._new_accumulator()

    @property
    def is_adapted(self) -> bool:
        if self._shared is not None:
            return self._shared.is_adapted
        return super().is_adapted

    def _not_adapted_hint(self) -> str:
        if self._shared is not None:
            return (
                f" on its shared item layer '{self._shared.name}' (adapt "
                "the candidate tower)"
            )
        return super()._not_adapted_hint()

    def _num_rows(self) -> int | None:
        if self._shared is not None:
            return self._shared._num_rows()
        return super()._num_rows()

    def _table(self) -> tf.keras.layers.Embedding:
        if self._shared is not None:
            # The shared layer's own table: one variable, trained by both.
            return self._shared._table()
        return super()._table()

    def build(self, input_shape: Any = None) -> None:
        if self._shared is not None and not self._shared.built:
            self._shared.build(None)
        super().build(input_shape)

    def get_vocabulary(self) -> list[Any]:
        if self._shared is not None:
            return self._shared.get_vocabulary()
        return super().get_vocabulary()

    def lookup_ids(self, ids: tf.Tensor) -> tf.Tensor:
        if self._shared is not None:
            return self._shared.lookup_ids(ids)
        return super().lookup_ids(ids)

    # ----------------------------------------------------------------- calls
    def _serves_lists(self) -> bool:
        return True

    def _validate(self, inputs: Any) -> tf.RaggedTensor:
        """The history as ``(batch, None)`` ragged ids, padding dropped."""
        if isinstance(inputs, tf.SparseTensor):
            inputs = tf.RaggedTensor.from_sparse(inputs)
        if not isinstance(inputs, tf.RaggedTensor):
            inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank != 2:
            raise ValueError(
                f"{self._owner()} expects a history shaped (batch, length) "
                "(e.g. from ctxfeatures.history.add_history, then batched) or a "
                f"ragged (batch, None) tensor. Received shape {inputs.shape}."
            )
        self._check_dtype(inputs.dtype)
        items = drop_padding(inputs)
        if self.window is None:
            return items
        # The last `window` values of each row.
        ends = items.row_limits()
        starts = tf.maximum(items.row_starts(), ends - self.window)
        positions = tf.ragged.range(starts, ends)
        return positions.with_flat_values(
            tf.gather(items.flat_values, positions.flat_values)
        )

    def _value_weights(self, prepared: tf.RaggedTensor) -> tf.Tensor | None:
        if self.recency_decay is None or self.recency_decay == 1.0:
            return None
        rows = prepared.value_rowids()
        position = tf.range(tf.shape(rows, out_type=tf.int64)[0])
        # Steps back from each row's most recent item: 0, 1, 2, ...
        age = tf.gather(prepared.row_limits(), rows) - 1 - position
        return tf.pow(
            tf.constant(self.recency_decay, tf.float32), tf.cast(age, tf.float32)
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.item_embedding is not None:
            for key in ("embedding_dim", "vocabulary", *_OWN_TABLE_OPTIONS):
                config.pop(key, None)
            config["item_embedding"] = tf.keras.layers.serialize(self.item_embedding)
        return config


_OWN_TABLE_OPTIONS = (
    "id_dtype",
    "max_tokens",
    "min_frequency",
    "num_oov_indices",
    "num_hash_bins",
    "embeddings_initializer",
    "embeddings_regularizer",
)


def _check_decay(decay: float | None) -> float | None:
    if decay is None:
        return None
    if isinstance(decay, bool) or not isinstance(decay, (int, float)):
        raise TypeError(f"`recency_decay` must be a number. Received: {decay!r}")
    if not (math.isfinite(decay) and 0.0 < decay <= 1.0):
        raise ValueError(
            f"`recency_decay` must be in (0, 1]. Received: recency_decay={decay!r}"
        )
    return float(decay)
