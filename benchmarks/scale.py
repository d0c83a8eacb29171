"""Synthetic MovieLens-shaped data with temporal drift, for scale timing.

The interactions are generated batch by batch inside ``tf.data`` (stateless
random ops keyed by the row number), so the data never sits in memory: peak
RSS measures the model and the pipeline, not the dataset.
"""

from __future__ import annotations

import json
import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf  # noqa: I001
from benchmarks.harness import peak_rss_mib

USERS = 50_000
START, SPAN = 880_000_000, 30_000_000
WORDS = ["the", "love", "night", "war", "story", "man", "city", "day"]
BATCH = 2048


def titles(items: int) -> np.ndarray:
    """Distinct titles of two common words and a number, like "war night 17"."""
    words = np.array(WORDS)
    index = np.arange(items)
    return np.char.add(
        np.char.add(np.char.add(words[index % 8], " "), words[(index // 8) % 8]),
        np.char.add(" ", index.astype(str)),
    )


def interactions(
    size: int,
    items: int,
    seed: int = 0,
    users: int = USERS,
    shard: tuple[int, int] = (1, 0),
) -> tf.data.Dataset:
    """``size`` interactions in time order; item popularity drifts with time.

    The favoured block of items moves through the catalogue over the 347-day
    span, and within it popularity is heavy-tailed (log-uniform offsets), so
    a model trained on the early period is stale later, as in MovieLens.
    ``shard=(count, index)`` generates only every count-th batch (a worker's
    share), not all of them.
    """
    names = tf.constant(titles(items))

    def make(rows: tf.Tensor) -> dict[str, tf.Tensor]:
        count = tf.size(rows)
        key = tf.stack([tf.cast(rows[0], tf.int64), tf.constant(seed, tf.int64)])
        key = tf.cast(key, tf.int32)
        uniform = tf.random.stateless_uniform([count, 2], seed=key, dtype=tf.float64)
        position = tf.cast(rows, tf.float64) / size
        times = START + tf.cast(position * SPAN, tf.int64)
        drift = tf.cast(position * items, tf.int64)
        offset = tf.cast(tf.exp(uniform[:, 0] * np.log(items)), tf.int64)
        item = (drift + offset) % items
        user = tf.cast(uniform[:, 1] * users, tf.int64)
        return {
            "user_id": tf.strings.as_string(user),
            "movie_title": tf.gather(names, item),
            "timestamp": times,
        }

    return tf.data.Dataset.range(size).batch(BATCH).shard(*shard).map(make)


def timestamp_model(
    data: tf.data.Dataset,
    size: int,
    items: int,
    batch: int,
    strategy: tf.distribute.Strategy | None = None,
    user_hash_bins: int | None = None,
) -> cf.RetrievalModel:
    """The tutorial's timestamp model on ``data`` (batches of ``batch``).

    With ``user_hash_bins``, user ids are hashed into a table of that many
    rows instead of looked up in an adapted vocabulary.
    """
    catalogue = tf.data.Dataset.from_tensor_slices({"movie_title": titles(items)})
    return cf.build_retrieval_model(
        {
            "user_id": cf.IdEmbedding(32, num_hash_bins=user_hash_bins),
            "timestamp": [cf.TimestampBuckets(32), cf.NormalizedTimestamp()],
        },
        {"movie_title": [cf.IdEmbedding(32), cf.TextEmbedding(32)]},
        catalogue,
        candidate_id="movie_title",
        # Adapt on a 200k-row prefix, so adapt time does not grow with size.
        adapt_data=data.take(max(1, min(size, 200_000) // batch)),
        strategy=strategy,
    )


def main(size: int, items: int = 20_000) -> None:
    data = interactions(size, items)
    model = timestamp_model(data, size, items, BATCH)
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    # Streaming: lookups run in parallel in tf.data, nothing is cached.
    batches = model.prepare(data).prefetch(4)
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    result = {
        "size": size,
        "items": items,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    print(json.dumps(result))
