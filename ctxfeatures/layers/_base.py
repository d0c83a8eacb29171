"""Shared machinery of the ctxfeatures feature layers.

Every feature layer maps one raw feature (a batch of ids, timestamps or strings)
to a dense ``(batch, output_dim)`` float32 tensor. Learning state follows the
Keras preprocessing-layer contract: ``reset_state`` / ``update_state`` /
``finalize_state`` stream over batches, so that :meth:`ctxfeatures.Tower.adapt`
can adapt every layer of a tower in a single pass over the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

_DEFAULT_ADAPT_BATCH = 4096

# dtype families accepted by each kind of input.
_INTEGER_DTYPES = (tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16)
_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Validates an integer argument, keras-rs style."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}"
        )
    return value


def check_feature_dataset(data: Any, owner: str) -> None:
    """Raises TypeError unless ``data`` is a ``tf.data.Dataset`` of dicts."""
    if not isinstance(data, tf.data.Dataset) or not isinstance(data.element_spec, dict):
        raise TypeError(
            f"{owner} takes a tf.data.Dataset of feature dicts; received "
            f"{type(data).__name__}."
        )


def is_batched(data: tf.data.Dataset) -> bool:
    """Whether a dataset's elements are batches.

    An unbatched element of feature dicts holds at least one scalar (one id,
    one timestamp per event), while list features such as a history are
    vectors either way; so the data is batched when no component is a scalar.
    """
    specs = tf.nest.flatten(data.element_spec)
    return bool(specs) and all(spec.shape.rank != 0 for spec in specs)


def batched(data: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """``data`` itself when batched, else ``data.batch(batch_size)``."""
    return data if is_batched(data) else data.batch(batch_size)


def iterate_batches(
    data: Any, *, batch_size: int | None, steps: int | None, owner: str
) -> Iterator[Any]:
    """Yields batches (tensors or ragged tensors) from any `adapt` input.

    Accepts numpy arrays, Python lists, tensors, ragged tensors and
    ``tf.data.Dataset`` objects of batched or unbatched values.
    """
    if isinstance(data, dict) or (
        isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, dict)
    ):
        raise TypeError(
            f"{owner}.adapt() takes the values of one feature, not a dict of "
            "features. Pass e.g. `ds.map(lambda x: x['user_id'])`, or adapt a "
            "whole tower with `Tower.adapt(ds)`."
        )
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if spec.shape.rank == 0:
            # Unbatched scalars: batch them here so adapt stays fast.
            data = data.batch(batch_size or _DEFAULT_ADAPT_BATCH)
        elif batch_size is not None:
            raise ValueError(
                f"{owner}.adapt(): do not pass `batch_size` with a batched "
                "tf.data.Dataset; it is already batched."
            )
        if steps is not None:
            data = data.take(steps)
        yield from data
        return
    if not isinstance(data, (tf.Tensor, tf.RaggedTensor)):
        data = _to_tensor(data, owner)
    size = int(data.shape[0]) if data.shape.rank else 0
    batch = batch_size or max(size, 1)
    count = 0
    for start in range(0, max(size, 1), batch):
        if steps is not None and count >= steps:
            return
        count += 1
        yield data[start : start + batch]


def _to_tensor(data: Any, owner: str) -> tf.Tensor | tf.RaggedTensor:
    if isinstance(data, np.ndarray) and data.dtype == object:
        data = data.astype(str) if data.ndim == 1 else data.tolist()
    try:
        return tf.convert_to_tensor(data)
    except (ValueError, TypeError):
        try:
            return tf.ragged.constant(data)
        except (ValueError, TypeError) as error:
            raise TypeError(
                f"{owner}.adapt() could not read its data as a tensor ({error}). "
                "Pass a numpy array, a list, a tensor or a tf.data.Dataset."
            ) from None


def as_column(inputs: Any, owner: str, what: str) -> tf.Tensor:
    """Converts a scalar-per-example input to a rank-1 ``(batch,)`` tensor.

    Accepts ``(batch,)`` and ``(batch, 1)``; anything else is an error raised
    while tracing, before any TensorFlow kernel runs.
    """
    if isinstance(inputs, tf.RaggedTensor):
        raise ValueError(
            f"{owner} expects one {what} per example, shaped (batch,) or "
            "(batch, 1), but received a ragged tensor. For several values per "
            "example use MultiIdEmbedding."
        )
    if isinstance(inputs, tf.SparseTensor):
        inputs = tf.sparse.to_dense(inputs)
    inputs = tf.convert_to_tensor(inputs)
    rank = inputs.shape.rank
    if rank == 2 and inputs.shape[1] == 1:
        return tf.squeeze(inputs, axis=1)
    if rank == 2 and inputs.shape[1] is None:
        return tf.reshape(inputs, [-1])
    if rank != 1:
        raise ValueError(
            f"{owner} expects one {what} per example, shaped (batch,) or "
            f"(batch, 1). Received shape {inputs.shape}. "
            + (
                "Wrap a single value in a list to make a batch of one."
                if rank == 0
                else "Reshape the input, or use MultiIdEmbedding for lists."
            )
        )
    return inputs


def check_timestamp_dtype(inputs: tf.Tensor, owner: str) -> None:
    if inputs.dtype in _INTEGER_DTYPES or inputs.dtype in _FLOAT_DTYPES:
        return
    raise TypeError(
        f"{owner} expects timestamps as integer (int64) seconds since the Unix "
        f"epoch, but received dtype {inputs.dtype.name}. Convert them first, "
        "e.g. `tf.strings.to_number(x, tf.int64)` for strings."
    )


def check_timestamp_values(inputs: tf.Tensor, owner: str) -> list[tf.Operation]:
    """Rejects NaN and negative timestamps: eagerly now, or with graph asserts."""
    message_nan = f"{owner}: timestamps contain NaN. Drop or impute them first."
    message_neg = (
        f"{owner}: timestamps must be >= 0 seconds since the Unix epoch; "
        "received a negative value. Check the unit and the column."
    )
    if tf.executing_eagerly():
        values = inputs.numpy()
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ValueError(message_nan)
        if (values < 0).any():
            raise ValueError(message_neg)
        return []
    checks = []
    if inputs.dtype.is_floating:
        checks.append(
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(inputs)), [message_nan])
        )
    checks.append(
        tf.debugging.Assert(
            tf.reduce_all(inputs >= tf.zeros([], inputs.dtype)), [message_neg]
        )
    )
    return checks


class FeatureLayer(tf.keras.layers.Layer):
    """Base class of the feature layers: adapt contract, two-stage call.

    A call is split in two stages so that the first can run once, in the
    input pipeline, instead of on every training step:

    * :meth:`preprocess` validates the raw values and applies the adapted,
      non-trainable state (vocabulary lookup, tokenisation, bucketing,
      normalisation). Its output can be computed by ``tf.data`` and cached.
    * :meth:`embed` applies the trainable part (embedding tables, pooling).

    ``layer(x)`` equals ``layer.embed(layer.preprocess(x))``.

    Subclasses implement :meth:`reset_state`, :meth:`update_state`,
    :meth:`finalize_state`, :attr:`is_adapted`, :attr:`output_dim`,
    :meth:`input_signature`, ``_validate`` (raw input to checked values),
    ``_transform`` (checked values to prepared values) and :meth:`embed`.
    """

    #: What one raw input value is, for error messages.
    input_description = "value"

    def _owner(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    @property
    def output_dim(self) -> int:
        """Size of the last axis of the layer's output."""
        raise NotImplementedError

    @property
    def is_adapted(self) -> bool:
        """Whether the layer holds the state it needs to be called."""
        raise NotImplementedError

    @property
    def needs_adapt(self) -> bool:
        """Whether ``adapt`` learns anything (False for fixed configurations)."""
        return True

    def input_signature(self) -> tf.TensorSpec | tf.RaggedTensorSpec:
        """The raw input this layer serves, as a spec with a batch axis."""
        raise NotImplementedError

    def reset_state(self) -> None:
        """Clears the statistics gathered by :meth:`update_state`."""

    def update_state(self, data: Any) -> None:
        """Accumulates statistics from one batch of raw values."""

    def finalize_state(self) -> None:
        """Turns the accumulated statistics into the layer's state."""

    def adapt(
        self, data: Any, batch_size: int | None = None, steps: int | None = None
    ) -> None:
        """Learns the layer's state from data, like Keras preprocessing layers.

        Args:
            data: The raw values of this feature: a numpy array, a list, a
                tensor, a ragged tensor or a ``tf.data.Dataset`` (batched or
                not).
            batch_size: Batch size used to stream arrays or unbatched datasets.
            steps: Read at most this many batches.
        """
        if not self.needs_adapt:
            return
        self.reset_state()
        seen = False
        for batch in iterate_batches(
            data, batch_size=batch_size, steps=steps, owner=self._owner()
        ):
            if batch.shape.rank and batch.shape[0] == 0:
                continue
            seen = True
            self.update_state(batch)
        if not seen:
            raise ValueError(
                f"{self._owner()}.adapt() received no data (an empty array or "
                "dataset). Pass at least one value."
            )
        self.finalize_state()

    # ----------------------------------------------------------------- calls
    def _validate(self, inputs: Any) -> Any:
        """Checks and reshapes the raw input; raises ValueError/TypeError."""
        raise NotImplementedError

    def _transform(self, values: Any) -> Any:
        """Applies the adapted, non-trainable state to validated values."""
        raise NotImplementedError

    @tf.autograph.experimental.do_not_convert
    def preprocess(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        """Runs the non-trainable stage: raw values to prepared values.

        Pure TensorFlow with no variables to train, so it can run inside
        ``tf.data.Dataset.map`` and be cached; see
        :meth:`ctxfeatures.RetrievalModel.prepare`.

        Args:
            inputs: A batch of raw values, as accepted by the layer's call.

        Returns:
            The prepared batch that :meth:`embed` takes (ids, bucket ids,
            token ids or already-final float features). A subclass that
            overrides ``call`` instead of the two stages returns its raw
            input here and does all its work in :meth:`embed`.
        """
        if not self._is_two_stage():
            return inputs
        values = self._validate(inputs)
        self._require_adapted()
        if not self.built:
            # As Keras' own _maybe_build: variables and their initial values
            # must be created eagerly, even when called inside tf.data.
            with tf.init_scope():
                self.build(None)
        return self._transform(values)

    @tf.autograph.experimental.do_not_convert
    def embed(self, prepared: Any, training: bool | None = None) -> tf.Tensor:
        """Runs the trainable stage on :meth:`preprocess` output.

        Args:
            prepared: The output of :meth:`preprocess`.
            training: Whether the call is a training step (some layers, e.g.
                :class:`~ctxfeatures.TimestampBuckets` with ``dropout``,
                behave differently then).

        Returns:
            A ``(batch, output_dim)`` float32 tensor.
        """
        if not self._is_two_stage():
            return self(prepared, training=training)
        raise NotImplementedError(
            f"{type(self).__name__} implements `_transform` but not `embed`."
        )

    def _is_two_stage(self) -> bool:
        # Subclasses written against the one-stage API override only `call`.
        return type(self)._transform is not FeatureLayer._transform

    def call(self, inputs: Any, training: bool | None = None) -> tf.Tensor:
        if not self.is_adapted and in_shape_inference_graph():
            return placeholder_output(self._validate(inputs), self.output_dim)
        return self.embed(self.preprocess(inputs), training=training)

    def _require_adapted(self) -> None:
        if not self.is_adapted:
            raise ValueError(
                f"{self._owner()} is not adapted yet: call `adapt()` on "
                "training data first"
                + self._not_adapted_hint()
                + " (or `Tower.adapt()` for a whole tower)."
            )

    def _not_adapted_hint(self) -> str:
        return ""

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        input_shape = tf.TensorShape(input_shape)
        batch = input_shape[0] if input_shape.rank else None
        return tf.TensorShape([batch, self.output_dim])


class StatelessMixin:
    """For feature layers that learn nothing from data: always adapted."""

    @property
    def is_adapted(self) -> bool:
        return True

    @property
    def needs_adapt(self) -> bool:
        return False


def in_shape_inference_graph() -> bool:
    """True while Keras traces ``call`` only to infer output shapes.

    Functional models call every layer on placeholders in a throw-away
    ``*_scratch_graph`` when they are built and when they are loaded, which for
    a saved model happens before the layer's vocabulary or statistics are
    restored. That graph never runs, so an unadapted layer may answer it with a
    correctly shaped placeholder instead of failing the load.
    """
    graph = tf.compat.v1.get_default_graph()
    return getattr(graph, "name", "").endswith("_scratch_graph")


def pool_rows(vectors: tf.Tensor, rows: tf.RaggedTensor, combiner: str) -> tf.Tensor:
    """Pools the flat ``vectors`` of each row of ``rows``: sum, mean or sqrtn.

    Works on the ragged values only, so padding never costs a lookup or a
    gradient row; rows without values pool to zeros.
    """
    # num_segments keeps rows without values as zero rows.
    total = tf.math.unsorted_segment_sum(vectors, rows.value_rowids(), rows.nrows())
    if combiner == "sum":
        return total
    counts = tf.cast(tf.maximum(rows.row_lengths(), 1), total.dtype)[:, None]
    if combiner == "mean":
        return total / counts
    return total / tf.sqrt(counts)


def placeholder_output(inputs: Any, output_dim: int) -> tf.Tensor:
    batch = (
        inputs.nrows() if isinstance(inputs, tf.RaggedTensor) else tf.shape(inputs)[0]
    )
    return tf.zeros(tf.stack([batch, output_dim]), tf.float32)
