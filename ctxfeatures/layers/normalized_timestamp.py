"""NormalizedTimestamp: z-scored Unix time."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ctxfeatures.layers._timestamps import TimestampFeature
from ctxfeatures.layers.state import Moments, MomentsAccumulator


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class NormalizedTimestamp(TimestampFeature):
    """Maps int64 seconds to ``(batch, 1)`` z-scores ``(t - mean) / std``.

    The mean, variance and earliest and latest time are learned by
    :meth:`adapt` (streamed in float64, so second-level precision is kept),
    saved as a non-trainable weight and applied by a composed Keras
    ``Normalization`` layer.

    A model serves after its training period, so its times lie past the
    adapted range. With ``clip=True`` (the default) such times are clipped to
    that range first: the feature stays within the values the model was
    trained on, instead of growing without bound. ``clip=False``
    extrapolates linearly (the TFRS tutorial's behaviour).

    Args:
        clip: Clip times to the adapted ``[earliest, latest]`` range.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` integer Unix seconds.
        training: Unused; accepted for Keras.

    Returns:
        ``(batch, 1)`` float32 z-scores.

    Example:
        >>> layer = ctxfeatures.NormalizedTimestamp()
        >>> layer.adapt(np.array([0, 10, 20], dtype=np.int64))
        >>> out = layer(tf.constant([10, 20, 1000], tf.int64)).numpy()
        >>> out.astype(float).round(4).tolist()
        [[0.0], [1.2247], [1.2247]]

    Raises:
        ValueError: calling before ``adapt``, adapting on empty data, NaN or
            negative timestamps, or a rank other than ``(batch,)``/``(batch, 1)``.
        TypeError: string or bool timestamps.
    """

    config_keys = ("clip",)

    def __init__(self, clip: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(clip, bool):
            raise TypeError(f"`clip` must be True or False. Received: clip={clip!r}")
        self.clip = clip
        self._normalization: tf.keras.layers.Normalization | None = None

    @property
    def output_dim(self) -> int:
        return 1

    def _new_accumulator(self) -> MomentsAccumulator:
        return MomentsAccumulator()

    def _state_size(self) -> int:
        return Moments.size

    def _apply_state(self, state: Moments) -> None:
        if state.variance == 0 and not self.clip:
            # Clipped, every time maps to the one adapted time (z = 0); not
            # clipped, other times would get z-scores of order 1e7 per second.
            raise ValueError(
                f"every adapted timestamp equals {state.mean:.0f}: the variance "
                "is zero, so z-scores of other times are undefined. Adapt on "
                "data spanning more than one time, or keep clip=True."
            )
        self._normalization = tf.keras.layers.Normalization(
            axis=-1,
            mean=[state.mean],
            variance=[state.variance],
            dtype="float64",
            name="normalization",
        )
        # Built now, eagerly: Keras 3 keeps the mean and variance it converts
        # in build, and a first build inside a tf.data map would keep graph
        # tensors that no later call can use.
        self._normalization.build((None, 1))

    @property
    def mean(self) -> float:
        """The adapted mean, in seconds."""
        self._require_adapted()
        return self._learned.mean

    @property
    def variance(self) -> float:
        """The adapted variance, in seconds squared."""
        self._require_adapted()
        return self._learned.variance

    @property
    def time_range(self) -> tuple[float, float]:
        """The earliest and latest adapted time, in seconds."""
        self._require_adapted()
        return self._learned.low, self._learned.high

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        if self.clip:
            values = tf.clip_by_value(values, *self.time_range)
        return tf.cast(self._normalization(values[:, None]), tf.float32)

    def embed(self, prepared: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        # Already the final feature: normalisation has no trainable part.
        return prepared
