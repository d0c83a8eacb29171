"""Synthetic MovieLens-shaped data with temporal drift, for scale timing."""

from __future__ import annotations

import os

# TFRS needs Keras 2; set before any TensorFlow import (isort may reorder).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json
import resource
import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf  # noqa: I001


def synthetic(size: int, users: int = 50_000, items: int = 20_000, seed: int = 0):
    """Users, items with titles, and timestamps whose item popularity drifts."""
    rng = np.random.default_rng(seed)
    start, span = 880_000_000, 30_000_000
    times = np.sort(rng.integers(start, start + span, size)).astype(np.int64)
    # Popular items drift: the favoured item block moves with time.
    drift = ((times - start) / span * items).astype(np.int64)
    item = (drift + rng.zipf(1.3, size)) % items
    user = rng.integers(0, users, size)
    words = np.array(["the", "love", "night", "war", "story", "man", "city", "day"])
    titles = np.array(
        [f"{words[i % 8]} {words[(i // 8) % 8]} {i}" for i in range(items)]
    )
    data = {
        "user_id": user.astype(str).astype(object),
        "movie_title": titles[item],
        "timestamp": times,
    }
    return data, titles


def main(size: int) -> None:
    data, titles = synthetic(size)
    dataset = tf.data.Dataset.from_tensor_slices(data)
    catalogue = tf.data.Dataset.from_tensor_slices({"movie_title": titles})
    model = cf.build_retrieval_model(
        {
            "user_id": cf.IdEmbedding(32),
            "timestamp": [cf.TimestampBuckets(32), cf.NormalizedTimestamp()],
        },
        {"movie_title": [cf.IdEmbedding(32), cf.TextEmbedding(32)]},
        catalogue,
        candidate_id="movie_title",
        adapt_data=dataset.take(100_000),
    )
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    batches = dataset.batch(2048).prefetch(4)
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": size, "seconds": seconds, "peak_rss_mib": rss}))
