"""Engine output as TFRecord shards: training input made of TensorFlow ops only.

:func:`ctxfeatures.shards.parquet_dataset` reads Parquet with pyarrow, in the
Python process that iterates the dataset. A ``ParameterServerStrategy``
worker is a bare TensorFlow server that runs only graphs, so its input must be
TensorFlow ops: :func:`parquet_to_tfrecords` converts the engine's Parquet
files once, and :func:`tfrecord_dataset` reads them back with
``tf.data.TFRecordDataset`` anywhere, giving each worker its own files.

Each record holds a block of rows: one ``tf.train.Example`` whose features are
the serialized column tensors of the block, so reading parses whole blocks,
not one example at a time. ``spec.json`` beside the files records each
column's dtype and shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import check_positive_int
from ctxfeatures.shards import (
    Source,
    files_of_pipeline,
    parquet_files,
    read_batches,
)

__all__ = ["parquet_to_tfrecords", "tfrecord_dataset"]

_SPEC = "spec.json"


def parquet_to_tfrecords(
    source: Source,
    directory: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    rows_per_record: int = 1024,
) -> list[str]:
    """Writes Parquet files as TFRecord files, one for each, in order.

    Args:
        source: Parquet files, as :func:`ctxfeatures.shards.parquet_files`
            takes them.
        directory: A new (or empty) directory for ``part-NNNNN.tfrecord``
            files and ``spec.json``.
        columns: Columns to keep (default: all).
        rows_per_record: Rows per record (the unit that is parsed at once).

    Returns:
        The TFRecord files, in the order of the Parquet files.

    Raises:
        ValueError: a non-empty ``directory``, a missing column, or a list
            column of ragged lengths.
    """
    owner = "parquet_to_tfrecords()"
    rows_per_record = check_positive_int(rows_per_record, "rows_per_record")
    files = parquet_files(source, owner)
    directory = os.fspath(directory)
    if os.path.isdir(directory) and os.listdir(directory):
        raise ValueError(
            f"{owner}: directory '{directory}' is not empty. Choose a new one; "
            "nothing is overwritten."
        )
    os.makedirs(directory, exist_ok=True)
    spec: dict[str, list] = {}
    written = []
    for number, path in enumerate(files):
        target = os.path.join(directory, f"part-{number:05d}.tfrecord")
        with tf.io.TFRecordWriter(target) as writer:
            for block in read_batches(
                path, columns=columns, batch_size=rows_per_record
            ):
                writer.write(_record(block, spec))
        written.append(target)
    with open(os.path.join(directory, _SPEC), "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    return written


def _record(block: dict[str, np.ndarray], spec: dict[str, list]) -> bytes:
    features = {}
    for name, values in block.items():
        tensor = tf.constant(values.astype(str) if values.dtype == object else values)
        spec.setdefault(name, [tensor.dtype.name, tensor.shape.as_list()[1:]])
        serialized = tf.io.serialize_tensor(tensor).numpy()
        features[name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[serialized])
        )
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString()


def tfrecord_dataset(
    directory: str | os.PathLike,
    *,
    batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 0,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A batched ``tf.data`` input of files written by :func:`parquet_to_tfrecords`.

    Pure TensorFlow ops, so it runs on parameter-server workers. With an
    ``input_context`` (``DatasetCreator`` and
    ``distribute_datasets_from_function`` pass one), pipeline ``i`` of ``n``
    reads files ``i, i + n, ...`` in batches of the per-replica size.

    Args:
        directory: The directory :func:`parquet_to_tfrecords` wrote.
        batch_size: Global batch size.
        input_context: The ``tf.distribute.InputContext`` of this pipeline.
        shuffle_buffer: Rows in ``tf.data``'s shuffle buffer (0: file order);
            the files' order is shuffled too.
        seed: Seed of the shuffles.

    Raises:
        ValueError: no ``spec.json`` in ``directory``, or fewer files than
            input pipelines.
    """
    owner = "tfrecord_dataset()"
    batch_size = check_positive_int(batch_size, "batch_size")
    shuffle_buffer = check_positive_int(shuffle_buffer, "shuffle_buffer", 0)
    directory = os.fspath(directory)
    spec_path = os.path.join(directory, _SPEC)
    if not os.path.exists(spec_path):
        raise ValueError(
            f"{owner}: '{directory}' has no {_SPEC}; write it with "
            "parquet_to_tfrecords()."
        )
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    files = sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.endswith(".tfrecord")
    )
    files, batch_size = files_of_pipeline(files, batch_size, input_context, owner)
    features = {name: tf.io.FixedLenFeature([], tf.string) for name in spec}

    def parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, features)
        return {
            name: tf.ensure_shape(
                tf.io.parse_tensor(parsed[name], tf.as_dtype(dtype)), [None, *shape]
            )
            for name, (dtype, shape) in spec.items()
        }

    data = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_buffer:
        data = data.shuffle(len(files), seed=seed)
    data = tf.data.TFRecordDataset(data).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    data = data.unbatch()
    if shuffle_buffer:
        data = data.shuffle(shuffle_buffer, seed=seed)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
