"""Recommendation requests conformed to a recommender's input signature.

One rule for :func:`ctxfeatures.recommend.recommend` (in process) and
:class:`ctxfeatures.serving.Recommender` (a loaded SavedModel): the casts and
shapes a user means are applied (int32 for int64, ``(batch, 1)`` or a scalar
for ``(batch,)``, Python lists, ragged lists of ids padded), and anything
else is refused naming the feature, the expected dtype and shape, and what
was received, before TensorFlow sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures._data import as_columns, is_scalar


def describe(spec: tf.TensorSpec) -> str:
    dims = ["batch" if i == 0 else "length" for i in range(spec.shape.rank or 0)]
    return (
        f"{spec.dtype.name} of shape ({', '.join(dims)}{',' if len(dims) == 1 else ''})"
    )


def conform(
    features: Mapping[str, Any], signature: Mapping[str, tf.TensorSpec], owner: str
) -> dict[str, tf.Tensor]:
    """The signature's features of a request, cast and reshaped; other keys
    are ignored (a request may carry the whole event)."""
    if not isinstance(features, Mapping):
        raise TypeError(
            f"{owner}: the request must be a mapping of feature names to values, "
            f"e.g. {{{', '.join(repr(n) + ': [...]' for n in signature)}}}. "
            f"Received: {type(features).__name__}"
        )
    missing = [name for name in signature if name not in features]
    if missing:
        raise ValueError(
            f"{owner}: feature '{missing[0]}' is missing from the request. "
            f"Expected features: {sorted(signature)}; received: {sorted(features)}."
        )
    converted = {}
    for name, spec in signature.items():
        value = features[name]
        if not isinstance(value, (tf.Tensor, tf.RaggedTensor)):
            if is_scalar(value):
                value = [value]
            value = as_columns({name: value}, owner, "request")[name]
        converted[name] = _cast(tf.convert_to_tensor(_dense(value)), name, spec, owner)
    sizes = {name: int(value.shape[0]) for name, value in converted.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"{owner}: every feature must hold one row per request. Received "
            f"rows: {sizes}."
        )
    return converted


def _dense(value: Any) -> Any:
    if isinstance(value, tf.RaggedTensor):
        return value.to_tensor("" if value.dtype == tf.string else -1)
    return value


def _cast(value: tf.Tensor, name: str, spec: tf.TensorSpec, owner: str) -> tf.Tensor:
    expected = spec.dtype
    got = value.dtype
    refused = (expected == tf.string) != (got == tf.string) or (
        expected.is_integer and not got.is_integer
    )
    if refused:
        raise TypeError(
            f"{owner}: feature '{name}' must be {describe(spec)}. Received "
            f"{got.name} of shape {tuple(value.shape)}. Convert it first, e.g. "
            + (
                "`np.asarray(values).astype(str)`."
                if expected == tf.string
                else f"`np.asarray(values, np.{expected.name})`."
            )
        )
    if got != expected:
        value = tf.cast(value, expected)
    rank = spec.shape.rank
    if value.shape.rank == rank:
        return value
    if rank == 1 and value.shape.rank == 0:
        return tf.reshape(value, [1])
    if rank == 1 and value.shape.rank == 2 and value.shape[1] == 1:
        return tf.reshape(value, [-1])
    raise ValueError(
        f"{owner}: feature '{name}' must be {describe(spec)}. Received shape "
        f"{tuple(value.shape)}."
        + (
            " For one request, wrap its list: [[...]]."
            if rank == 2 and value.shape.rank == 1
            else ""
        )
    )


def check_k(k: Any, size: int, owner: str = "") -> int:
    """``k`` as an int in ``[1, size]`` (the catalogue's size)."""
    integer = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
    if not integer or not 1 <= k <= size:
        raise ValueError(
            f"{owner}`k` must be between 1 and the catalogue size ({size}). "
            f"Received: k={k!r}"
        )
    return int(k)


def with_exclude(
    signature: dict[str, tf.TensorSpec],
    exclude: str | None,
    ids: tf.Tensor,
    owner: str = "",
) -> dict[str, tf.TensorSpec]:
    """The signature plus the ``exclude`` feature: ``(batch, length)`` ids of
    the catalogue's kind (a query feature of that name must be one)."""
    if exclude is None:
        return signature
    if not isinstance(exclude, str) or not exclude:
        raise TypeError(
            f"{owner}`exclude` must be a feature name or None. Received: {exclude!r}"
        )
    dtype = tf.string if ids.dtype == tf.string else tf.int64
    spec = signature.get(exclude)
    if spec is None:
        return {**signature, exclude: tf.TensorSpec([None, None], dtype, name=exclude)}
    if spec.shape.rank != 2 or (spec.dtype == tf.string) != (dtype == tf.string):
        raise ValueError(
            f"{owner}`exclude`='{exclude}' is a query feature of shape "
            f"{spec.shape} and dtype {spec.dtype.name}, but it must hold a list "
            f"of candidate ids per query ({dtype.name}, shape (batch, length))."
        )
    return signature
