"""The catalogue: the candidates a model ranks, validated once, embedded on demand.

Shared by evaluation and export: :class:`Catalogue` reads the candidate
features once and embeds them with the candidate tower; :class:`CatalogueIndex`
maps ids to catalogue positions for ranking and exclusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._data import as_dataset, is_columns
from ctxfeatures.layers._inputs import batched
from ctxfeatures.tower import Tower

_BATCH = 4096


class Catalogue:
    """The candidate catalogue of a model, with its tower.

    Validated when created (a dataset of feature dicts holding the id and
    every feature the tower reads, with matching dtypes, not empty). The
    features are read from the dataset once; :meth:`embed` runs the tower
    over them each time it is called, since training changes the vectors.

    Args:
        candidates: A ``tf.data.Dataset`` of candidate feature dicts, batched
            or not, or a mapping of equal-length columns.
        candidate_id: Key of the candidate identifier.
        tower: The candidate tower.

    Raises:
        TypeError: ``candidates`` is not a dataset of dicts, or a feature's
            dtype is not the one the tower takes.
        ValueError: a missing key, or an empty catalogue.
    """

    def __init__(
        self,
        candidates: tf.data.Dataset | Mapping[str, Any],
        candidate_id: str,
        tower: Tower,
    ):
        self.tower = tower
        self.candidate_id = candidate_id
        if is_columns(candidates):
            candidates = as_dataset(candidates, f"Tower '{tower.name}'", "candidates")
        self.dataset = self._check(candidates)
        self._index: CatalogueIndex | None = None
        self._prepared: tuple[tf.Tensor, dict[str, Any]] | None = None
        # One compiled function for the catalogue's life: never retraced.
        self._embed = tf.function(
            tf.autograph.experimental.do_not_convert(tower.__call__),
            reduce_retracing=True,
        )

    def _check(self, candidates: tf.data.Dataset) -> tf.data.Dataset:
        tower = self.tower
        if not isinstance(candidates, tf.data.Dataset) or not isinstance(
            candidates.element_spec, Mapping
        ):
            raise TypeError(
                f"Tower '{tower.name}': `candidates` must be a tf.data.Dataset of "
                f"feature dicts; received {type(candidates).__name__}."
            )
        spec = candidates.element_spec
        for key in [self.candidate_id, *tower.feature_names]:
            if key not in spec:
                raise ValueError(
                    f"Tower '{tower.name}': the catalogue has no feature '{key}'. "
                    f"Catalogue keys: {sorted(spec)}."
                )
        for feature, expected in tower.input_signature().items():
            got = spec[feature].dtype
            compatible = got == expected.dtype or (
                got.is_integer and expected.dtype.is_integer
            )
            if not compatible:
                raise TypeError(
                    f"Tower '{tower.name}', feature '{feature}': the catalogue "
                    f"holds {got.name} but the tower expects "
                    f"{expected.dtype.name}. Convert the catalogue column or "
                    "change the layer's id_dtype."
                )
        if candidates.take(1).cardinality() == 0 or not any(
            True for _ in candidates.take(1)
        ):
            raise ValueError(f"Tower '{tower.name}': the candidate catalogue is empty.")
        return candidates

    def stream(self, batch_size: int = _BATCH) -> tf.data.Dataset:
        """The catalogue's id and tower features in batches, read from its
        dataset on each pass (never held in Python lists)."""
        keys = list(dict.fromkeys([self.candidate_id, *self.tower.feature_names]))
        return (
            batched(self.dataset, batch_size)
            .map(lambda batch: {key: batch[key] for key in keys})
            .prefetch(tf.data.AUTOTUNE)
        )

    @property
    def index(self) -> CatalogueIndex:
        """The :class:`~ctxfeatures.evaluation.CatalogueIndex` of the
        catalogue's ids, built once."""
        if self._index is None:
            with tf.init_scope():
                ids = self.stream().map(lambda batch: batch[self.candidate_id])
                self._index = CatalogueIndex(tf.concat(list(ids), axis=0))
        return self._index

    def prepared(self) -> tuple[tf.Tensor, dict[str, Any]]:
        """``(distinct-id index per entry, the tower's preprocess output)`` of
        the whole catalogue as one batch, computed once, for losses that
        embed the catalogue at every training step. Adapt the tower first."""
        if self._prepared is None:
            with tf.init_scope():
                batches = list(self.stream())
                features = {
                    key: tf.concat([batch[key] for batch in batches], axis=0)
                    for key in batches[0]
                }
                self._prepared = (
                    self.index.position,
                    self.tower.preprocess(features),
                )
        return self._prepared

    def embed(self, batch_size: int = _BATCH) -> tuple[tf.Tensor, tf.Tensor]:
        """``(ids, vectors)`` of the whole catalogue, embedded now.

        Streamed from the dataset: each batch's vectors are written into one
        buffer of the final size, so a catalogue of 10**7 items needs its
        vectors once in memory, not twice.
        """
        ids = self.index.ids
        vectors = None
        start = 0
        for batch in self.stream(batch_size):
            chunk = self._embed(batch).numpy()
            if vectors is None:
                vectors = _aligned_empty((int(ids.shape[0]), chunk.shape[1]), chunk)
            vectors[start : start + len(chunk)] = chunk
            start += len(chunk)
        return ids, _to_tensor(vectors)


