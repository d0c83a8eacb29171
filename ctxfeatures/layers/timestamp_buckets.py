"""TimestampBuckets: an embedding of the time bucket a timestamp falls in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._embedding import EmbeddingFeature
from ctxfeatures.layers._inputs import check_choice, check_positive_int
from ctxfeatures.layers._timestamps import TimestampFeature
from ctxfeatures.layers.state import (
    Boundaries,
    QuantileAccumulator,
    UniformAccumulator,
)

BOUNDARY_MODES = ("uniform", "quantile")
OUT_OF_RANGE = ("zero", "clip")


def _explicit_boundaries(boundaries: Sequence[float], owner: str) -> list[float]:
    try:
        values = np.asarray(list(boundaries), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner}: `boundaries` must be 'uniform', 'quantile' or a list of "
            f"numbers. Received: boundaries={boundaries!r}"
        ) from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"{owner}: an explicit `boundaries` list needs at least one value. "
            f"Received: boundaries={boundaries!r}"
        )
    if not np.isfinite(values).all() or (np.diff(values) <= 0).any():
        raise ValueError(
            f"{owner}: `boundaries` must be finite and strictly increasing. "
            "Sort them and remove duplicates."
        )
    return values.tolist()


@tf.keras.utils.register_keras_serializable(package="ctxfeatures")
class TimestampBuckets(TimestampFeature, EmbeddingFeature):
    """Buckets int64 seconds and embeds the bucket: ``(batch, embedding_dim)``.

    Composes a Keras ``Discretization`` with an ``Embedding`` of
    ``len(boundaries) + 1`` rows. Boundaries are:

    * ``"uniform"``: ``np.linspace(min, max, num_buckets)`` over the adapted
      timestamps (the TFRS tutorial's choice, there with 1000);
    * ``"quantile"``: ``num_buckets`` equal-mass buckets learned by
      :meth:`adapt` (``num_buckets - 1`` boundaries);
    * an explicit increasing list of seconds (no adapt needed).

    Learned boundaries and the adapted time range are kept as a non-trainable
    float64 weight; boundaries are applied relative to the first one so that
    float32 bucketing keeps second-level precision.

    A model serves after its training period, so its times lie outside the
    adapted range, in buckets that training never filled. ``out_of_range``
    says what such times get:

    * ``"zero"`` (default): a zero vector, i.e. "no time information", so an
      unseen period never borrows the embedding of another;
    * ``"clip"``: the bucket of the nearest adapted time (the earliest or the
      latest).

    With explicit boundaries every time has a bucket: below the first
    boundary is bucket 0, above the last the final bucket.

    Args:
        embedding_dim: Size of each bucket's embedding.
        boundaries: ``"uniform"``, ``"quantile"`` or a list of seconds.
        num_buckets: Boundary count for ``"uniform"``, bucket count for
            ``"quantile"``; ignored for an explicit list.
        epsilon: Error tolerance of the streaming quantile sketch.
        embeddings_initializer: Initializer of the embedding table.
        embeddings_regularizer: Optional regularizer of the embedding table.
        out_of_range: ``"zero"`` or ``"clip"``, for times outside the adapted
            range (adapted boundaries only).
        dropout: During training, the share of examples whose time is
            treated as unknown (a zero vector). The model then learns to
            recommend without the time, which is what it meets past the
            training range with ``out_of_range="zero"``.
        **kwargs: Base ``Layer`` arguments such as ``name``.

    Call arguments:
        inputs: ``(batch,)`` or ``(batch, 1)`` integer Unix seconds.
        training: In training, ``dropout`` zeroes a share of the examples.

    Returns:
        A ``(batch, embedding_dim)`` float32 tensor, each time's bucket embedding
        (zeros out of range with ``out_of_range="zero"``).

    Example:
        >>> layer = ctxfeatures.TimestampBuckets(2, boundaries=[100, 200])
        >>> layer.bucketize(tf.constant([0, 100, 150, 250], tf.int64)).numpy()
        array([0, 1, 1, 2])
        >>> layer(tf.constant([150], tf.int64)).shape
        TensorShape([1, 2])
        >>> adapted = ctxfeatures.TimestampBuckets(2, num_buckets=3)
        >>> adapted.adapt(np.array([100, 200, 300]))
        >>> adapted.bucketize(tf.constant([50, 100, 299, 300, 301])).numpy()
        array([-1,  1,  2,  3, -1])
        >>> adapted(tf.constant([301])).numpy().tolist()
        [[0.0, 0.0]]

    Raises:
        ValueError: an unknown boundary mode, unsorted boundaries,
            ``embedding_dim <= 0``, calling before ``adapt``, adapting on no
            data or on a single distinct timestamp (uniform), NaN or negative
            timestamps, a wrong rank.
        TypeError: string or bool timestamps.
    """

    config_keys = ("boundaries", "num_buckets", "epsilon", "out_of_range", "dropout")

    def __init__(
        self,
        embedding_dim: int,
        boundaries: str | Sequence[float] = "uniform",
        num_buckets: int = 1000,
        epsilon: float = 0.01,
        out_of_range: str = "zero",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(embedding_dim=embedding_dim, **kwargs)
        owner = self._owner()
        self.out_of_range = check_choice(out_of_range, "out_of_range", OUT_OF_RANGE)
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout!r}"
            )
        self.dropout = float(dropout)
        self.num_buckets = check_positive_int(num_buckets, "num_buckets", 2)
        if not 0.0 < float(epsilon) < 1.0:
            raise ValueError(f"`epsilon` must be in (0, 1). Received: {epsilon!r}")
        self.epsilon = float(epsilon)
        if isinstance(boundaries, str):
            if boundaries not in BOUNDARY_MODES:
                raise ValueError(
                    f"{owner}: `boundaries` must be one of {list(BOUNDARY_MODES)} "
                    f"or a list of seconds. Received: boundaries={boundaries!r}"
                )
            self.boundaries: str | list[float] = boundaries
        else:
            self.boundaries = _explicit_boundaries(boundaries, owner)
        self._discretizer: tf.keras.layers.Discretization | None = None
        self._offset = 0.0
        if not self.needs_adapt:
            # Explicit boundaries: every time has a bucket.
            self._apply_state(
                Boundaries(0, tuple(self.boundaries), -math.inf, math.inf)
            )

    # ----------------------------------------------------------------- state
    @property
    def num_boundaries(self) -> int:
        if isinstance(self.boundaries, list):
            return len(self.boundaries)
        if self.boundaries == "uniform":
            return self.num_buckets
        return self.num_buckets - 1

    def _num_rows(self) -> int:
        return self.num_boundaries + 1

    def _new_accumulator(self) -> UniformAccumulator | QuantileAccumulator | None:
        if self.boundaries == "uniform":
            return UniformAccumulator(self.num_boundaries)
        if self.boundaries == "quantile":
            return QuantileAccumulator(self.num_buckets, self.epsilon)
        return None

    def _state_size(self) -> int:
        # count, the boundaries, then the earliest and latest time.
        return self.num_boundaries + 3

    @property
    def is_adapted(self) -> bool:
        return self._discretizer is not None

    def _apply_state(self, state: Boundaries) -> None:
        values = np.asarray(state.values, np.float64)
        self._range = (state.low, state.high)
        self._offset = float(values[0])
        self._discretizer = tf.keras.layers.Discretization(
            bin_boundaries=(values - self._offset).tolist(), name="discretization"
        )

    def get_boundaries(self) -> np.ndarray:
        """The bucket boundaries in seconds (float64)."""
        self._require_adapted()
        return np.asarray(self._discretizer.bin_boundaries, np.float64) + self._offset

    @property
    def time_range(self) -> tuple[float, float]:
        """The earliest and latest adapted time (infinite for explicit lists)."""
        self._require_adapted()
        return self._range

    # ----------------------------------------------------------------- calls
    def bucketize(self, inputs: Any) -> tf.Tensor:
        """Returns the bucket id of each timestamp, in ``[0, num_boundaries]``.

        With ``out_of_range="zero"``, times outside the adapted range get -1.
        """
        return self.preprocess(inputs)

    def _transform(self, values: tf.Tensor) -> tf.Tensor:
        low, high = self._range
        inside = (values >= low) & (values <= high)
        if self.out_of_range == "clip" and self.needs_adapt:
            values = tf.clip_by_value(values, low, high)
        ids = tf.cast(self._discretizer(values - self._offset), tf.int64)
        if self.out_of_range == "zero":
            ids = tf.where(inside, ids, tf.constant(-1, tf.int64))
        return ids

    def embed(self, prepared: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if training and self.dropout > 0:
            hidden = tf.random.uniform(tf.shape(prepared)) < self.dropout
            prepared = tf.where(hidden, tf.constant(-1, prepared.dtype), prepared)
        # Out-of-range (-1) and hidden times get the block's zero vector.
        return super().embed(prepared, training)
