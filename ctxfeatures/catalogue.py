"""The catalogue: the candidates a model ranks, validated once, embedded on demand.

Shared by evaluation and export: :class:`Catalogue` reads the candidate
features once and embeds them with the candidate tower; :class:`CatalogueIndex`
maps ids to catalogue positions for ranking and exclusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

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
            or not.
        candidate_id: Key of the candidate identifier.
        tower: The candidate tower.

    Raises:
        TypeError: ``candidates`` is not a dataset of dicts, or a feature's
            dtype is not the one the tower takes.
        ValueError: a missing key, or an empty catalogue.
    """

    def __init__(self, candidates: tf.data.Dataset, candidate_id: str, tower: Tower):
        self.tower = tower
        self.candidate_id = candidate_id
        self.dataset = self._check(candidates)
        self._batches: dict[int, list[dict[str, tf.Tensor]]] = {}
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

    def batches(self, batch_size: int = _BATCH) -> list[dict[str, tf.Tensor]]:
        """The catalogue's id and tower features, read from its dataset once."""
        if batch_size not in self._batches:
            keys = list(dict.fromkeys([self.candidate_id, *self.tower.feature_names]))
            self._batches = {
                batch_size: [
                    {key: batch[key] for key in keys}
                    for batch in batched(self.dataset, batch_size)
                ]
            }
        return self._batches[batch_size]

    @property
    def index(self) -> CatalogueIndex:
        """The :class:`CatalogueIndex` of the catalogue's ids, built once."""
        if self._index is None:
            with tf.init_scope():
                ids = [batch[self.candidate_id] for batch in self.batches()]
                self._index = CatalogueIndex(tf.concat(ids, axis=0))
        return self._index

    def prepared(self) -> tuple[tf.Tensor, dict[str, Any]]:
        """``(distinct-id index per entry, the tower's preprocess output)`` of
        the whole catalogue as one batch, computed once, for losses that
        embed the catalogue at every training step. Adapt the tower first."""
        if self._prepared is None:
            with tf.init_scope():
                batches = self.batches()
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
        """``(ids, vectors)`` of the whole catalogue, embedded now."""
        ids, vectors = [], []
        for batch in self.batches(batch_size):
            ids.append(batch[self.candidate_id])
            vectors.append(self._embed(batch))
        return tf.concat(ids, axis=0), tf.concat(vectors, axis=0)


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
        self.first = tf.math.unsorted_segment_min(
            tf.range(tf.shape(self.ids, out_type=tf.int64)[0]),
            self.position,
            self.unique_count,
        )

    def lookup(self, values: tf.Tensor) -> tf.Tensor:
        """Distinct-id index of each value; -1 for ids outside the catalogue."""
        if values.dtype != self.ids.dtype:
            values = tf.cast(values, tf.int64)
        return self.table.lookup(values)

    def seen(self, exclude: Any, batch: tf.Tensor) -> tf.Tensor:
        """``(batch, distinct ids)`` mask of each row's items in ``exclude``.

        ``exclude`` is ``(batch, length)`` or ragged; padding and ids outside
        the catalogue are ignored.
        """
        if isinstance(exclude, tf.RaggedTensor):
            rows, values = exclude.value_rowids(), exclude.flat_values
        else:
            width = tf.shape(exclude, out_type=tf.int64)[1]
            rows = tf.repeat(tf.range(batch), width)
            values = tf.reshape(exclude, [-1])
        distinct = self.lookup(values)
        flat = tf.boolean_mask(rows * self.unique_count + distinct, distinct >= 0)
        cells = tf.cast(batch * self.unique_count, tf.int32)
        counts = tf.math.bincount(
            tf.cast(flat, tf.int32), minlength=cells, maxlength=cells
        )
        return tf.reshape(counts > 0, [-1, self.unique_count])

    def excluded(self, exclude: Any, batch: tf.Tensor) -> tf.Tensor:
        """``(batch, num_candidates)`` mask of the catalogue entries to drop."""
        return tf.gather(self.seen(exclude, batch), self.position, axis=1)
