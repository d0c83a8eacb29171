"""MultiIdEmbedding: a multi-valued id feature pooled into one embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._embedding import check_combiner, drop_padding
from ctxfeatures.layers._vocabulary import VocabularyEmbeddingBase


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class MultiIdEmbedding(VocabularyEmbeddingBase):
    """Pools the embeddings of several ids per example, e.g. a movie's genres.

    Inputs may be a ragged tensor of ids ``(batch, None)``, a dense
    ``(batch, n)`` tensor padded with ``""`` (string ids) or ``-1`` (integer
    ids), or delimited strings such as ``"Action|Comedy"`` (split on
    ``separator``). Padding and empty strings are dropped, so an example
    with no ids gets a zero vector. The exported recommender serves string
    ids as delimited strings ``(batch,)`` and integer ids as padded
    ``(batch, n)`` lists.

    Args:
        embedding_dim: Size of each embedding vector.
        vocabulary: Optional list of known ids. When given, no adapt is needed.
        combiner: ``"mean"``, ``"sum"`` or ``"sqrtn"`` (sum divided by the
            square root of the number of ids).
        separator: Delimiter used to split dense string inputs.
        id_dtype: ``"string"`` or ``"int64"``.
        max_tokens: Largest table size, OOV rows included.
        min_frequency: ``adapt`` drops ids seen fewer times than this.
        num_oov_indices: Rows reserved for unseen ids.
        num_hash_bins: Hashing mode: no vocabulary, ids hashed into this many
            rows.
        embeddings_initializer: Initializer of the embedding table.
        embeddings_regularizer: Optional regularizer of the embedding table.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch, None)`` ragged ids, ``(batch, n)`` padded ids, or
            ``(batch,)`` delimited strings.
        training: Unused; accepted for Keras.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, each example's pooled embedding
        (zeros for an example with no ids).

    Example:
        >>> genres = ctxfeatures.MultiIdEmbedding(3, combiner="sum", name="genres")
        >>> genres.adapt(np.array(["Action|Comedy", "Comedy", ""]))
        >>> genres.get_vocabulary()
        ['Comedy', 'Action']
        >>> genres(tf.constant(["Action|Comedy", ""])).shape
        TensorShape([2, 3])

    Raises:
        ValueError: an unknown combiner, ``embedding_dim <= 0``, duplicates in
            the vocabulary, calling before ``adapt``, or adapting on no data.
        TypeError: float ids or ids whose dtype is not ``id_dtype``.
    """

    config_keys = ("combiner", "separator")

    def __init__(
        self,
        embedding_dim: int,
        vocabulary: Sequence[Any] | None = None,
        *,
        combiner: str = "mean",
        separator: str = "|",
        **kwargs: Any,
    ) -> None:
        check_combiner(combiner)
        if not isinstance(separator, str) or not separator:
            raise ValueError(
                "`separator` must be a non-empty string. "
                f"Received: separator={separator!r}"
            )
        super().__init__(embedding_dim, vocabulary, **kwargs)
        self.combiner = combiner
        self.separator = separator

    def _serves_lists(self) -> bool:
        # String ids are served as delimited strings, one per example.
        return self.id_dtype == "int64"

    def _validate(self, inputs: Any) -> tf.RaggedTensor:
        owner = self._owner()
        if isinstance(inputs, tf.SparseTensor):
            inputs = tf.RaggedTensor.from_sparse(inputs)
        if not isinstance(inputs, tf.RaggedTensor):
            inputs = tf.convert_to_tensor(inputs)
            rank = inputs.shape.rank
            if inputs.dtype == tf.string and (
                rank == 1 or (rank == 2 and inputs.shape[1] == 1)
            ):
                inputs = tf.strings.split(tf.reshape(inputs, [-1]), self.separator)
            elif rank != 2:
                raise ValueError(
                    f"{owner} expects ragged ids (batch, None), dense ids "
                    "(batch, n) or delimited strings (batch,). Received shape "
                    f"{inputs.shape} with dtype {inputs.dtype.name}."
                )
        if inputs.shape.rank != 2:
            raise ValueError(
                f"{owner} expects ids shaped (batch, None); received a ragged "
                f"tensor of rank {inputs.shape.rank}."
            )
        self._check_dtype(inputs.dtype)
        # Padding ("" or -1) and empty strings are never ids.
        return drop_padding(inputs)
