"""IdEmbedding: one categorical id per example to a learned embedding."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ctxfeatures.layers._inputs import as_column
from ctxfeatures.layers._vocabulary import VocabularyEmbeddingBase


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class IdEmbedding(VocabularyEmbeddingBase):
    """Maps string or integer ids to ``(batch, embedding_dim)`` embeddings.

    Composes a Keras ``StringLookup`` / ``IntegerLookup`` (or ``Hashing``)
    with an ``Embedding``. The vocabulary is either given or learned by
    :meth:`adapt`, most frequent ids first. Unseen ids never fail: they go to
    one of ``num_oov_indices`` out-of-vocabulary rows, indices
    ``0 .. num_oov_indices - 1``.

    Args:
        embedding_dim: Size of each embedding vector.
        vocabulary: Optional list of known ids. When given, no adapt is needed.
        id_dtype: ``"string"`` or ``"int64"``: the dtype of the raw ids.
        max_tokens: Largest table size, OOV rows included (Keras semantics).
            ``adapt`` keeps the most frequent ids.
        min_frequency: ``adapt`` drops ids seen fewer times than this.
        num_oov_indices: Rows reserved for unseen ids; more than one hashes
            unseen ids across them.
        num_hash_bins: Hashing mode for unbounded vocabularies: ids are hashed
            into this many rows and no vocabulary is kept.
        embeddings_initializer: Initializer of the embedding table.
        embeddings_regularizer: Optional regularizer of the embedding table.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` ids of ``id_dtype`` (a tensor,
            numpy array or list).
        training: Unused; accepted for Keras.

    Returns:
        ``(batch, embedding_dim)`` float32 embeddings, one per id.

    Example:
        >>> layer = ctxfeatures.IdEmbedding(4, name="user")
        >>> layer.adapt(np.array(["a", "b", "b", "c"]))
        >>> layer.get_vocabulary()
        ['b', 'a', 'c']
        >>> layer.lookup(tf.constant(["b", "never-seen"])).numpy()
        array([1, 0])
        >>> layer(tf.constant(["a", "zzz"])).shape
        TensorShape([2, 4])

    Raises:
        ValueError: ``embedding_dim <= 0``, a vocabulary with duplicates,
            calling before ``adapt``, adapting on empty data, or ids of rank
            other than ``(batch,)`` / ``(batch, 1)``.
        TypeError: float or bool ids, or ids whose dtype is not ``id_dtype``.
    """

    def lookup(self, inputs: Any) -> tf.Tensor:
        """Returns the table row of each id (OOV ids get ``< num_oov_indices``)."""
        return self.preprocess(inputs)

    def _validate(self, inputs: Any) -> tf.Tensor:
        ids = as_column(inputs, self._owner(), self.input_description)
        self._check_dtype(ids.dtype)
        return ids