def _to_tensor(array: np.ndarray) -> tf.Tensor:
    """The array as a tensor: DLPack hands the buffer over without a copy."""
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (AttributeError, BufferError, TypeError, ValueError):
        # A dtype DLPack cannot carry (e.g. ml_dtypes' bfloat16): one copy.
        return tf.convert_to_tensor(array)


def _aligned_empty(shape: tuple[int, int], like: np.ndarray) -> np.ndarray:
    """An uninitialised array aligned for TensorFlow (64 bytes)."""
    size = shape[0] * shape[1]
    raw = np.empty(size + 64 // like.itemsize, like.dtype)
    offset = (-raw.ctypes.data % 64) // like.itemsize
    return raw[offset : offset + size].reshape(shape)


class CatalogueIndex(tf.Module):
    """Catalogue ids and the lookups that rank and exclude by id.

    Shared by evaluation and the exported recommender; a ``tf.Module``, so a
    SavedModel that holds one keeps its lookup table.

    Args:
        ids: ``(num_candidates,)`` string or integer ids, duplicates allowed.
    """

    def __init__(self, ids: Any) -> None:
        super().__init__(name="catalogue_index")
        ids = tf.convert_to_tensor(ids)
        self.ids = ids if ids.dtype == tf.string else tf.cast(ids, tf.int64)
        unique, position = tf.unique(self.ids)
        self.unique_count = int(unique.shape[0])
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                unique, tf.range(self.unique_count, dtype=tf.int64)
            ),
            default_value=-1,
        )
        # Catalogue position -> distinct id, and distinct id -> first position.
        self.position = tf.cast(position, tf.int64)
        size = tf.shape(self.ids, out_type=tf.int64)[0]
        self.first = tf.math.unsorted_segment_min(
            tf.range(size), self.position, self.unique_count
        )
        # Distinct id -> all its positions (ragged), for exclusion by id.
        order = tf.argsort(self.position, stable=True)
        self.positions_of = tf.RaggedTensor.from_value_rowids(
            tf.cast(order, tf.int64),
            tf.gather(self.position, order),
            nrows=self.unique_count,
        )

    @tf.autograph.experimental.do_not_convert
    def lookup(self, values: tf.Tensor) -> tf.Tensor:
        """Distinct-id index of each value; -1 for ids outside the catalogue."""
        if values.dtype != self.ids.dtype:
            values = tf.cast(values, tf.int64)
        return self.table.lookup(values)

    @tf.autograph.experimental.do_not_convert
    def excluded_keys(self, exclude: Any, batch: tf.Tensor) -> tf.Tensor:
        """Sorted, distinct ``position * batch + row`` of the entries to drop.

        One key per (request row, catalogue position) whose id is in that
        row's ``exclude`` list (every position of a duplicated id). Memory is
        the size of ``exclude``, never ``batch * num_candidates``: the keys
        are sorted by position, so a chunk of the catalogue finds its own
        with two binary searches (:meth:`chunk_mask`).

        Args:
            exclude: ``(batch, length)`` ids, or ragged; padding and ids
                outside the catalogue are ignored.
            batch: The number of request rows (int64 scalar).
        """
        if isinstance(exclude, tf.RaggedTensor):
            rows, values = exclude.value_rowids(), exclude.flat_values
        else:
            width = tf.shape(exclude, out_type=tf.int64)[1]
            rows = tf.repeat(tf.range(batch), width)
            values = tf.reshape(exclude, [-1])
        distinct = self.lookup(values)
        known = distinct >= 0
        rows, distinct = tf.boolean_mask(rows, known), tf.boolean_mask(distinct, known)
        # Every catalogue position holding each excluded id.
        positions = tf.gather(self.positions_of, distinct)
        rows = tf.gather(rows, positions.value_rowids())
        # A history may name an item twice: keep each key once (unique keeps
        # the order of first occurrences, so sorted stays sorted).
        keys, _ = tf.unique(tf.sort(positions.flat_values * batch + rows))
        return keys

    @tf.autograph.experimental.do_not_convert
    def chunk_mask(
        self, keys: tf.Tensor, batch: tf.Tensor, start: tf.Tensor, stop: tf.Tensor
    ) -> tf.Tensor:
        """``(batch, stop - start)`` mask of the excluded entries of a chunk.

        ``keys`` come from :meth:`excluded_keys` with the same ``batch``.
        """
        bounds = tf.searchsorted(keys, tf.stack([start * batch, stop * batch]))
        chunk = keys[bounds[0] : bounds[1]]
        width = stop - start
        cells = (chunk % batch) * width + chunk // batch - start
        size = tf.cast(batch * width, tf.int32)
        counts = tf.math.bincount(
            tf.cast(cells, tf.int32), minlength=size, maxlength=size
        )
        return tf.reshape(counts > 0, tf.stack([batch, width]))

    @tf.autograph.experimental.do_not_convert
    def contains(self, keys: tf.Tensor, query: tf.Tensor) -> tf.Tensor:
        """Whether each ``position * batch + row`` in ``query`` is in ``keys``."""
        where = tf.searchsorted(keys, tf.reshape(query, [-1]))
        found = tf.gather(tf.concat([keys, [-1]], 0), where)
        return tf.reshape(found == tf.reshape(query, [-1]), tf.shape(query))
