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
    ``Normalization`` layer as non-trainable weights, next to the earliest
    and latest adapted time.

    A model serves after its training period, so its times lie past the
    adapted range. With ``clip=True`` (the default) such times are clipped to
    that range first: the feature stays within the values the model was
    trained on, instead of growing without bound. ``clip=False``
    extrapolates linearly (the TFRS tutorial's behaviour).

    Args:
        clip: Clip times to the adapted ``[earliest, latest]`` range.
        **kwargs: Base ``Layer`` arguments such as ``name``.

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

    def __init__(self, clip: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(clip, bool):
            raise TypeError(f"`clip` must be True or False. Received: clip={clip!r}")
        self.clip = clip
        self._range: tf.Variable | None = None
        self._normalization = tf.keras.layers.Normalization(
            axis=-1, dtype="float64", name="normalization"
        )
        self._adapt = _accumulator()
        # Statistics learned before the layer is built wait here, because the
        # weights must be created by build() (inside a distribution scope).
        self._pending: tuple[float, float, int, float, float] | None = None

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
        if self._range is None:
            self._range = self.add_weight(
                name="time_range",
                shape=(2,),
                dtype=tf.float64,
                initializer="zeros",
                trainable=False,
            )
        if self._pending is not None:
            self._assign(*self._pending)
            self._pending = None
        self.built = True

    def _assign(
        self, mean: float, variance: float, count: int, low: float, high: float
    ) -> None:
        self._range.assign([low, high])
        norm = self._normalization
        norm.adapt_mean.assign([mean])
        norm.adapt_variance.assign([variance])
        norm.count.assign(count)
        norm.finalize_state()

    def reset_state(self) -> None:
        self._adapt = _accumulator()

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
        state.low = min(state.low, float(values.min()))
        state.high = max(state.high, float(values.max()))

    def finalize_state(self) -> None:
        state = self._adapt
        if state.count == 0:
            raise ValueError(
                f"{self._owner()}.adapt() received no timestamps. Pass at least one."
            )
        stats = (state.mean, state.m2 / state.count, state.count, state.low, state.high)
        if self.built:
            self._assign(*stats)
        else:
            self._pending = stats

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

    @property
    def time_range(self) -> tuple[float, float]:
        """The earliest and latest adapted time, in seconds."""
        self._require_adapted()
        if self._pending is not None:
            return self._pending[3], self._pending[4]
        low, high = self._range.numpy().tolist()
        return low, high

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        if self.clip:
            values = tf.clip_by_value(values, self._range[0], self._range[1])
        return tf.cast(self._normalization(values[:, None]), tf.float32)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["clip"] = self.clip
        return config

    def embed(self, prepared: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        # Already the final feature: normalisation has no trainable part.
        return prepared


def _accumulator() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        count=0, mean=0.0, m2=0.0, low=float("inf"), high=float("-inf")
    )
