"""TextEmbedding: a string (e.g. a title) to the masked mean of token embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._embedding import EmbeddingFeature
from ctxfeatures.layers._inputs import as_column, check_choice, check_positive_int
from ctxfeatures.layers._vocabulary import normalize_vocabulary
from ctxfeatures.layers.state import Vocabulary, VocabularyAccumulator

STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)
SPLIT = ("whitespace", "character")
# TextVectorization's own punctuation pattern, so adapt counts the tokens the
# composed layer will see.
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
# TextVectorization's padding and OOV entries, ahead of the learned tokens.
_RESERVED = 2


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class TextEmbedding(EmbeddingFeature):
    """Tokenises strings, embeds the tokens and averages them over the mask.

    Composes a Keras ``TextVectorization`` (vocabulary learned by
    :meth:`adapt`, with the same standardisation and splitting) with an
    ``Embedding`` whose row 0 is padding. The mean runs over real tokens
    only, so padding never dilutes short titles; an empty string gives a zero
    vector, never NaN. Unknown tokens share the ``[UNK]`` row.

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
        embeddings_regularizer: Optional regularizer of the embedding table.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` strings.
        training: Unused; accepted for Keras.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, the mean of each string's token
        embeddings (zeros for an empty string).

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
    combiner = "mean"
    raw_dtype = tf.string
    config_keys = ("max_tokens", "vocabulary", "standardize", "split", "ngrams")

    def __init__(
        self,
        embedding_dim: int,
        max_tokens: int | None = 10_000,
        vocabulary: Sequence[str] | None = None,
        standardize: str | None = "lower_and_strip_punctuation",
        split: str = "whitespace",
        ngrams: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(embedding_dim, **kwargs)
        owner = self._owner()
        if max_tokens is not None:
            check_positive_int(max_tokens, "max_tokens", _RESERVED + 1)
        self.max_tokens = max_tokens
        self.standardize = check_choice(standardize, "standardize", STANDARDIZE)
        self.split = check_choice(split, "split", SPLIT)
        if ngrams is not None:
            check_positive_int(ngrams, "ngrams")
        self.ngrams = ngrams
        self.vocabulary = normalize_vocabulary(vocabulary, "string", owner)
        self._vectorizer: tf.keras.layers.TextVectorization | None = None
        if self.vocabulary is not None:
            self._apply_state(Vocabulary(tuple(self.vocabulary)))

    # ----------------------------------------------------------------- state
    def _new_accumulator(self) -> VocabularyAccumulator | None:
        if self.vocabulary is not None:
            return None
        size = None if self.max_tokens is None else self.max_tokens - _RESERVED
        return VocabularyAccumulator(max_size=size)

    def _adapt_values(self, batch: Any) -> Any:
        return self._tokens(self._validate(batch)).flat_values.numpy()

    def _tokens(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """The tokens TextVectorization makes of ``strings`` (for counting)."""
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            strings = tf.strings.lower(strings)
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            strings = tf.strings.regex_replace(strings, _PUNCTUATION, "")
        if self.split == "whitespace":
            tokens = tf.strings.split(strings)
        else:
            tokens = tf.strings.unicode_split(strings, "UTF-8")
        if self.ngrams is not None:
            widths = tuple(range(1, self.ngrams + 1))
            tokens = tf.strings.ngrams(tokens, ngram_width=widths, separator=" ")
        return tokens

    def _apply_state(self, state: Vocabulary) -> None:
        # Built with the vocabulary, the inner layer keeps no asset of its own:
        # the state's asset is the single saved copy.
        tokens = [t for t in state.tokens if t not in ("", "[UNK]")]
        self._tokens_kept = tokens
        self._vectorizer = tf.keras.layers.TextVectorization(
            max_tokens=self.max_tokens,
            standardize=self.standardize,
            split=self.split,
            ngrams=self.ngrams,
            output_mode="int",
            vocabulary=tokens,
            ragged=True,
            name="vectorizer",
        )
        super()._apply_state(state)

    @property
    def is_adapted(self) -> bool:
        return self._vectorizer is not None

    def _num_rows(self) -> int | None:
        if self._vectorizer is None:
            return None
        # Padding and [UNK] come first; counted in Python, not in the graph.
        return len(self._tokens_kept) + _RESERVED

    def _not_adapted_hint(self) -> str:
        return ", or pass `vocabulary=`"

    def get_vocabulary(self) -> list[str]:
        """Tokens in index order, with padding ``''`` and ``'[UNK]'`` first."""
        self._require_adapted()
        return [str(token) for token in self._vectorizer.get_vocabulary()]

    # ----------------------------------------------------------------- calls
    def _validate(self, inputs: Any) -> tf.Tensor:
        column = as_column(inputs, self._owner(), self.input_description)
        if column.dtype != tf.string:
            raise TypeError(
                f"{self._owner()} expects strings but received dtype "
                f"{column.dtype.name}. Convert with `tf.strings.as_string`, or "
                "use IdEmbedding for numeric ids."
            )
        return column

    def _transform(self, values: tf.Tensor) -> tf.RaggedTensor:
        # Ragged token ids: padding would cost lookups and gradient rows.
        return self._vectorizer(values)

    def embed(
        self, prepared: tf.RaggedTensor | tf.Tensor, training: bool | None = None
    ) -> tf.Tensor:
        if not isinstance(prepared, tf.RaggedTensor):
            # Padded token ids (index 0 is padding), e.g. from a user pipeline.
            prepared = tf.RaggedTensor.from_tensor(prepared, padding=0)
        return super().embed(prepared, training)

    def _serves_lists(self) -> bool:
        return False
