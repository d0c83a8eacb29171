"""Event logs as Parquet shards: reading, training input, and adapt.

Data engines (:mod:`ctxfeatures.engines`) write their output as many Parquet
files. This module reads them back without holding the log in memory:

* :func:`read_batches`: numpy batches of the chosen columns, file by file;
* :func:`parquet_dataset`: a ``tf.data`` input that gives each data-parallel
  worker its own files (the ``tf.distribute.InputContext`` contract);
* :func:`adapt_from_shards`: every adaptable layer of some towers learns its
  state from all shards, each shard read by its own process and the
  statistics merged, with no second pass (its code is in
  ``ctxfeatures.shard_adapt``).

Needs pyarrow (``pip install "ctxfeatures[engines]"``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import check_positive_int

__all__ = [
    "adapt_from_shards",
    "parquet_dataset",
    "parquet_files",
    "read_batches",
]

Source = str | os.PathLike | Sequence[str | os.PathLike]


def parquet_files(source: Source, owner: str = "parquet_files()") -> list[str]:
    """The Parquet files of a source, in sorted path order.

    Args:
        source: A file, a directory (its ``*.parquet`` files), a glob pattern,
            or a list of files.
        owner: Caller, for error messages.

    Raises:
        ValueError: no file matches, or a listed file does not exist.
        TypeError: a source of another kind.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            files = glob.glob(os.path.join(glob.escape(path), "*.parquet"))
        elif os.path.isfile(path):
            files = [path]
        else:
            files = glob.glob(path)
        if not files:
            raise ValueError(
                f"{owner}: no Parquet file found at '{path}'. Pass a file, a "
                "directory of *.parquet files, a glob pattern or a list of files."
            )
    elif isinstance(source, Sequence) and source:
        files = [os.fspath(name) for name in source]
        absent = [name for name in files if not os.path.isfile(name)]
        if absent:
            raise ValueError(f"{owner}: file(s) not found: {absent[:3]}.")
    else:
        raise TypeError(
            f"{owner}: the source must be a path, a glob pattern or a non-empty "
            f"list of files; received {type(source).__name__}."
        )
    return sorted(files)


