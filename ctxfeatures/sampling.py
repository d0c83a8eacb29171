"""Candidate sampling probabilities for TFRS' logQ correction."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def with_sampling_probability(
    data: tf.data.Dataset,
    candidate_id: str,
    key: str = "candidate_sampling_probability",
) -> tf.data.Dataset:
    """Adds each example's candidate frequency in ``data`` as feature ``key``.

    In-batch softmax samples negatives in proportion to their popularity, so
    it over-penalises popular candidates. Passing this column as
    ``candidate_sampling_probability`` to :class:`RetrievalModel` applies
    TFRS' logQ correction, which restores the popularity signal (see the
    measured effect in :doc:`/study`).
    Compute it on the training data only.

    Args:
        data: Unbatched dataset of feature dicts with ``candidate_id``.
        candidate_id: Key of the candidate identifier.
        key: Name of the added float32 feature.

    Returns:
        ``data`` with the extra feature.
    """
    batches = [b.numpy() for b in data.map(lambda x: x[candidate_id]).batch(1 << 16)]
    ids = np.concatenate(batches) if batches else np.empty(0)
    if ids.size == 0:
        raise ValueError("with_sampling_probability() received an empty dataset.")
    names, counts = np.unique(ids, return_counts=True)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.constant(counts / ids.size, tf.float32)
        ),
        default_value=tf.constant(0.5 / ids.size, tf.float32),
    )
    return data.map(lambda x: {**x, key: table.lookup(x[candidate_id])})
