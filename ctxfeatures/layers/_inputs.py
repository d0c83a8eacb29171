"""Input checks shared by the layers, the tower and the model.

Each turns a wrong input into a ``ValueError`` or ``TypeError`` that names the
owner and the fix, before any TensorFlow kernel runs where possible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

ADAPT_BATCH = 4096

# dtype families accepted by each kind of input.
INTEGER_DTYPES = (tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16)
FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


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
            f"{owner} takes a tf.data.Dataset of feature dicts or a mapping of "
            "equal-length columns (e.g. {'user_id': [...], 'item_id': [...]}); "
            f"received {type(data).__name__}."
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
    data: Any,
    *,
    batch_size: int | None,
    steps: int | None,
    owner: str,
    drop_missing: bool = False,
) -> Iterator[Any]:
    """Yields batches (tensors or ragged tensors) from any `adapt` input.

    Accepts numpy arrays, Python lists, tensors, ragged tensors and
    ``tf.data.Dataset`` objects of batched or unbatched values. Missing values
    (None or NaN in an object array, as pandas gives) are an error, or are
    dropped with ``drop_missing``.
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
            data = data.batch(batch_size or ADAPT_BATCH)
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
        data = _to_tensor(_without_missing(data, owner, drop_missing), owner)
    size = int(data.shape[0]) if data.shape.rank else 0
    batch = batch_size or max(size, 1)
    count = 0
    for start in range(0, max(size, 1), batch):
        if steps is not None and count >= steps:
            return
        count += 1
        yield data[start : start + batch]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _without_missing(data: Any, owner: str, drop: bool) -> Any:
    """1-D object data without None/NaN; an error unless ``drop``."""
    if isinstance(data, (list, tuple)):
        data = np.asarray(data, dtype=object) if any(map(_is_missing, data)) else data
    if not (isinstance(data, np.ndarray) and data.dtype == object and data.ndim == 1):
        return data
    missing = np.fromiter(map(_is_missing, data), bool, data.size)
    if not missing.any():
        return data
    if drop:
        return data[~missing]
    raise ValueError(
        f"{owner}.adapt() received {int(missing.sum())} missing values (None or "
        f"NaN), the first at position {int(missing.argmax())}. They would become "
        "the ids 'None' and 'nan'. Drop or fill them first (pandas: "
        "`.dropna()` / `.fillna(...)`), or pass `drop_missing=True`."
    )


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
    if inputs.dtype in INTEGER_DTYPES or inputs.dtype in FLOAT_DTYPES:
        return
    raise TypeError(
        f"{owner} expects timestamps as integer (int64) seconds since the Unix "
        f"epoch, but received dtype {inputs.dtype.name}. Convert them first, "
        "e.g. `tf.strings.to_number(x, tf.int64)` for strings."
    )


#: Latest plausible timestamp: 3000-01-01 in seconds. Larger values are
#: almost always milliseconds or microseconds read as seconds.
MAX_TIMESTAMP = 32_503_680_000


def check_timestamp_values(inputs: tf.Tensor, owner: str) -> list[tf.Operation]:
    """One rule in eager and graph mode: finite, >= 0, before the year 3000.

    Eagerly the check raises ValueError now; in a graph it returns asserts
    (InvalidArgumentError with the same message when they run).
    """
    messages = {
        "finite": f"{owner}: timestamps contain NaN or infinity. Drop or "
        "impute them first.",
        "negative": f"{owner}: timestamps must be >= 0 seconds since the Unix "
        "epoch; received a negative value. Check the unit and the column.",
        "late": f"{owner}: timestamps must be seconds since the Unix epoch, "
        f"below {MAX_TIMESTAMP} (the year 3000); received a larger value. "
        "Milliseconds? Divide by 1000.",
    }
    if tf.executing_eagerly():
        values = inputs.numpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ValueError(messages["finite"])
        if (values < 0).any():
            raise ValueError(messages["negative"])
        if (values > MAX_TIMESTAMP).any():
            raise ValueError(messages["late"])
        return []
    checks = []
    if inputs.dtype.is_floating:
        finite = tf.reduce_all(tf.math.is_finite(inputs))
        checks.append(tf.debugging.Assert(finite, [messages["finite"]]))
    wide = tf.cast(inputs, tf.float64)
    checks.append(tf.debugging.Assert(tf.reduce_all(wide >= 0), [messages["negative"]]))
    late = tf.reduce_all(wide <= MAX_TIMESTAMP)
    checks.append(tf.debugging.Assert(late, [messages["late"]]))
    return checks


def in_shape_inference_graph() -> bool:
    """True while Keras traces ``call`` only to infer output shapes.

    Functional models call every layer on placeholders in a throw-away
    scratch graph when they are built and when they are loaded (Keras 2 names
    it ``*_scratch_graph``, Keras 3 ``scratch_graph``, ``scratch_graph_1``,
    ...), which for
    a saved model happens before the layer's vocabulary or statistics are
    restored. That graph never runs, so an unadapted layer may answer it with a
    correctly shaped placeholder instead of failing the load.
    """
    graph = tf.compat.v1.get_default_graph()
    name = getattr(graph, "name", "")
    return name.endswith("_scratch_graph") or name.startswith("scratch_graph")


def placeholder_output(inputs: Any, output_dim: int) -> tf.Tensor:
    batch = (
        inputs.nrows() if isinstance(inputs, tf.RaggedTensor) else tf.shape(inputs)[0]
    )
    return tf.zeros(tf.stack([batch, output_dim]), tf.float32)
