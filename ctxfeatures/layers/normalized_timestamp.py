"""NormalizedTimestamp: z-scored Unix time."""

from __future__ import annotations

import types
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._timestamps import TimestampFeature


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class NormalizedTimestamp(TimestampFeature):
    """Maps int64 seconds to ``(batch, 1)`` z-scores ``(t - mean) / std``.

    The mean and variance are learned by :meth:`adapt` (streamed in float64,
    so second-level precision is kept) and held by a composed Keras
    ``Normalization`` layer as non-trainable weights. Timestamps later than
    the adapted range are not clipped: they extrapolate linearly, which is
    what a model meets when it serves after its training period.

    Args:
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Example:
        >>> layer = ctxfeatures.NormalizedTimestamp()
        >>> layer.adapt(np.array([0, 10, 20], dtype=np.int64))
        >>> out = layer(tf.constant([10, 20], tf.int64)).numpy()
        >>> out.astype(float).round(4).tolist()
        [[0.0], [1.2247]]

    Raises:
        ValueError: calling before ``adapt``, adapting on empty data, NaN or
            negative timestamps, or a rank other than ``(batch,)``/``(batch, 1)``.
        TypeError: string or bool timestamps.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._normalization = tf.keras.layers.Normalization(
            axis=-1, dtype="float64", name="normalization"
        )
        self._adapt = types.SimpleNamespace(count=0, mean=0.0, m2=0.0)
        # Statistics learned before the layer is built wait here, because the
        # weights must be created by build() (inside a distribution scope).
        self._pending: tuple[float, float, int] | None = None

    @property
    def output_dim(self) -> int:
        return 1

    @property
    def is_adapted(self) -> bool:
        if self._normalization.built:
            # init_scope reads the variable eagerly even while tracing.
            with tf.init_scope():
                return int(self._normalization.count.numpy()) > 0
        return self._pending is not None

    def build(self, input_shape: Any = None) -> None:
        if not self._normalization.built:
            self._normalization.build((None, 1))
        if self._pending is not None:
            self._assign(*self._pending)
            self._pending = None
        self.built = True

    def _assign(self, mean: float, variance: float, count: int) -> None:
        norm = self._normalization
        norm.adapt_mean.assign([mean])
        norm.adapt_variance.assign([variance])
        norm.count.assign(count)
        norm.finalize_state()

    def reset_state(self) -> None:
        self._adapt = types.SimpleNamespace(count=0, mean=0.0, m2=0.0)

    def update_state(self, data: Any) -> None:
        values = self._timestamps(data).numpy()
        if values.size == 0:
            return
        # Chan et al.'s parallel update: exact in float64 for any batch split.
        state = self._adapt
        count = values.size
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = state.count + count
        delta = mean - state.mean
        state.mean += delta * count / total
        state.m2 += m2 + delta**2 * state.count * count / total
        state.count = total

    def finalize_state(self) -> None:
        state = self._adapt
        if state.count == 0:
            raise ValueError(
                f"{self._owner()}.adapt() received no timestamps. Pass at least one."
            )
        variance = state.m2 / state.count
        if self.built:
            self._assign(state.mean, variance, state.count)
        else:
            self._pending = (state.mean, variance, state.count)

    @property
    def mean(self) -> float:
        """The adapted mean, in seconds."""
        self._require_adapted()
        if self._pending is not None:
            return self._pending[0]
        return float(self._normalization.adapt_mean.numpy()[0])

    @property
    def variance(self) -> float:
        """The adapted variance, in seconds squared."""
        self._require_adapted()
        if self._pending is not None:
            return self._pending[1]
        return float(self._normalization.adapt_variance.numpy()[0])

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        return tf.cast(self._normalization(values[:, None]), tf.float32)

    def embed(self, prepared: tf.Tensor) -> tf.Tensor:
        # Already the final feature: normalisation has no trainable part.
        return prepared
