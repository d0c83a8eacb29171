"""The TFRS tutorial's model written with ctxfeatures, and the tutorial's data.

Nothing here imports TFRS: ``python -m benchmarks run`` sets it beside the
tutorial's own code (Keras 2), and ``python -m benchmarks keras`` runs it
under Keras 2 and Keras 3.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf
from benchmarks.harness import timed


def tutorial_data(ratings: tf.data.Dataset, movies: tf.data.Dataset):
    """The tutorial's inputs: three rating fields, titles, 80/20 random split."""
    ratings = ratings.map(
        lambda x: {
            "movie_title": x["movie_title"],
            "user_id": x["user_id"],
            "timestamp": x["timestamp"],
        }
    )
    movies = movies.map(lambda x: x["movie_title"])
    tf.random.set_seed(42)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    train = shuffled.take(80_000)
    test = shuffled.skip(80_000).take(20_000)
    return ratings, movies, train, test


def pipeline_options() -> tf.data.Options:
    """Options given to both sides' training data.

    With tf.data autotuning on, deleting an epoch's iterator sometimes waits
    for the autotune thread to wake, up to 0.65 s per epoch on this machine
    (profiled: the time sits after the last step). That is noise for a
    sub-second epoch, so both pipelines run without it.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall time of each epoch, to separate tracing from steady state."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.start]

    def examples_per_second(self, examples: int) -> float:
        steady = self.times[1:] or self.times
        return examples / float(np.median(steady))


def evaluate_twice(evaluate):
    """(result, first-call seconds, warm seconds) of an evaluation."""
    result, cold = timed(evaluate)
    _, warm = timed(evaluate)
    return result, cold, warm


def summary(model, fit_s, eval_s, timer, top_100) -> dict:
    return {
        "model": model,
        "fit_s": fit_s,
        "eval_cold_s": eval_s[0],
        "eval_s": eval_s[1],
        "examples_per_s": timer.examples_per_second(80_000),
        "top_100": top_100,
    }


def build_ours(train, movies, timestamps):
    """The tutorial's model written with ctxfeatures, compiled the same way."""
    query = {"user_id": cf.IdEmbedding(32)}
    if timestamps:
        query["timestamp"] = [cf.TimestampBuckets(32), cf.NormalizedTimestamp()]
    model = cf.build_retrieval_model(
        query,
        {"movie_title": [cf.IdEmbedding(32), cf.TextEmbedding(32)]},
        movies,
        candidate_id="movie_title",
        adapt_data=train,
    )
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    return model


def ours(train, test, movies, timestamps, epochs, seed=42):
    tf.keras.utils.set_random_seed(seed)
    model = build_ours(train, movies, timestamps)
    timer = EpochTimer()

    def fit():
        # Preparing (lookups, tokenising) is part of the timed fit.
        batches = train.shuffle(100_000, seed=42).batch(2048)
        prepared = model.prepare(batches).cache().with_options(pipeline_options())
        model.fit(prepared, epochs=epochs, verbose=0, callbacks=[timer])

    _, fit_s = timed(fit)
    test_batches = test.batch(4096).cache()
    result, cold, warm = evaluate_twice(lambda: model.evaluate_top_k(test_batches))
    return summary(model, fit_s, (cold, warm), timer, result["top_100"])
