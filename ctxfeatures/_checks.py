"""Checks of training inputs: the loss's columns, temperature, batch shape.

One rule on every path: these run inside the training step (graph asserts
with the library's own message), and cost well under 2% of a step (see
``benchmarks``).
"""

from __future__ import annotations

import numbers
import warnings
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


def warn_single_example(query: tf.Tensor) -> None:
    if query.shape.rank and query.shape[0] == 1:
        warnings.warn(
            "RetrievalModel: batches of one example have no in-batch negatives, "
            "so training learns nothing. Use a larger batch size.",
            stacklevel=3,
        )
