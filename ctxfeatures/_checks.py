"""Checks of training inputs: the loss's columns, temperature, batch shape.

One rule on every path: these run inside the training step (graph asserts
with the library's own message), and cost well under 2% of a step (see
``benchmarks``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import tensorflow as tf


def checked_column(values: tf.Tensor, key: str, probability: bool) -> tf.Tensor:
    """``values`` after an in-graph check: weights finite and >= 0,
    probabilities in (0, 1]. One NaN or negative weight would silently ruin
    every variable within an epoch."""
    if probability:
        valid = (values > 0.0) & (values <= 1.0)
        rule = "in (0, 1]: a candidate's share of the training data"
    else:
        valid = tf.math.is_finite(values) & (values >= 0.0)
        rule = "finite and >= 0"
    message = (
        f"RetrievalModel: feature '{key}' must be {rule}; a batch holds another "
        "value. Fix the column before training."
    )
    with tf.control_dependencies(
        [tf.debugging.Assert(tf.reduce_all(valid), [message])]
    ):
        return tf.identity(values)


def check_temperature(temperature: Any) -> None:
    if temperature is None:
        return
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"`temperature` must be a number > 0 or None. Received: {temperature!r}"
        )
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(
            "`temperature` must be a finite number > 0 (scores are divided by "
            f"it). Received: temperature={temperature!r}"
        )


def check_batch(batch: Mapping[str, Any]) -> None:
    """An error for unbatched examples (checked on static shapes, at trace)."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            "RetrievalModel takes batches of feature dicts; received "
            f"{type(batch).__name__}."
        )
    shapes = [tf.TensorShape(getattr(v, "shape", [])) for v in batch.values()]
    if any(shape.rank == 0 for shape in shapes):
        raise ValueError(
            "RetrievalModel received unbatched examples (a feature is a single "
            "value). In-batch softmax draws its negatives from the batch: call "
            "`data.batch(batch_size)` first."
        )


def checked_batch_rows(query: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """``query`` after a check that the first training batch has negatives.

    In-batch softmax draws each example's negatives from the other examples
    of its batch: with one example per batch the loss is 0 and nothing is
    learnt, silently. Only the first step is checked, so a last, partial
    batch of one example later in an epoch trains as usual.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    rows = query.shape[0]
    if rows is not None and rows * replicas == 1:
        raise ValueError(_ONE_EXAMPLE.format(rows=1))
    global_rows = tf.shape(query)[0] * replicas
    valid = tf.logical_or(global_rows > 1, step > 0)
    message = _ONE_EXAMPLE.format(rows="that many")
    with tf.control_dependencies(
        [tf.debugging.Assert(valid, [message, "batch size:", global_rows])]
    ):
        return tf.identity(query)


_ONE_EXAMPLE = (
    "RetrievalModel.fit(): the first training batch holds {rows} example(s): "
    "in-batch softmax then has no negatives, the loss is 0 and nothing is "
    "learnt. Batch the data with batch_size > 1 (e.g. "
    "`model.prepare(data, batch_size=1024)`), or train with "
    "negatives='catalogue'."
)
