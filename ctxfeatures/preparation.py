"""A RetrievalModel's input pipeline: raw batches to prepared ones.

``PreparesInput`` holds :meth:`~ctxfeatures.RetrievalModel.prepare`
and the checks of the columns the loss reads; :class:`~ctxfeatures.RetrievalModel`
inherits it, so the model's own module keeps the step, the loss and serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from ctxfeatures._checks import check_batch
from ctxfeatures._data import as_dataset, is_columns
from ctxfeatures.layers._inputs import (
    check_feature_dataset,
    check_positive_int,
    is_batched,
)
from ctxfeatures.tower import PreparedBatch

_SHUFFLE = 100_000


class PreparesInput:
    """Moves the towers' non-trainable work into ``tf.data`` (a mixin of
    :class:`~ctxfeatures.RetrievalModel`, which provides the towers, the
    candidate id and the columns the loss reads)."""

    # ----------------------------------------------------------------- input
    @property
    def _loss_reads_ids(self) -> bool:
        return self.remove_accidental_hits or self.negatives.needs_ids

    def _context_keys(self, required: bool = True) -> list[str]:
        """Raw columns kept in prepared batches: those the loss reads, and
        (when not ``required``) the candidate id, which evaluation reads."""
        keys = [self.sample_weight_key, self.sampling_probability_key]
        if self._loss_reads_ids or not required:
            keys.append(self.candidate_id)
        return [key for key in keys if key is not None]

    def _is_batched(self, data: tf.data.Dataset) -> bool:
        return is_batched(data)

    def prepare(
        self,
        data: tf.data.Dataset | Mapping[str, Any],
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int | None = None,
    ) -> tf.data.Dataset:
        """Moves the towers' non-trainable work into the input pipeline.

        Maps each batch of raw features through both towers'
        :meth:`~ctxfeatures.Tower.preprocess` (vocabulary lookups,
        tokenisation, bucketing, normalisation), keeping the sample weight,
        sampling probability and (with ``remove_accidental_hits``) candidate
        id columns, as :class:`~ctxfeatures.PreparedBatch` elements.
        ``fit``, ``evaluate`` and :meth:`evaluate_top_k` accept the
        result in place of raw batches and give the same numbers.
        Cache it to do that work once instead of every epoch::

            train = model.prepare(events, batch_size=2048, shuffle=True).cache()
            model.fit(train, epochs=3)

        Adapt the towers before preparing: the prepared values hold the
        vocabulary and statistics of that moment.

        Args:
            data: A ``tf.data.Dataset`` of raw feature dicts (batched, or
                with ``batch_size``), or a mapping of equal-length columns
                (lists or numpy arrays, or a pandas DataFrame) with
                ``batch_size``.
            batch_size: Examples per batch, for a mapping or an unbatched
                dataset; the batch is where in-batch negatives come from.
            shuffle: Shuffle the examples before batching, through a buffer
                of up to 100,000 examples (all of them when fewer). After
                ``.cache()`` the order is the same each epoch.
            seed: Seed of that shuffle.

        Returns:
            A dataset of prepared batches, in the same order.

        Raises:
            TypeError: ``data`` is neither a dataset of dicts nor a mapping.
            ValueError: unbatched data without ``batch_size``, already
                prepared data, or a feature missing from it.
        """
        owner = f"{type(self).__name__}.prepare()"
        if isinstance(data, tf.data.Dataset):
            self._check_keys(data.element_spec, [])
        elif not is_columns(data):
            check_feature_dataset(data, owner)
        data = as_dataset(data, owner)
        if batch_size is not None:
            if self._is_batched(data):
                raise ValueError(
                    f"{owner}: the dataset is already batched; do not pass "
                    f"`batch_size`. Received: batch_size={batch_size!r}"
                )
            if shuffle:
                size = int(data.cardinality())
                data = data.shuffle(min(size, _SHUFFLE) if size > 0 else _SHUFFLE, seed)
            data = data.batch(check_batch_size(batch_size))
        elif not self._is_batched(data):
            raise ValueError(
                f"{owner} needs batches, since the batch is what in-batch "
                "softmax draws its negatives from: pass `batch_size=1024` (or "
                "call `data.batch(1024)` first)."
            )
        elif shuffle:
            raise ValueError(
                f"{owner}: `shuffle=True` shuffles examples before batching; "
                "pass unbatched data with `batch_size`, or shuffle before "
                "`.batch()` yourself."
            )
        self._check_keys(data.element_spec, self._context_keys())
        return data.map(
            tf.autograph.experimental.do_not_convert(self.prepare_batch),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def prepare_batch(self, batch: Mapping[str, Any]) -> PreparedBatch:
        """One raw batch through both towers' ``preprocess`` (see :meth:`prepare`)."""
        if isinstance(batch, PreparedBatch):
            return batch
        check_batch(batch)
        return PreparedBatch(
            query=self.query_tower.preprocess(batch),
            candidate=self.candidate_tower.preprocess(batch),
            context={
                key: batch[key]
                for key in self._context_keys(required=False)
                if key in batch
            },
        )

    @staticmethod
    def _check_keys(spec: Any, keys: list[str]) -> None:
        if isinstance(spec, PreparedBatch):
            raise ValueError("RetrievalModel.prepare(): the data is already prepared.")
        for key in keys:
            if key not in spec:
                raise ValueError(
                    f"RetrievalModel: feature '{key}' is missing (named as the "
                    "sample weight, the sampling probability or, with "
                    "remove_accidental_hits, the candidate id). Keys: "
                    f"{sorted(spec)}."
                )

    @tf.autograph.experimental.do_not_convert
    def embed_batch(
        self, features: Mapping[str, Any] | PreparedBatch, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Query and candidate vectors of a raw or prepared batch."""
        batch = self.prepare_batch(features)
        return (
            self.query_tower.embed(batch.query, training=training),
            self.candidate_tower.embed(batch.candidate, training=training),
        )


def check_batch_size(batch_size: object) -> int:
    return check_positive_int(batch_size, "batch_size")
