"""TextEmbedding: a string (e.g. a title) to the masked mean of token embeddings."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._base import (
    FeatureLayer,
    as_column,
    check_choice,
    check_positive_int,
    pool_rows,
)
from ctxfeatures.layers._vocabulary import normalize_vocabulary

_VOCABULARY_FILE = "vocabulary.json"
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)
SPLIT = ("whitespace", "character")


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class TextEmbedding(FeatureLayer):
    """Tokenises strings, embeds the tokens and averages them over the mask.

    Composes a Keras ``TextVectorization`` (vocabulary learned by
    :meth:`adapt`) with an ``Embedding`` whose row 0 is padding. The mean runs
    over real tokens only, so padding never dilutes short titles; an empty
    string gives a zero vector, never NaN. Unknown tokens share the ``[UNK]``
    row.

    Args:
        embedding_dim: Size of the output vector.
        max_tokens: Largest vocabulary, padding and ``[UNK]`` included.
        vocabulary: Optional list of tokens (already standardised); when given,
            no adapt is needed.
        standardize: ``"lower_and_strip_punctuation"``, ``"lower"``,
            ``"strip_punctuation"`` or ``None``.
        split: ``"whitespace"`` or ``"character"``.
        ngrams: Optional n-gram size (``2`` adds bigrams to the tokens).
        embeddings_initializer: Initializer of the embedding table.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Example:
        >>> titles = ctxfeatures.TextEmbedding(4, name="title_text")
        >>> titles.adapt(np.array(["Toy Story (1995)", "Heat (1995)"]))
        >>> titles.get_vocabulary()[:3]
        ['', '[UNK]', '1995']
        >>> titles(tf.constant(["", "toy heat"])).numpy()[0].tolist()
        [0.0, 0.0, 0.0, 0.0]

    Raises:
        ValueError: ``embedding_dim <= 0``, a vocabulary with duplicates,
            calling before ``adapt``, adapting on no data, a wrong rank.
        TypeError: non-string inputs.
    """

    input_description = "string"

    def __init__(
        self,
        embedding_dim: int,
        max_tokens: int | None = 10_000,
        vocabulary: Sequence[str] | None = None,
        standardize: str | None = "lower_and_strip_punctuation",
        split: str = "whitespace",
        ngrams: int | None = None,
        embeddings_initializer: Any = "uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = self._owner()
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        if max_tokens is not None:
            check_positive_int(max_tokens, "max_tokens", 3)
        self.max_tokens = max_tokens
        self.standardize = check_choice(standardize, "standardize", STANDARDIZE)
        self.split = check_choice(split, "split", SPLIT)
        if ngrams is not None:
            check_positive_int(ngrams, "ngrams")
        self.ngrams = ngrams
        self.vocabulary = normalize_vocabulary(vocabulary, "string", owner)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self._adapt = types.SimpleNamespace(vectorizer=None)
        self._learned_vocabulary: list[str] | None = None
        self._vectorizer: tf.keras.layers.TextVectorization | None = None
        self._embedding: tf.keras.layers.Embedding | None = None
        if self.vocabulary is not None:
            self._set_vocabulary(self.vocabulary)

    def _text_vectorization(self, **kwargs: Any) -> tf.keras.layers.TextVectorization:
        return tf.keras.layers.TextVectorization(
            max_tokens=self.max_tokens,
            standardize=self.standardize,
            split=self.split,
            ngrams=self.ngrams,
            output_mode="int",
            **kwargs,
        )

    @property
    def output_dim(self) -> int:
        return self.embedding_dim

    @property
    def is_adapted(self) -> bool:
        return self._vectorizer is not None

    @property
    def needs_adapt(self) -> bool:
        return self.vocabulary is None

    def _not_adapted_hint(self) -> str:
        return ", or pass `vocabulary=`"

    def get_vocabulary(self) -> list[str]:
        """Tokens in index order, with padding ``''`` and ``'[UNK]'`` first."""
        self._require_adapted()
        return [str(token) for token in self._vectorizer.get_vocabulary()]

    def _set_vocabulary(self, tokens: list[str]) -> None:
        # Built with the vocabulary, the inner layer keeps no asset of its own;
        # this layer's JSON asset is the single saved copy.
        self._vectorizer = self._text_vectorization(
            vocabulary=tokens, ragged=True, name="vectorizer"
        )
        rows = self._vectorizer.vocabulary_size()
        if self._embedding is None or self._embedding.input_dim != rows:
            self._embedding = tf.keras.layers.Embedding(
                rows,
                self.embedding_dim,
                embeddings_initializer=self.embeddings_initializer,
                mask_zero=True,
                name="embedding",
            )
            if self.built:
                self._embedding.build((None, None))

    def build(self, input_shape: Any = None) -> None:
        if self._embedding is not None and not self._embedding.built:
            self._embedding.build((None, None))
        self.built = True

    def _strings(self, inputs: Any) -> tf.Tensor:
        column = as_column(inputs, self._owner(), self.input_description)
        if column.dtype != tf.string:
            raise TypeError(
                f"{self._owner()} expects strings but received dtype "
                f"{column.dtype.name}. Convert with `tf.strings.as_string`, or "
                "use IdEmbedding for numeric ids."
            )
        return column

    def reset_state(self) -> None:
        self._adapt = types.SimpleNamespace(vectorizer=None)

    def update_state(self, data: Any) -> None:
        if not self.needs_adapt:
            return
        if self._adapt.vectorizer is None:
            self._adapt.vectorizer = self._text_vectorization()
        self._adapt.vectorizer.update_state(self._strings(data))

    def finalize_state(self) -> None:
        if not self.needs_adapt:
            return
        adapter = self._adapt.vectorizer
        if adapter is None:
            raise ValueError(
                f"{self._owner()}.adapt() received no strings. Pass at least one."
            )
        adapter.finalize_state()
        tokens = [str(token) for token in adapter.get_vocabulary()]
        self._adapt = types.SimpleNamespace(vectorizer=None)
        self._learned_vocabulary = tokens
        self._set_vocabulary(tokens)

    def save_assets(self, dir_path: str) -> None:
        if self._learned_vocabulary is not None and self.vocabulary is None:
            with open(os.path.join(dir_path, _VOCABULARY_FILE), "w") as handle:
                json.dump(self._learned_vocabulary, handle, ensure_ascii=False)

    def load_assets(self, dir_path: str) -> None:
        path = os.path.join(dir_path, _VOCABULARY_FILE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self._learned_vocabulary = json.load(handle)
            self._set_vocabulary(self._learned_vocabulary)

    def _validate(self, inputs: Any) -> tf.Tensor:
        return self._strings(inputs)

    def _transform(self, values: tf.Tensor) -> tf.RaggedTensor:
        # Ragged token ids: padding would cost lookups and gradient rows.
        return self._vectorizer(values)

    def embed(
        self, prepared: tf.RaggedTensor | tf.Tensor, training: bool | None = None
    ) -> tf.Tensor:
        if not isinstance(prepared, tf.RaggedTensor):
            # Padded token ids (index 0 is padding), e.g. from a user pipeline.
            prepared = tf.RaggedTensor.from_tensor(prepared, padding=0)
        return pool_rows(self._embedding(prepared.flat_values), prepared, "mean")

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        # The pooled output has no time axis left to mask.
        return None

    def input_signature(self) -> tf.TensorSpec:
        return tf.TensorSpec(shape=[None], dtype=tf.string)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "max_tokens": self.max_tokens,
                "vocabulary": self.vocabulary,
                "standardize": self.standardize,
                "split": self.split,
                "ngrams": self.ngrams,
                "embeddings_initializer": tf.keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
