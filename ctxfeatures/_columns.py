"""Reading whole columns of an event log, from tf.data or numpy mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import is_batched

_READ_BATCH = 1 << 16


def read_columns(
    events: Any, keys: Sequence[str], owner: str, roles: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The named columns of ``events`` as numpy arrays, one value per event.

    Args:
        events: A ``tf.data.Dataset`` of feature dicts (batched or not) or a
            mapping of equal-length columns.
        keys: Column names to read.
        owner: Caller, for error messages.
        roles: What each key is (e.g. ``"user"``), naming the argument to fix.

    Raises:
        TypeError: events of another kind.
        ValueError: a missing column, or columns of unequal length.
    """
    roles = roles or ["feature"] * len(keys)
    if isinstance(events, tf.data.Dataset):
        spec = events.element_spec
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"{owner} takes a tf.data.Dataset of feature dicts; its elements "
                f"are {type(spec).__name__}."
            )
        _check_keys(spec, keys, roles, owner)
        data = events.map(lambda x: {key: x[key] for key in keys})
        if is_batched(events):
            data = data.unbatch()
        data = data.batch(_READ_BATCH)
        return _concatenate(data, keys, int(events.cardinality()))
    if isinstance(events, Mapping):
        _check_keys(events, keys, roles, owner)
        columns = {key: np.asarray(events[key]) for key in keys}
        sizes = {key: len(np.atleast_1d(value)) for key, value in columns.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"{owner}: columns must have equal lengths; got {sizes}.")
        return columns
    raise TypeError(
        f"{owner} takes a tf.data.Dataset of feature dicts or a mapping of numpy "
        f"columns; received {type(events).__name__}."
    )


def _check_keys(
    available: Mapping[str, Any], keys: Sequence[str], roles: Sequence[str], owner: str
) -> None:
    for key, role in zip(keys, roles):
        if key not in available:
            raise ValueError(
                f"{owner}: the {role} column '{key}' is missing. Columns: "
                f"{sorted(available)}. Pass `{role}=` with the right name."
            )


def as_text(values: np.ndarray, key: str, owner: str) -> np.ndarray:
    """Bytes (as tf.data yields them) or Python strings to a numpy str array."""
    if values.dtype.kind == "U":
        return values
    items = values.tolist()
    if any(value is None or isinstance(value, float) for value in items):
        raise ValueError(
            f"{owner}: column '{key}' holds missing values (None or NaN). Drop "
            "those events or give them an id."
        )
    try:
        return np.asarray(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in items],
            dtype=str,
        )
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{owner}: column '{key}' holds bytes that are not UTF-8 ({error}). "
            "Decode the file with its real encoding (e.g. latin-1) first."
        ) from None


def as_ids(values: np.ndarray, key: str, owner: str) -> np.ndarray:
    """An id column as numpy str (for text ids) or int64."""
    if values.dtype.kind in "SOU":
        return as_text(values, key, owner)
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    raise TypeError(
        f"{owner}: column '{key}' must hold string or integer ids; received "
        f"dtype {values.dtype}. Convert it first."
    )


def _concatenate(data: tf.data.Dataset, keys: Sequence[str], size: int) -> dict:
    """Batches of columns into one array each.

    With a known size the arrays are filled in place, so a large log is held
    once, not once in parts and once concatenated.
    """
    if size < 0:
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        for batch in data:
            for key in keys:
                parts[key].append(batch[key].numpy())
        return {
            key: np.concatenate(chunks) if chunks else np.asarray([])
            for key, chunks in parts.items()
        }
    columns: dict[str, np.ndarray] = {}
    offset = 0
    for batch in data:
        for key in keys:
            values = batch[key].numpy()
            if key not in columns:
                columns[key] = np.empty((size, *values.shape[1:]), values.dtype)
            columns[key][offset : offset + len(values)] = values
        offset += len(values)
    return {key: columns.get(key, np.asarray([]))[:offset] for key in keys}
