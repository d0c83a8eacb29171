"""DurationBuckets: log-spaced buckets of a duration, such as time since last."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._embedding import EmbeddingFeature
from ctxfeatures.layers._inputs import (
    as_column,
    check_positive_int,
    check_timestamp_dtype,
)

#: The duration of "no previous event" (see ctxfeatures.history).
NO_PREVIOUS_EVENT = -1
_TEN_YEARS = 315_576_000.0


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class DurationBuckets(EmbeddingFeature):
    """Embeds a duration in seconds by its log-spaced bucket.

    Meant for ``seconds_since_last`` from
    :func:`ctxfeatures.history.add_history`, or any gap between two events.
    Durations vary over many orders of magnitude (seconds within a session,
    months between visits), so bucket edges are spaced geometrically:
    ``num_buckets - 1`` edges from ``min_seconds`` to ``max_seconds``
    (``np.geomspace``). Row 0 of the table is "no previous event" (the value
    ``-1``); rows ``1 .. num_buckets`` hold the buckets in increasing order.

    Durations shorter than ``min_seconds`` share the first bucket and longer
    than ``max_seconds`` the last, so any finite duration, however large,
    maps to a trained row: nothing extrapolates. Nothing is learned from data,
    so no adapt is needed.

    Args:
        embedding_dim: Size of each bucket's embedding.
        num_buckets: Number of duration buckets (``"no previous event"``
            comes on top).
        min_seconds: Upper edge of the first bucket.
        max_seconds: Lower edge of the last bucket (default ten years).
        embeddings_initializer: Initializer of the embedding table.
        embeddings_regularizer: Optional regularizer of the embedding table.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` durations in seconds (integer
            or float), ``-1`` for "no previous event".
        training: Unused; accepted for Keras.

    Returns:
        ``(batch, embedding_dim)`` float32 bucket embeddings.

    Example:
        >>> layer = ctxfeatures.DurationBuckets(4, num_buckets=3,
        ...     min_seconds=60, max_seconds=3600)
        >>> layer.bucketize(tf.constant([-1, 0, 59, 60, 600, 3600, 10**12])).numpy()
        array([0, 1, 1, 2, 2, 3, 3])

    Raises:
        ValueError: ``num_buckets < 2``, edges that are not
            ``0 < min_seconds < max_seconds``, NaN durations, or negative ones
            other than ``-1``.
        TypeError: string or bool durations.
    """

    input_description = "duration"
    config_keys = ("num_buckets", "min_seconds", "max_seconds")

    def __init__(
        self,
        embedding_dim: int,
        num_buckets: int = 32,
        min_seconds: float = 1.0,
        max_seconds: float = _TEN_YEARS,
        **kwargs: Any,
    ) -> None:
        super().__init__(embedding_dim, **kwargs)
        self.num_buckets = check_positive_int(num_buckets, "num_buckets", 2)
        low, high = float(min_seconds), float(max_seconds)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(
                "`min_seconds` and `max_seconds` must be finite with "
                f"0 < min_seconds < max_seconds. Received: min_seconds="
                f"{min_seconds!r}, max_seconds={max_seconds!r}"
            )
        self.min_seconds, self.max_seconds = low, high
        # Discretization works on float32: bucket the log of the duration,
        # whose float32 precision is uniform across scales.
        self._discretizer = tf.keras.layers.Discretization(
            bin_boundaries=np.log(self.get_edges()).tolist(), name="discretization"
        )

    def _num_rows(self) -> int:
        return self.num_buckets + 1

    def get_edges(self) -> np.ndarray:
        """The ``num_buckets - 1`` bucket edges, in seconds."""
        return np.geomspace(self.min_seconds, self.max_seconds, self.num_buckets - 1)

    def bucketize(self, inputs: Any) -> tf.Tensor:
        """Table row of each duration: 0 for ``-1``, else ``1 .. num_buckets``."""
        return self.preprocess(inputs)

    def _validate(self, inputs: Any) -> tf.Tensor:
        column = as_column(inputs, self._owner(), self.input_description)
        check_timestamp_dtype(column, self._owner())
        column = tf.cast(column, tf.float64)
        checks = _check_durations(column, self._owner())
        with tf.control_dependencies(checks):
            return tf.identity(column)

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        known = values >= 0
        # log(0) is -inf, which Discretization puts in the first bucket.
        logs = tf.math.log(tf.where(known, values, 1.0))
        buckets = tf.cast(self._discretizer(tf.cast(logs, tf.float32)), tf.int64) + 1
        return tf.where(known, buckets, tf.zeros_like(buckets))


def _check_durations(values: tf.Tensor, owner: str) -> list[tf.Operation]:
    """NaN and negative durations other than -1 are errors, in both modes."""
    message_nan = f"{owner}: durations contain NaN. Drop or impute them first."
    message_neg = (
        f"{owner}: durations must be >= 0 seconds, or -1 for 'no previous "
        "event'; received another negative value. Check the column."
    )
    valid_negative = values == NO_PREVIOUS_EVENT
    if tf.executing_eagerly():
        array = values.numpy()
        if np.isnan(array).any():
            raise ValueError(message_nan)
        if ((array < 0) & ~valid_negative.numpy()).any():
            raise ValueError(message_neg)
        return []
    return [
        tf.debugging.Assert(
            tf.reduce_all(tf.logical_not(tf.math.is_nan(values))), [message_nan]
        ),
        tf.debugging.Assert(
            tf.reduce_all((values >= 0) | valid_negative), [message_neg]
        ),
    ]
