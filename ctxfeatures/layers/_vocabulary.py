"""Vocabulary handling shared by IdEmbedding and MultiIdEmbedding."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._base import (
    _FLOAT_DTYPES,
    _INTEGER_DTYPES,
    FeatureLayer,
    check_choice,
    check_positive_int,
)

_VOCABULARY_FILE = "vocabulary.json"


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
        if -1 in values:
            raise ValueError(
                f"{owner}: -1 is reserved for out-of-vocabulary integer ids; "
                "remove it from `vocabulary`."
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


class VocabularyEmbeddingBase(FeatureLayer):
    """Lookup (vocabulary or hashing) followed by an embedding table."""

    input_description = "id"

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
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = self._owner()
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.id_dtype = check_choice(id_dtype, "id_dtype", ("string", "int64"))
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
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = tf.keras.regularizers.get(embeddings_regularizer)
        # Counting state for adapt; a SimpleNamespace is not tracked by Keras.
        self._adapt = types.SimpleNamespace(counts={})
        self._learned_vocabulary: list[Any] | None = None
        self._lookup: tf.keras.layers.Layer | None = None
        self._embedding: tf.keras.layers.Embedding | None = None
        if self.num_hash_bins is not None:
            self._lookup = tf.keras.layers.Hashing(
                num_bins=self.num_hash_bins, name="hashing"
            )
            self._make_embedding(self.num_hash_bins)
        elif self.vocabulary is not None:
            self._set_vocabulary(self.vocabulary)

    # ----------------------------------------------------------------- state
    @property
    def output_dim(self) -> int:
        return self.embedding_dim

    @property
    def is_adapted(self) -> bool:
        return self._lookup is not None

    @property
    def needs_adapt(self) -> bool:
        return self.num_hash_bins is None and self.vocabulary is None

    @property
    def vocabulary_size(self) -> int:
        """Rows of the embedding table: vocabulary plus OOV rows (or hash bins)."""
        self._require_adapted()
        return int(self._embedding.input_dim)

    def get_vocabulary(self) -> list[Any]:
        """The ids in the vocabulary, in index order, without the OOV entries."""
        self._require_adapted()
        if self.num_hash_bins is not None:
            raise ValueError(f"{self._owner()} hashes its ids: it has no vocabulary.")
        return list(self.vocabulary or self._learned_vocabulary or [])

    def _not_adapted_hint(self) -> str:
        return ", or pass `vocabulary=` or `num_hash_bins=`"

    def _make_embedding(self, rows: int) -> None:
        self._embedding = tf.keras.layers.Embedding(
            rows,
            self.embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            embeddings_regularizer=self.embeddings_regularizer,
            name="embedding",
        )
        if self.built:
            self._embedding.build((None,))

    def _set_vocabulary(self, tokens: list[Any]) -> None:
        # The lookup gets the vocabulary at construction, so it keeps it in its
        # (unsaved) config and writes no asset of its own: this layer's JSON
        # asset is the single copy, robust to ids containing newlines.
        if self.id_dtype == "string":
            self._lookup = tf.keras.layers.StringLookup(
                vocabulary=tokens,
                num_oov_indices=self.num_oov_indices,
                mask_token=None,
                name="lookup",
            )
        else:
            self._lookup = tf.keras.layers.IntegerLookup(
                vocabulary=[int(token) for token in tokens],
                num_oov_indices=self.num_oov_indices,
                mask_token=None,
                vocabulary_dtype="int64",
                name="lookup",
            )
        rows = len(tokens) + self.num_oov_indices
        if self._embedding is None or self._embedding.input_dim != rows:
            self._make_embedding(rows)

    def build(self, input_shape: Any = None) -> None:
        if self._embedding is not None and not self._embedding.built:
            self._embedding.build((None,))
        self.built = True

    # ----------------------------------------------------------------- adapt
    def reset_state(self) -> None:
        self._adapt.counts = {}

    def _flat_ids(self, data: Any) -> tf.Tensor:
        raise NotImplementedError

    def update_state(self, data: Any) -> None:
        if not self.needs_adapt:
            return
        ids = self._flat_ids(data)
        self._check_dtype(ids.dtype)
        values, counts = np.unique(ids.numpy(), return_counts=True)
        table = self._adapt.counts
        for value, count in zip(values.tolist(), counts.tolist()):
            table[value] = table.get(value, 0) + count

    def finalize_state(self) -> None:
        if not self.needs_adapt:
            return
        counts = self._adapt.counts
        if not counts:
            raise ValueError(
                f"{self._owner()}.adapt() received no ids. Pass at least one value."
            )
        kept = [t for t, c in counts.items() if c >= self.min_frequency]
        if not kept:
            raise ValueError(
                f"{self._owner()}: no id occurs at least min_frequency="
                f"{self.min_frequency} times. Lower `min_frequency`."
            )
        # Most frequent first; ties broken by id so the order is reproducible.
        kept.sort(key=lambda token: (-counts[token], token))
        if self.max_tokens is not None:
            kept = kept[: self.max_tokens - self.num_oov_indices]
        if self.id_dtype == "string":
            kept = [t.decode("utf-8") for t in kept]
        self._learned_vocabulary = kept
        self._adapt.counts = {}
        self._set_vocabulary(kept)

    # ----------------------------------------------------------------- saving
    def save_assets(self, dir_path: str) -> None:
        if self._learned_vocabulary is not None and self.vocabulary is None:
            path = os.path.join(dir_path, _VOCABULARY_FILE)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self._learned_vocabulary, handle, ensure_ascii=False)

    def load_assets(self, dir_path: str) -> None:
        path = os.path.join(dir_path, _VOCABULARY_FILE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self._learned_vocabulary = json.load(handle)
            self._set_vocabulary(self._learned_vocabulary)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "vocabulary": self.vocabulary,
                "id_dtype": self.id_dtype,
                "max_tokens": self.max_tokens,
                "min_frequency": self.min_frequency,
                "num_oov_indices": self.num_oov_indices,
                "num_hash_bins": self.num_hash_bins,
                "embeddings_initializer": tf.keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "embeddings_regularizer": tf.keras.regularizers.serialize(
                    self.embeddings_regularizer
                )
                if self.embeddings_regularizer is not None
                else None,
            }
        )
        return config

    # ----------------------------------------------------------------- calls
    def _check_dtype(self, dtype: tf.DType) -> None:
        owner = self._owner()
        if dtype in _FLOAT_DTYPES or dtype == tf.bool:
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
        if self.id_dtype == "int64" and dtype not in _INTEGER_DTYPES:
            raise TypeError(
                f"{owner} was built for integer ids (id_dtype='int64') but "
                f"received {dtype.name}. Pass id_dtype='string', or convert "
                "the ids with `tf.strings.to_number(x, tf.int64)`."
            )

    def _lookup_ids(self, ids: tf.Tensor) -> tf.Tensor:
        if self.id_dtype == "int64" and ids.dtype != tf.int64:
            ids = tf.cast(ids, tf.int64)
        return self._lookup(ids)

    def input_signature(self) -> tf.TensorSpec:
        dtype = tf.string if self.id_dtype == "string" else tf.int64
        return tf.TensorSpec(shape=[None], dtype=dtype)