def _pyarrow(owner: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{owner} needs pyarrow: `pip install pyarrow` (or "
            '`pip install "ctxfeatures[engines]"`).'
        ) from None
    return pq


# ----------------------------------------------------------------- reading
def read_batches(
    source: Source,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 65536,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields the log as numpy column batches, file by file, in order.

    Scalar columns become 1-D arrays (strings as ``str`` objects); list
    columns of one length per file, such as ``history``, become 2-D arrays
    ``(rows, length)``. A batch never spans two files.

    Args:
        source: Parquet files, as :func:`parquet_files` takes them.
        columns: Columns to read (default: all).
        batch_size: Most rows per batch.

    Raises:
        ValueError: a missing column, or a list column of ragged lengths.
    """
    owner = "read_batches()"
    pq = _pyarrow(owner)
    batch_size = check_positive_int(batch_size, "batch_size")
    for path in parquet_files(source, owner):
        handle = pq.ParquetFile(path)
        _check_columns(handle.schema_arrow.names, columns, path, owner)
        for batch in handle.iter_batches(batch_size=batch_size, columns=columns):
            yield {
                name: _to_numpy(batch.column(name), name, path, owner)
                for name in batch.schema.names
            }


def _check_columns(
    names: Sequence[str], columns: Sequence[str] | None, path: str, owner: str
) -> None:
    missing = [name for name in columns or () if name not in names]
    if missing:
        raise ValueError(
            f"{owner}: column(s) {missing} are missing from '{path}'. Its "
            f"columns: {list(names)}."
        )


def _to_numpy(array: Any, name: str, path: str, owner: str) -> np.ndarray:
    import pyarrow as pa

    if isinstance(array.type, (pa.ListType, pa.LargeListType)):
        lengths = np.diff(array.offsets.to_numpy())
        if array.null_count or (lengths.size and (lengths != lengths[0]).any()):
            raise ValueError(
                f"{owner}: list column '{name}' of '{path}' has rows of "
                "different lengths (or nulls); pad them to one length, as "
                "add_history does."
            )
        width = int(lengths[0]) if lengths.size else 0
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(array), width)
    return array.to_numpy(zero_copy_only=False)


# ----------------------------------------------------------------- tf.data
def parquet_dataset(
    source: Source,
    *,
    batch_size: int,
    columns: Sequence[str] | None = None,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched ``tf.data`` input read from Parquet files.

    With an ``input_context`` (as ``distribute_datasets_from_function`` and
    ``tf.keras.utils.experimental.DatasetCreator`` pass it), pipeline ``i`` of
    ``n`` reads files ``i, i + n, ...`` and batches of the per-replica size,
    so every worker reads its own shards and no example is read twice.

    An engine's output is grouped by user, so shuffle for training: with
    ``shuffle_buffer`` rows, the files are read in a random order (each
    epoch another) and each block of that many rows is shuffled before it is
    cut into batches. The work is numpy's, on whole blocks, so it costs far
    less than ``unbatch().shuffle()``.

    The files are read by pyarrow in the process that iterates the dataset
    (a ``tf.data`` generator), so a remote ParameterServerStrategy worker,
    which runs only the graph, cannot read them; with multi-worker training
    each worker process reads its own.

    Args:
        source: Parquet files, as :func:`parquet_files` takes them.
        batch_size: Global batch size (divided among replicas by the input
            context, like ``input_context.get_per_replica_batch_size``).
        columns: Columns to read (default: all).
        input_context: The ``tf.distribute.InputContext`` of this pipeline.
        shuffle_buffer: Rows shuffled together (0: the files' order).
        seed: Seed of the shuffle (None: different every run).
        drop_remainder: Drop the last, short batch.

    Raises:
        ValueError: fewer files than input pipelines, or a missing column.
    """
    owner = "parquet_dataset()"
    pq = _pyarrow(owner)
    batch_size = check_positive_int(batch_size, "batch_size")
    shuffle_buffer = check_positive_int(shuffle_buffer, "shuffle_buffer", 0)
    files, batch_size = files_of_pipeline(
        parquet_files(source, owner), batch_size, input_context, owner
    )
    schema = pq.ParquetFile(files[0]).schema_arrow
    _check_columns(schema.names, columns, files[0], owner)
    first = next(read_batches(files[0], columns=columns, batch_size=1))
    signature = {
        name: tf.TensorSpec((None, *values.shape[1:]), _dtype(values))
        for name, values in first.items()
    }
    epochs = iter(range(1 << 62))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        rng = None
        order = files
        if shuffle_buffer:
            epoch = next(epochs)
            rng = np.random.default_rng(None if seed is None else [seed, epoch])
            order = [files[i] for i in rng.permutation(len(files))]
        chunks = read_batches(
            order, columns=columns, batch_size=min(max(batch_size, 4096), 65536)
        )
        yield from _rebatch(chunks, batch_size, shuffle_buffer, rng, drop_remainder)

    return tf.data.Dataset.from_generator(
        generate, output_signature=signature
    ).prefetch(tf.data.AUTOTUNE)


def files_of_pipeline(
    files: list[str],
    batch_size: int,
    input_context: tf.distribute.InputContext | None,
    owner: str,
) -> tuple[list[str], int]:
    """This input pipeline's files (``i, i + n, ...``) and per-replica batch."""
    if input_context is None:
        return files, batch_size
    pipelines = input_context.num_input_pipelines
    if len(files) < pipelines:
        raise ValueError(
            f"{owner}: {len(files)} file(s) for {pipelines} input pipelines; "
            "each worker needs its own files. Write more, smaller files "
            "(e.g. `rows_per_file=` of the engine)."
        )
    files = files[input_context.input_pipeline_id :: pipelines]
    return files, input_context.get_per_replica_batch_size(batch_size)


def _rebatch(
    chunks: Iterator[dict[str, np.ndarray]],
    batch_size: int,
    block: int,
    rng: np.random.Generator | None,
    drop_remainder: bool,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of exactly ``batch_size`` rows across chunks and files."""
    pending: list[dict[str, np.ndarray]] = []
    rows = 0
    target = max(batch_size, block)
    for chunk in chunks:
        pending.append(chunk)
        rows += len(next(iter(chunk.values())))
        if rows < target:
            continue
        joined = _join(pending, rng)
        full = rows // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield {k: v[start : start + batch_size] for k, v in joined.items()}
        pending = [{k: v[full:] for k, v in joined.items()}]
        rows -= full
    if rows and pending:
        joined = _join(pending, rng)
        for start in range(0, rows, batch_size):
            if drop_remainder and start + batch_size > rows:
                break
            yield {k: v[start : start + batch_size] for k, v in joined.items()}


def _join(
    parts: list[dict[str, np.ndarray]], rng: np.random.Generator | None
) -> dict[str, np.ndarray]:
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if rng is not None:
        order = rng.permutation(len(next(iter(joined.values()))))
        joined = {k: v[order] for k, v in joined.items()}
    return joined


def _dtype(values: np.ndarray) -> tf.DType:
    if values.dtype.kind in "OUS":
        return tf.string
    return tf.as_dtype(values.dtype)


# The adapt half lives in its own module; re-exported here, where it is documented.
from ctxfeatures.shard_adapt import adapt_from_shards  # noqa: E402
