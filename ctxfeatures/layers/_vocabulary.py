"""Vocabulary handling shared by IdEmbedding and MultiIdEmbedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._embedding import EmbeddingFeature
from ctxfeatures.layers._inputs import (
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    check_choice,
    check_positive_int,
)
from ctxfeatures.layers.state import Vocabulary, VocabularyAccumulator

# The lookups' own OOV entries, chosen so that no real id is one: with Keras'
# defaults a real "[UNK]" or -1 id would merge into the OOV row.
_OOV_STRING = "\x00ctxfeatures-oov"
_OOV_INT = -(2**63)


def normalize_vocabulary(
    vocabulary: Sequence[Any] | np.ndarray | None, id_dtype: str, owner: str
) -> list[Any] | None:
    """Returns the vocabulary as a JSON-safe list, rejecting bad entries."""
    if vocabulary is None:
        return None
    if isinstance(vocabulary, (str, bytes)):
        raise TypeError(
            f"{owner}: `vocabulary` must be a list of ids, not a single string. "
            f"Received: vocabulary={vocabulary!r}"
        )
    values = (
        list(np.asarray(vocabulary).tolist())
        if isinstance(vocabulary, (np.ndarray, tf.Tensor))
        else list(vocabulary)
    )
    if isinstance(vocabulary, tf.Tensor):
        values = list(vocabulary.numpy().tolist())
    if not values:
        raise ValueError(f"{owner}: `vocabulary` is empty. Pass at least one id.")
    if id_dtype == "string":
        values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise TypeError(
                f"{owner}: id_dtype='string' needs string vocabulary entries; "
                f"found {bad[0]!r}. Convert the ids to strings or pass "
                "id_dtype='int64'."
            )
    else:
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise TypeError(
                f"{owner}: id_dtype='int64' needs integer vocabulary entries; "
                f"found {bad[0]!r}. Pass id_dtype='string' for string ids."
            )
        if -(2**63) in values:
            raise ValueError(
                f"{owner}: {-(2**63)} (the smallest int64) is reserved for "
                "out-of-vocabulary ids; remove it from `vocabulary`."
            )
    seen: set[Any] = set()
    duplicates = [v for v in values if v in seen or seen.add(v)]
    if duplicates:
        raise ValueError(
            f"{owner}: `vocabulary` contains duplicates, e.g. {duplicates[0]!r} "
            f"({len(duplicates)} repeated entries). Pass each id once, e.g. "
            "`sorted(set(vocabulary))`."
        )
    return values


class VocabularyEmbeddingBase(EmbeddingFeature):
    """Ids indexed by a vocabulary lookup (or hashing), then embedded.

    The indexer composes ``StringLookup`` / ``IntegerLookup`` (or
    ``Hashing``); the vocabulary is given or learned by adapt.
    """

    input_description = "id"
    config_keys = (
        "vocabulary",
        "id_dtype",
        "max_tokens",
        "min_frequency",
        "num_oov_indices",
        "num_hash_bins",
    )

    def __init__(
        self,
        embedding_dim: int,
        vocabulary: Sequence[Any] | None = None,
        *,
        id_dtype: str = "string",
        max_tokens: int | None = None,
        min_frequency: int = 1,
        num_oov_indices: int = 1,
        num_hash_bins: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(embedding_dim, **kwargs)
        owner = self._owner()
        self.id_dtype = check_choice(id_dtype, "id_dtype", ("string", "int64"))
        self.raw_dtype = tf.string if self.id_dtype == "string" else tf.int64
        self.num_oov_indices = check_positive_int(num_oov_indices, "num_oov_indices")
        self.min_frequency = check_positive_int(min_frequency, "min_frequency")
        if max_tokens is not None:
            check_positive_int(max_tokens, "max_tokens", self.num_oov_indices + 1)
        self.max_tokens = max_tokens
        if num_hash_bins is not None:
            check_positive_int(num_hash_bins, "num_hash_bins")
            if vocabulary is not None:
                raise ValueError(
                    f"{owner}: pass either `vocabulary` or `num_hash_bins`, not "
                    "both. Hashing needs no vocabulary; with a vocabulary, use "
                    "`num_oov_indices` > 1 to hash unseen ids into several rows."
                )
        self.num_hash_bins = num_hash_bins
        self.vocabulary = normalize_vocabulary(vocabulary, self.id_dtype, owner)
        self._lookup: tf.keras.layers.Layer | None = None
        if self.num_hash_bins is not None:
            self._lookup = tf.keras.layers.Hashing(
                num_bins=self.num_hash_bins, name="hashing"
            )
        elif self.vocabulary is not None:
            self._apply_state(Vocabulary(tuple(self.vocabulary)))

    # ----------------------------------------------------------------- state
    def _new_accumulator(self) -> VocabularyAccumulator | None:
        if self.num_hash_bins is not None or self.vocabulary is not None:
            return None
        size = None if self.max_tokens is None else self.max_tokens
        if size is not None:
            size -= self.num_oov_indices
        return VocabularyAccumulator(self.min_frequency, size)

    def _num_rows(self) -> int | None:
        if self.num_hash_bins is not None:
            return self.num_hash_bins
        vocabulary = self._vocabulary()
        return None if vocabulary is None else len(vocabulary) + self.num_oov_indices

    def _vocabulary(self) -> list[Any] | None:
        if self.vocabulary is not None:
            return list(self.vocabulary)
        if self._learned is not None:
            return list(self._learned.tokens)
        return None

    @property
    def is_adapted(self) -> bool:
        return self._lookup is not None

    @property
    def vocabulary_size(self) -> int:
        """The number of rows of the embedding table, the vocabulary plus the
        OOV rows (or the hash bins)."""
        self._require_adapted()
        return int(self._num_rows())

    def get_vocabulary(self) -> list[Any]:
        """The ids in the vocabulary, in index order, without the OOV entries."""
        self._require_adapted()
        if self.num_hash_bins is not None:
            raise ValueError(f"{self._owner()} hashes its ids: it has no vocabulary.")
        return self._vocabulary()

    def _not_adapted_hint(self) -> str:
        return ", or pass `vocabulary=` or `num_hash_bins=`"

    def _apply_state(self, state: Vocabulary) -> None:
        # The lookup gets the vocabulary at construction, so it keeps it in its
        # (unsaved) config and writes no asset of its own: the state's asset
        # is the single copy, robust to ids containing newlines.
        tokens = list(state.tokens)
        if self.id_dtype == "string":
            self._lookup = tf.keras.layers.StringLookup(
                vocabulary=tokens,
                num_oov_indices=self.num_oov_indices,
                mask_token=None,
                oov_token=_OOV_STRING,
                name="lookup",
            )
        else:
            self._lookup = tf.keras.layers.IntegerLookup(
                vocabulary=[int(token) for token in tokens],
                num_oov_indices=self.num_oov_indices,
                mask_token=None,
                oov_token=_OOV_INT,
                vocabulary_dtype="int64",
                name="lookup",
            )
        super()._apply_state(state)

    # ----------------------------------------------------------------- calls
    def _check_dtype(self, dtype: tf.DType) -> None:
        owner = self._owner()
        if dtype in FLOAT_DTYPES or dtype == tf.bool:
            raise TypeError(
                f"{owner} expects string or integer ids, but received dtype "
                f"{dtype.name}. Cast float ids to integers "
                "(`tf.cast(x, tf.int64)`) or format them as strings."
            )
        if self.id_dtype == "string" and dtype != tf.string:
            raise TypeError(
                f"{owner} was built for string ids (id_dtype='string') but "
                f"received {dtype.name}. Pass id_dtype='int64', or convert "
                "the ids with `tf.strings.as_string`."
            )
        if self.id_dtype == "int64" and dtype not in INTEGER_DTYPES:
            raise TypeError(
                f"{owner} was built for integer ids (id_dtype='int64') but "
                f"received {dtype.name}. Pass id_dtype='string', or convert "
                "the ids with `tf.strings.to_number(x, tf.int64)`."
            )

    def lookup_ids(self, ids: tf.Tensor) -> tf.Tensor:
        """Table rows of already validated flat ids (OOV ids get an OOV row)."""
        if self.id_dtype == "int64" and ids.dtype != tf.int64:
            ids = tf.cast(ids, tf.int64)
        return self._lookup(ids)

    def _transform(self, values: tf.Tensor | tf.RaggedTensor) -> Any:
        if isinstance(values, tf.RaggedTensor):
            return values.with_flat_values(self.lookup_ids(values.flat_values))
        return self.lookup_ids(values)
