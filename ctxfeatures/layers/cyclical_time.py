"""CyclicalTime: sin/cos encodings of time of day, week and year."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._timestamps import TimestampFeature

#: Period of each component, in seconds. A year is the mean Gregorian year.
PERIODS = {
    "hour_of_day": 86_400,
    "day_of_week": 604_800,
    "day_of_year": 31_556_952,
}
# 1970-01-01 was a Thursday: shift so that phase 0 is Monday 00:00.
_PHASE_SHIFT = {"hour_of_day": 0, "day_of_week": 3 * 86_400, "day_of_year": 0}


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class CyclicalTime(TimestampFeature):
    """Encodes int64 seconds as ``(sin, cos)`` of cyclical components.

    Output shape is ``(batch, 2 * len(components))``, ordered
    ``[sin c1, cos c1, sin c2, cos c2, ...]``. Every pair lies on the unit
    circle, so 23:59 sits next to 00:00 and Sunday next to Monday. Nothing is
    learned: no adapt is needed.

    Args:
        components: Any of ``"hour_of_day"`` (period 86 400 s),
            ``"day_of_week"`` (604 800 s, phase 0 at Monday 00:00) and
            ``"day_of_year"`` (the mean Gregorian year, 31 556 952 s).
        utc_offset_hours: Local time offset from UTC, e.g. ``-5`` or ``5.5``;
            hour and weekday are computed in that local time.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` integer Unix seconds.
        training: Unused; accepted for Keras.

    Returns:
        ``(batch, 2 * len(components))`` float32 sines and cosines.

    Example:
        >>> layer = ctxfeatures.CyclicalTime(components=("hour_of_day",))
        >>> layer(tf.constant([6 * 3600], tf.int64)).numpy().round(6).tolist()
        [[1.0, 0.0]]

    Raises:
        ValueError: an unknown or repeated component, an offset beyond ±24 h,
            NaN or negative timestamps, a wrong rank.
        TypeError: string or bool timestamps.
    """

    config_keys = ("components", "utc_offset_hours")

    def __init__(
        self,
        components: Sequence[str] = ("hour_of_day", "day_of_week"),
        utc_offset_hours: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(components, str):
            components = (components,)
        components = list(components)
        unknown = [c for c in components if c not in PERIODS]
        if not components or unknown:
            raise ValueError(
                f"`components` must be a non-empty list drawn from "
                f"{list(PERIODS)}. Received: components={components!r}"
            )
        if len(set(components)) != len(components):
            raise ValueError(
                f"`components` lists a component twice. Received: {components!r}"
            )
        offset = float(utc_offset_hours)
        if not math.isfinite(offset) or abs(offset) > 24:
            raise ValueError(
                "`utc_offset_hours` must be between -24 and 24. "
                f"Received: utc_offset_hours={utc_offset_hours!r}"
            )
        self.components = components
        self.utc_offset_hours = offset

    @property
    def output_dim(self) -> int:
        return 2 * len(self.components)

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        seconds = values + self.utc_offset_hours * 3600.0
        encodings = []
        for component in self.components:
            period = PERIODS[component]
            # floormod in float64 is exact for integral seconds below 2**53.
            phase = tf.math.floormod(seconds + _PHASE_SHIFT[component], period)
            angle = phase * (2.0 * math.pi / period)
            encodings += [tf.sin(angle), tf.cos(angle)]
        return tf.cast(tf.stack(encodings, axis=1), tf.float32)

    def embed(self, prepared: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        # Already the final feature: the encoding has no trainable part.
        return prepared
