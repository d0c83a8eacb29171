"""SASRec+, the peer of one-model next-item retrieval, in plain Keras.

SASRec (Kang and McAuley, ICDM 2018): learned item and position embeddings, a
stack of causal self-attention blocks (pre-normalised attention, residual,
point-wise feed-forward), the item table shared as the output layer. SASRec+
(Klenitskiy and Vasilev, RecSys 2023) trains it with a softmax
cross-entropy over the whole catalogue at every position of each user's
sequence instead of one sampled negative. Settings of the paper: 64
dimensions, 2 blocks, 1 head, dropout 0.1, sequences of the last 200 events
(50 on sparse logs), batches of 128 users, Adam 1e-3, epochs chosen on
validation.

Written from the papers, not from ctxfeatures' layers; it works under Keras 2
and Keras 3. :class:`SASRecScorer` ranks the catalogue for a request's
``history`` (items, most recent last), so the library's evaluator scores it
beside every other row, on the same events.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Settings:
    """The paper's settings (dropout 0.1 on MovieLens; 0.5 is common on
    sparse logs)."""

    max_length: int = 200
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.1
    batch_size: int = 128
    learning_rate: float = 1e-3


class Block(tf.keras.layers.Layer):
    """One SASRec block: causal self-attention, then the feed-forward net."""

    def __init__(self, dim: int, heads: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)
        self.attention = tf.keras.layers.MultiHeadAttention(
            heads, dim // heads, dropout=dropout
        )
        self.feed_norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)
        self.inner = tf.keras.layers.Dense(dim, activation="relu")
        self.outer = tf.keras.layers.Dense(dim)
        self.dropout = tf.keras.layers.Dropout(dropout)

    def call(self, x: tf.Tensor, mask: tf.Tensor, training: bool = False):
        query = self.attention_norm(x)
        x = query + self.attention(query, x, attention_mask=mask, training=training)
        x = self.feed_norm(x)
        inner = self.dropout(self.inner(x), training=training)
        return x + self.dropout(self.outer(inner), training=training)


class SASRec(tf.keras.Model):
    """The encoder: ``(batch, length)`` item indices (0 pads, left-padded,
    most recent last) to ``(batch, length, dim)`` states, state ``t`` seeing
    items ``0..t`` only.

    Args:
        num_items: Catalogue size; items are indices ``1..num_items``.
        settings: The model's sizes and training settings.
    """

    def __init__(self, num_items: int, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_items = num_items
        self.settings = settings
        self.items = tf.keras.layers.Embedding(num_items + 1, settings.dim)
        self.positions = tf.keras.layers.Embedding(settings.max_length, settings.dim)
        self.dropout = tf.keras.layers.Dropout(settings.dropout)
        self.stack = [
            Block(settings.dim, settings.heads, settings.dropout)
            for _ in range(settings.blocks)
        ]
        self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-8)

    def call(self, sequence: tf.Tensor, training: bool = False) -> tf.Tensor:
        length = tf.shape(sequence)[1]
        present = tf.cast(sequence > 0, tf.float32)[:, :, None]
        x = self.items(sequence) * math.sqrt(self.settings.dim)
        x = x + self.positions(tf.range(length))[None]
        x = self.dropout(x, training=training) * present
        causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
        mask = tf.logical_and(causal[None], sequence[:, None, :] > 0)
        for block in self.stack:
            x = block(x, mask, training=training) * present
        return self.norm(x)

    def logits(self, states: tf.Tensor) -> tf.Tensor:
        """Scores of every catalogue item (index 1 first) for each state."""
        return tf.matmul(states, self.items.embeddings[1:], transpose_b=True)


def training_sequences(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, length: int
) -> np.ndarray:
    """Each user's last ``length + 1`` item indices, oldest first, left-padded
    with 0: ``[:, :-1]`` are the inputs and ``[:, 1:]`` the targets."""
    order = np.lexsort((np.arange(users.size), times, users))
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], users.size]
    rows = np.zeros((starts.size, length + 1), np.int32)
    for row, (start, end) in enumerate(zip(starts, ends)):
        tail = items[max(start, end - length - 1) : end]
        rows[row, length + 1 - tail.size :] = tail
    return rows[(rows > 0).sum(axis=1) >= 2]


def make_step(model: SASRec, optimizer: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """One step: softmax cross-entropy over the catalogue at every position
    whose input is an item (padding is neither input nor target)."""

    @tf.function(reduce_retracing=True)
    def step(batch: tf.Tensor) -> tf.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        where = tf.where(inputs > 0)
        with tf.GradientTape() as tape:
            states = tf.gather_nd(model(inputs, training=True), where)
            labels = tf.gather_nd(targets, where) - 1
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels, model.logits(states)
                )
            )
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def fit_epochs(
    model: SASRec,
    sequences: np.ndarray,
    epochs: int,
    seed: int,
    after_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Trains ``epochs`` epochs; the seconds of each."""
    optimizer = tf.keras.optimizers.Adam(model.settings.learning_rate)
    step = make_step(model, optimizer)
    rng = np.random.default_rng(seed)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(sequences))
        for first in range(0, order.size, model.settings.batch_size):
            rows = order[first : first + model.settings.batch_size]
            step(tf.constant(sequences[rows]))
        seconds.append(time.perf_counter() - start)
        if after_epoch is not None:
            after_epoch(epoch + 1)
    return seconds


class SASRecScorer:
    """A trained :class:`SASRec` as a :class:`ctxfeatures.evaluation.Scorer`.

    Reads ``history``: ``(batch, width)`` item ids, padded with ``""`` (or
    ``-1``) at either end, most recent last; ids outside the catalogue are
    dropped. Its last ``max_length`` items, right-aligned, are encoded and
    the last state scores the catalogue.
    """

    feature_names: Sequence[str] = ("history",)

    def __init__(self, model: SASRec, catalogue: np.ndarray, candidate_id: str):
        self.model = model
        self.candidate_id = candidate_id
        self.candidate_ids = tf.constant(catalogue)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                self.candidate_ids, tf.range(1, catalogue.size + 1, dtype=tf.int32)
            ),
            default_value=0,
        )

    def score(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        sequence = right_aligned(
            self.table.lookup(features["history"]), self.model.settings.max_length
        )
        states = self.model(sequence, training=False)[:, -1]
        return self.model.logits(states)


def right_aligned(indices: tf.Tensor, length: int) -> tf.Tensor:
    """``(batch, length)``: each row's non-zero indices, in order, ending in
    the last column, at most the last ``length`` of them."""
    present = indices > 0
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1, keepdims=True)
    rank = tf.cumsum(tf.cast(present, tf.int32), axis=1) - 1
    column = length - count + rank
    keep = tf.logical_and(present, column >= 0)
    rows = tf.cast(tf.where(keep)[:, :1], tf.int32)
    where = tf.concat([rows, tf.boolean_mask(column, keep)[:, None]], axis=1)
    shape = tf.stack([tf.shape(indices)[0], length])
    return tf.scatter_nd(where, tf.boolean_mask(indices, keep), shape)
