"""The TFRS "Using context features" tutorial model, written the tutorial's way.

Plain TFRS and Keras, no ctxfeatures: vocabularies from np.unique over the
data, FactorizedTopK metrics computed on every training batch, Adagrad(0.1),
batch 2048. This is the baseline the benchmarks compare against.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

from benchmarks.tutorial_ours import tutorial_data  # noqa: E402, F401


class UserModel(tf.keras.Model):
    def __init__(self, use_timestamps, unique_user_ids, timestamps, buckets):
        super().__init__()
        self._use_timestamps = use_timestamps
        self.user_embedding = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(
                    vocabulary=unique_user_ids, mask_token=None
                ),
                tf.keras.layers.Embedding(len(unique_user_ids) + 1, 32),
            ]
        )
        if use_timestamps:
            self.timestamp_embedding = tf.keras.Sequential(
                [
                    tf.keras.layers.Discretization(buckets.tolist()),
                    tf.keras.layers.Embedding(len(buckets) + 1, 32),
                ]
            )
            self.normalized_timestamp = tf.keras.layers.Normalization(axis=None)
            self.normalized_timestamp.adapt(timestamps)

    def call(self, inputs):
        if not self._use_timestamps:
            return self.user_embedding(inputs["user_id"])
        return tf.concat(
            [
                self.user_embedding(inputs["user_id"]),
                self.timestamp_embedding(inputs["timestamp"]),
                tf.reshape(self.normalized_timestamp(inputs["timestamp"]), (-1, 1)),
            ],
            axis=1,
        )


class MovieModel(tf.keras.Model):
    def __init__(self, unique_movie_titles, movies):
        super().__init__()
        max_tokens = 10_000
        self.title_embedding = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(
                    vocabulary=unique_movie_titles, mask_token=None
                ),
                tf.keras.layers.Embedding(len(unique_movie_titles) + 1, 32),
            ]
        )
        self.title_vectorizer = tf.keras.layers.TextVectorization(max_tokens=max_tokens)
        self.title_text_embedding = tf.keras.Sequential(
            [
                self.title_vectorizer,
                tf.keras.layers.Embedding(max_tokens, 32, mask_zero=True),
                tf.keras.layers.GlobalAveragePooling1D(),
            ]
        )
        self.title_vectorizer.adapt(movies)

    def call(self, titles):
        return tf.concat(
            [self.title_embedding(titles), self.title_text_embedding(titles)], axis=1
        )


class MovielensModel(tfrs.models.Model):
    def __init__(self, use_timestamps, ratings, movies):
        super().__init__()
        unique_titles = np.unique(np.concatenate(list(movies.batch(1000))))
        unique_users = np.unique(
            np.concatenate(list(ratings.batch(1_000).map(lambda x: x["user_id"])))
        )
        timestamps = np.concatenate(
            list(ratings.map(lambda x: x["timestamp"]).batch(100))
        )
        buckets = np.linspace(timestamps.min(), timestamps.max(), num=1000)
        self.query_model = tf.keras.Sequential(
            [
                UserModel(use_timestamps, unique_users, timestamps, buckets),
                tf.keras.layers.Dense(32),
            ]
        )
        self.candidate_model = tf.keras.Sequential(
            [MovieModel(unique_titles, movies), tf.keras.layers.Dense(32)]
        )
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(
                candidates=movies.batch(128).map(self.candidate_model)
            )
        )

    def compute_loss(self, features, training=False):
        query_embeddings = self.query_model(
            {"user_id": features["user_id"], "timestamp": features["timestamp"]}
        )
        movie_embeddings = self.candidate_model(features["movie_title"])
        return self.task(query_embeddings, movie_embeddings)


def build(use_timestamps: bool, ratings, movies) -> MovielensModel:
    model = MovielensModel(use_timestamps, ratings, movies)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    return model
