"""TFRecord shards from Parquet: equal rows, per-worker files, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def parquet(tmp_path):
    rng = np.random.default_rng(0)
    size = 3000
    log = {
        "user_id": np.array([f"u{u}" for u in rng.integers(0, 90, size)]),
        "timestamp": rng.integers(0, 10**9, size).astype(np.int64),
        "history": rng.integers(-1, 50, (size, 6)).astype(np.int64),
        "rating": rng.random(size).astype(np.float32),
    }
    os.makedirs(tmp_path / "parquet")
    for number, rows in enumerate(np.array_split(np.arange(size), 3)):
        table = pa.table(
            {k: list(v[rows]) if v.ndim == 2 else v[rows] for k, v in log.items()}
        )
        pq.write_table(table, tmp_path / "parquet" / f"part-{number}.parquet")
    return tmp_path / "parquet", log


def rows(data: tf.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(data.as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_roundtrip_keeps_every_value_and_type(parquet, tmp_path):
    source, log = parquet
    files = cf.tfrecords.parquet_to_tfrecords(
        source, tmp_path / "records", rows_per_record=128
    )
    assert [os.path.basename(f) for f in files] == [
        f"part-{n:05d}.tfrecord" for n in range(3)
    ]
    data = cf.tfrecords.tfrecord_dataset(tmp_path / "records", batch_size=500)
    assert data.element_spec == {
        "user_id": tf.TensorSpec((None,), tf.string),
        "timestamp": tf.TensorSpec((None,), tf.int64),
        "history": tf.TensorSpec((None, 6), tf.int64),
        "rating": tf.TensorSpec((None,), tf.float32),
    }
    result = rows(data)
    for key, values in log.items():
        got = result[key].astype(str) if key == "user_id" else result[key]
        np.testing.assert_array_equal(got, values)


def test_each_pipeline_reads_its_own_files(parquet, tmp_path):
    source, log = parquet
    cf.tfrecords.parquet_to_tfrecords(source, tmp_path / "records")
    parts = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        data = cf.tfrecords.tfrecord_dataset(
            tmp_path / "records", batch_size=100, input_context=context
        )
        batches = list(data.as_numpy_iterator())
        assert max(len(b["timestamp"]) for b in batches) == 50
        parts.append(np.concatenate([b["timestamp"] for b in batches]))
    assert [len(p) for p in parts] == [2000, 1000]  # files 0, 2 and file 1
    np.testing.assert_array_equal(
        np.sort(np.concatenate(parts)), np.sort(log["timestamp"])
    )
    shuffled = rows(
        cf.tfrecords.tfrecord_dataset(
            tmp_path / "records", batch_size=100, shuffle_buffer=1000, seed=1
        )
    )["timestamp"]
    assert not np.array_equal(shuffled, log["timestamp"])
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(log["timestamp"]))
    context = tf.distribute.InputContext(num_input_pipelines=4)
    with pytest.raises(ValueError, match="3 file\\(s\\) for 4 input pipelines"):
        cf.tfrecords.tfrecord_dataset(
            tmp_path / "records", batch_size=8, input_context=context
        )


def test_errors(parquet, tmp_path):
    source, _ = parquet
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not empty"):
        cf.tfrecords.parquet_to_tfrecords(source, tmp_path / "used")
    assert (tmp_path / "used" / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="has no spec.json"):
        cf.tfrecords.tfrecord_dataset(tmp_path / "used", batch_size=8)
