"""EmbeddingFeature: the one index -> table -> pool block of the layers.

Every embedding layer is an indexer (its ``_transform``: raw values to table
rows) and a combiner on top of this block, which owns the table, its options
(``embedding_dim``, ``embeddings_initializer``, ``embeddings_regularizer``),
the pooling and the serving spec.

Prepared values are either one row index per example, ``(batch,)``, where a
negative index means "no value" and gives a zero vector; or several per
example, ragged ``(batch, None)``, pooled by ``combiner`` (an example without
values gives a zero vector).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ctxfeatures.layers._base import FeatureLayer
from ctxfeatures.layers._inputs import check_choice, check_positive_int

COMBINERS = ("mean", "sum", "sqrtn")


def pool(
    table: tf.keras.layers.Embedding,
    rows: tf.RaggedTensor,
    combiner: str,
    weights: tf.Tensor | None = None,
) -> tf.Tensor:
    """Pools the embeddings of each row's ids in ``rows``: sum, mean or sqrtn.

    With ``weights`` (one per value), ``"mean"`` is the weighted mean and
    ``"sqrtn"`` divides the weighted sum by the root of the summed squared
    weights. Rows without values pool to zeros.

    Each distinct id is looked up once and the rows are pooled by one sparse
    x dense product: the table's gradient then holds one row per distinct id
    (a history batch repeats its popular items thousands of times), which
    spares the optimiser deduplicating every gathered row, and memory stays
    that of the batch's ids whatever the table's size.
    """
    ids = tf.cast(rows.value_rowids(), tf.int64)
    count = tf.cast(rows.nrows(), tf.int64)
    distinct, position = tf.unique(rows.flat_values, out_idx=tf.int64)
    vectors = table(distinct)
    if weights is None:
        weights = tf.ones(tf.shape(position), vectors.dtype)
    else:
        weights = tf.cast(weights, vectors.dtype)
    weights = _divide_by_norm(weights, ids, count, combiner)
    shape = tf.stack([count, tf.shape(distinct, out_type=tf.int64)[0]])
    matrix = tf.SparseTensor(tf.stack([ids, position], axis=1), weights, shape)
    return tf.sparse.sparse_dense_matmul(matrix, vectors)


def _divide_by_norm(
    weights: tf.Tensor, ids: tf.Tensor, count: tf.Tensor, combiner: str
) -> tf.Tensor:
    """Each value's weight divided by its row's norm under ``combiner``.

    The norm is the row's summed weights (mean), the root of their summed
    squares (sqrtn) or 1 (sum).
    """
    if combiner == "sum":
        return weights
    if combiner == "mean":
        norm = tf.math.unsorted_segment_sum(weights, ids, count)
    else:
        norm = tf.sqrt(tf.math.unsorted_segment_sum(weights**2, ids, count))
    # A row without values has a zero norm and no weight to divide.
    return weights / tf.gather(tf.maximum(norm, 1e-12), ids)


class EmbeddingFeature(FeatureLayer):
    """Base of the embedding layers: a table looked up and pooled.

    Subclasses give ``_num_rows()`` (None while unknown, e.g. before adapt),
    the indexer ``_transform`` and, for several values per example, a
    ``combiner`` and optionally ``_value_weights``.

    Args:
        embedding_dim: Size of each embedding vector.
        embeddings_initializer: Initializer of the table.
        embeddings_regularizer: Optional regularizer of the table.
        **kwargs: Base ``Layer`` arguments such as ``name``.
    """

    #: Pooling of several values per example; None: one value per example.
    combiner: str | None = None
    #: Raw dtype served by the exported signature.
    raw_dtype: tf.DType = tf.int64
    config_keys = ("embedding_dim", "embeddings_initializer", "embeddings_regularizer")

    def __init__(
        self,
        embedding_dim: int,
        *,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = tf.keras.regularizers.get(embeddings_regularizer)
        self._embedding: tf.keras.layers.Embedding | None = None

    @property
    def output_dim(self) -> int:
        return self.embedding_dim

    def _num_rows(self) -> int | None:
        raise NotImplementedError

    @property
    def embeddings(self) -> tf.Variable:
        """The embedding table, ``(rows, embedding_dim)``."""
        self._require_adapted()
        table = self._table()
        if not table.built:
            table.build((None,))
        return table.embeddings

    def _table(self) -> tf.keras.layers.Embedding:
        rows = self._num_rows()
        if self._embedding is None or self._embedding.input_dim != rows:
            self._embedding = tf.keras.layers.Embedding(
                rows,
                self.embedding_dim,
                embeddings_initializer=self.embeddings_initializer,
                embeddings_regularizer=self.embeddings_regularizer,
                name="embedding",
            )
            if self.built:
                self._embedding.build((None,))
        return self._embedding

    def _apply_state(self, state: Any) -> None:
        # A table sized for the new state (kept when the size is unchanged).
        self._table()

    def build(self, input_shape: Any = None) -> None:
        if self._num_rows() is not None:
            table = self._table()
            if not table.built:
                table.build((None,))
        super().build(input_shape)

    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        table = self._table()
        if isinstance(prepared, tf.RaggedTensor):
            weights = self._value_weights(prepared)
            return pool(table, prepared, self.combiner, weights)
        vectors = table(tf.maximum(prepared, 0))
        # A negative index is "no value": a zero vector.
        return tf.where((prepared >= 0)[:, None], vectors, tf.zeros_like(vectors))

    def _config_value(self, key: str) -> Any:
        value = getattr(self, key)
        if key == "embeddings_initializer":
            return tf.keras.initializers.serialize(value)
        if key == "embeddings_regularizer" and value is not None:
            return tf.keras.regularizers.serialize(value)
        return super()._config_value(key)

    def _value_weights(self, prepared: tf.RaggedTensor) -> tf.Tensor | None:
        return None

    def _serves_lists(self) -> bool:
        return self.combiner is not None

    def input_signature(self) -> tf.TensorSpec:
        """The served raw input: ``(batch,)``, or ``(batch, length)`` lists.

        Lists are served dense, padded with ``""`` (string ids) or ``-1``
        (integer ids); the padding is dropped before lookup, never pooled.
        """
        shape = [None, None] if self._serves_lists() else [None]
        return tf.TensorSpec(shape=shape, dtype=self.raw_dtype)


def check_combiner(combiner: Any) -> str:
    return check_choice(combiner, "combiner", COMBINERS)


def drop_padding(values: tf.Tensor | tf.RaggedTensor) -> tf.RaggedTensor:
    """Dense ``(batch, n)`` or ragged ids as ragged, padding removed.

    The padding is ``""`` for string ids and ``-1`` for integer ids (that of
    :func:`ctxfeatures.history.add_history` and of served lists).
    """
    pad = tf.constant("" if values.dtype == tf.string else -1, values.dtype)
    return tf.ragged.boolean_mask(values, tf.not_equal(values, pad))
