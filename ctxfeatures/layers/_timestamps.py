"""Input handling shared by the timestamp layers."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ctxfeatures.layers._base import FeatureLayer
from ctxfeatures.layers._inputs import (
    as_column,
    check_timestamp_dtype,
    check_timestamp_values,
)


class TimestampFeature(FeatureLayer):
    """Base of layers whose raw input is Unix time in seconds."""

    input_description = "timestamp"

    def _timestamps(self, inputs: Any) -> tf.Tensor:
        """Validated ``(batch,)`` float64 seconds, with value checks attached."""
        column = as_column(inputs, self._owner(), self.input_description)
        check_timestamp_dtype(column, self._owner())
        checks = check_timestamp_values(column, self._owner())
        # float64 holds every int64 second up to 2**53 exactly.
        with tf.control_dependencies(checks):
            return tf.cast(column, tf.float64)

    def _validate(self, inputs: Any) -> tf.Tensor:
        return self._timestamps(inputs)

    def input_signature(self) -> tf.TensorSpec:
        return tf.TensorSpec(shape=[None], dtype=tf.int64)
