"""Columns as users hold them (mappings of arrays or lists, DataFrames) to datasets.

Every entry point that reads examples (``build_retrieval_model``'s
``adapt_data`` and ``candidates``, ``prepare``, ``evaluate_top_k``,
``adapt_towers``) converts its input here, once, so that a mapping of equal
length columns works wherever a ``tf.data.Dataset`` of feature dicts does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf


def is_columns(data: Any) -> bool:
    """Whether ``data`` is a mapping of columns (a dict or a DataFrame)."""
    return isinstance(data, Mapping) or (
        hasattr(data, "columns") and hasattr(data, "items") and hasattr(data, "iloc")
    )


def as_dataset(data: Any, owner: str, argument: str = "data") -> tf.data.Dataset:
    """``data`` as an unbatched dataset of feature dicts (datasets pass through).

    Args:
        data: A ``tf.data.Dataset`` of feature dicts, or a mapping (or pandas
            DataFrame) of equal-length columns: numpy arrays, lists, tensors.
        owner: The function the user called, for error messages.
        argument: The argument's name, for error messages.

    Raises:
        TypeError: anything else, naming ``owner``, ``argument`` and the fix.
        ValueError: columns of different lengths, empty or with missing values.
    """
    if isinstance(data, tf.data.Dataset):
        if not isinstance(data.element_spec, Mapping):
            raise TypeError(
                f"{owner}: `{argument}` must be a tf.data.Dataset of feature dicts "
                "or a mapping of columns; received a dataset of "
                f"{type(data.element_spec).__name__}. Map it to dicts, e.g. "
                "`data.map(lambda x, y: {'user_id': x, 'item_id': y})`."
            )
        return data
    if not is_columns(data):
        raise TypeError(
            f"{owner}: `{argument}` must be a mapping of equal-length columns "
            "(e.g. {'user_id': [...], 'item_id': [...]}, or a pandas DataFrame) "
            f"or a tf.data.Dataset of feature dicts. Received: {type(data).__name__}"
        )
    return tf.data.Dataset.from_tensor_slices(as_columns(data, owner, argument))


def as_columns(data: Any, owner: str, argument: str) -> dict[str, Any]:
    """A mapping's columns as arrays (ragged lists padded), lengths checked."""
    columns = {str(key): _column(value, key, owner) for key, value in data.items()}
    if not columns:
        raise ValueError(f"{owner}: `{argument}` holds no columns.")
    lengths = {key: int(np.shape(value)[0]) for key, value in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{owner}: the columns of `{argument}` must have one length (one "
            f"row per example). Received lengths {lengths}."
        )
    if not next(iter(lengths.values())):
        raise ValueError(f"{owner}: `{argument}` has no rows.")
    return columns


def _column(values: Any, key: Any, owner: str) -> Any:
    if isinstance(values, (tf.Tensor, tf.RaggedTensor)):
        if isinstance(values, tf.RaggedTensor):
            return values.to_tensor(_pad_value(values.dtype))
        return _checked_rank(values, key, owner)
    if hasattr(values, "to_numpy"):  # pandas Series
        values = values.to_numpy()
    if is_scalar(values):
        raise ValueError(
            f"{owner}: column '{key}' must be a list or array with one value per "
            f"example. Received a single value: {values!r}"
        )
    array = np.asarray(values) if not _is_ragged(values) else None
    if array is None or array.dtype == object:
        array = _from_objects(list(values), key, owner)
    return _checked_rank(array, key, owner)


def is_scalar(value: Any) -> bool:
    """A single value (a string, a number, a 0-d array), not a column."""
    if isinstance(value, (str, bytes)):
        return True
    return not hasattr(value, "__len__") or getattr(value, "ndim", 1) == 0


def _is_ragged(values: Any) -> bool:
    lengths = {len(v) for v in values if isinstance(v, (list, tuple, np.ndarray))}
    return len(lengths) > 1


def _from_objects(values: list[Any], key: Any, owner: str) -> np.ndarray:
    """Strings, or lists of ids of any lengths (padded with "" or -1)."""
    missing = [i for i, v in enumerate(values) if v is None or _is_nan(v)]
    if missing:
        raise ValueError(
            f"{owner}: column '{key}' holds {len(missing)} missing values (None "
            f"or NaN), the first at row {missing[0]}. Drop or fill them first "
            "(pandas: `.dropna()` / `.fillna(...)`)."
        )
    if not any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        return np.asarray([_text(v) for v in values])
    rows = [
        list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for v in values
    ]
    flat = [item for row in rows for item in row]
    strings = any(isinstance(item, (str, bytes, np.str_)) for item in flat)
    pad: Any = "" if strings else -1
    width = max(1, max(map(len, rows)))
    padded = [row + [pad] * (width - len(row)) for row in rows]
    if strings:
        return np.asarray([[_text(item) for item in row] for row in padded])
    integers = all(isinstance(item, (int, np.integer)) for item in flat)
    return np.asarray(padded, dtype=np.int64 if integers else None)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _pad_value(dtype: tf.DType) -> Any:
    return "" if dtype == tf.string else tf.cast(-1, dtype)


def _checked_rank(values: Any, key: Any, owner: str) -> Any:
    if len(np.shape(values)) > 2:
        raise ValueError(
            f"{owner}: column '{key}' must hold one value or one list per example "
            f"(rank 1 or 2). Received shape {tuple(np.shape(values))}."
        )
    return values
