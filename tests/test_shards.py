"""Parquet shards: file lists, batches, tf.data input, adapt from shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures import shards

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def event_log(n: int = 6000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "user_id": np.array([f"u{u}" for u in rng.zipf(1.4, n) % 400]),
        "movie_title": np.array(
            [f"title {i} word{i % 7}" for i in rng.integers(0, 300, n)]
        ),
        "timestamp": rng.integers(880_000_000, 890_000_000, n).astype(np.int64),
        "history": rng.integers(-1, 300, (n, 5)).astype(np.int64),
    }


def write(log: dict, directory, shards_count: int) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    size = len(log["user_id"])
    paths = []
    for number, rows in enumerate(np.array_split(np.arange(size), shards_count)):
        columns = {
            k: (list(v[rows]) if v.ndim == 2 else v[rows]) for k, v in log.items()
        }
        path = os.path.join(directory, f"part-{number:05d}.parquet")
        pq.write_table(pa.table(columns), path)
        paths.append(path)
    return paths


def towers():
    query = cf.Tower(
        {
            "user_id": cf.IdEmbedding(8, min_frequency=2),
            "timestamp": [
                cf.TimestampBuckets(4, num_buckets=12, boundaries="quantile"),
                cf.NormalizedTimestamp(),
            ],
        },
        name="query",
    )
    candidate = cf.Tower(
        {"movie_title": [cf.IdEmbedding(8), cf.TextEmbedding(8)]}, name="candidate"
    )
    return query, candidate


def states(*towers_):
    return [layer.learned_state for t in towers_ for layer in t.feature_layers]


# ----------------------------------------------------------------- files
def test_parquet_files_forms_and_errors(tmp_path):
    paths = write(event_log(100), tmp_path / "log", 3)
    assert shards.parquet_files(tmp_path / "log") == paths
    assert (
        shards.parquet_files(str(tmp_path / "log" / "part-0000[12].parquet"))
        == (paths[1:])
    )
    assert shards.parquet_files(list(reversed(paths))) == paths
    assert shards.parquet_files(paths[0]) == paths[:1]
    with pytest.raises(ValueError, match="no Parquet file found"):
        shards.parquet_files(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not found"):
        shards.parquet_files([paths[0], str(tmp_path / "gone.parquet")])
    with pytest.raises(TypeError, match="non-empty list of files"):
        shards.parquet_files([])


def test_read_batches_gives_numpy_columns(tmp_path):
    log = event_log(1000)
    write(log, tmp_path / "log", 3)
    batches = list(shards.read_batches(tmp_path / "log", batch_size=128))
    # 334, 333, 333 rows: a batch never spans two files.
    assert [len(b["user_id"]) for b in batches[:3]] == [128, 128, 78]
    for key in log:
        np.testing.assert_array_equal(
            np.concatenate([b[key] for b in batches]), log[key]
        )
    assert batches[0]["history"].shape == (128, 5)
    only = next(shards.read_batches(tmp_path / "log", columns=["timestamp"]))
    assert list(only) == ["timestamp"]
    with pytest.raises(ValueError, match=r"column\(s\) \['rating'\] are missing"):
        next(shards.read_batches(tmp_path / "log", columns=["rating"]))


def test_read_batches_rejects_ragged_lists(tmp_path):
    path = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"history": [[1, 2], [3]]}), path)
    with pytest.raises(ValueError, match="rows of different lengths"):
        next(shards.read_batches(path))


# ----------------------------------------------------------------- tf.data
def test_parquet_dataset_reads_every_row(tmp_path):
    log = event_log(1000)
    write(log, tmp_path / "log", 2)
    data = shards.parquet_dataset(tmp_path / "log", batch_size=256)
    assert data.element_spec["history"] == tf.TensorSpec((None, 5), tf.int64)
    assert data.element_spec["user_id"] == tf.TensorSpec((None,), tf.string)
    batches = list(data.as_numpy_iterator())
    # Batches of exactly 256 rows across the two files of 500.
    assert [len(b["timestamp"]) for b in batches] == [256, 256, 256, 232]
    titles = np.concatenate([b["movie_title"] for b in batches]).astype(str)
    np.testing.assert_array_equal(titles, log["movie_title"])
    dropped = shards.parquet_dataset(
        tmp_path / "log", batch_size=256, drop_remainder=True
    )
    assert sum(1 for _ in dropped) == 3


def test_parquet_dataset_shuffles_blocks_and_files(tmp_path):
    log = event_log(4000)
    write(log, tmp_path / "log", 4)

    def epoch(data):
        return np.concatenate([b["timestamp"] for b in data.as_numpy_iterator()])

    data = shards.parquet_dataset(
        tmp_path / "log", batch_size=100, shuffle_buffer=1500, seed=7
    )
    first, second = epoch(data), epoch(data)
    # Every row once per epoch, in another order each epoch.
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), np.sort(log["timestamp"]))
        assert not np.array_equal(order, log["timestamp"])
    assert not np.array_equal(first, second)
    # Rows of different files share batches (blocks span files).
    file_of = {t: i // 1000 for i, t in enumerate(log["timestamp"])}
    assert any(len({file_of[t] for t in first[i : i + 100]}) > 1 for i in (0, 1000))
    again = shards.parquet_dataset(
        tmp_path / "log", batch_size=100, shuffle_buffer=1500, seed=7
    )
    np.testing.assert_array_equal(epoch(again), first)  # seeded: reproducible


def test_parquet_dataset_gives_each_pipeline_its_own_files(tmp_path):
    log = event_log(1200)
    write(log, tmp_path / "log", 5)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        data = shards.parquet_dataset(
            tmp_path / "log", batch_size=64, input_context=context
        )
        batches = list(data.as_numpy_iterator())
        # Per-replica batches: the global 64 split between 2 replicas.
        assert max(len(b["timestamp"]) for b in batches) == 32
        seen.append(np.concatenate([b["timestamp"] for b in batches]))
    # Files 0, 2, 4 and 1, 3: disjoint, and together the whole log.
    assert len(seen[0]) == 240 * 3 and len(seen[1]) == 240 * 2
    np.testing.assert_array_equal(
        np.sort(np.concatenate(seen)), np.sort(log["timestamp"])
    )
    context = tf.distribute.InputContext(num_input_pipelines=8)
    with pytest.raises(ValueError, match="5 file\\(s\\) for 8 input pipelines"):
        shards.parquet_dataset(tmp_path / "log", batch_size=8, input_context=context)


# ----------------------------------------------------------------- adapt
def assert_same_states(expected, result) -> None:
    for want, got in zip(expected, result):
        if isinstance(want, cf.layers.state.Vocabulary):
            assert got == want  # exactly: same ids, same order
        elif isinstance(want, cf.layers.state.Moments):
            assert got.count == want.count
            np.testing.assert_allclose(
                [got.mean, got.variance, got.low, got.high],
                [want.mean, want.variance, want.low, want.high],
                rtol=1e-12,
            )
        else:  # quantile boundaries: within the sketch's rank error
            assert got.count == want.count
            np.testing.assert_allclose(got.values, want.values, rtol=0, atol=2e5)


@pytest.mark.parametrize("processes", [1, 2])
def test_adapt_from_shards_equals_tower_adapt(tmp_path, processes):
    log = event_log(6000)
    write(log, tmp_path / "log", 4)
    expected = towers()
    cf.adapt_towers(tf.data.Dataset.from_tensor_slices(log), *expected)
    result = towers()
    shards.adapt_from_shards(
        tmp_path / "log", *result, processes=processes, batch_size=500
    )
    assert all(layer.is_adapted for t in result for layer in t.feature_layers)
    assert_same_states(states(*expected), states(*result))
    # min_frequency applies to the merged counts, not each shard's.
    vocabulary = result[0].feature_layers[0].get_vocabulary()
    users, counts = np.unique(log["user_id"], return_counts=True)
    assert set(vocabulary) - {"[UNK]"} == set(users[counts >= 2])
    # The adapted towers embed (no second pass, nothing left to adapt).
    title = {"movie_title": tf.constant(["title 1 word1"])}
    assert result[1](title).shape == (1, result[1].output_dim)


def test_adapt_from_shards_names_the_feature_and_file(tmp_path):
    log = event_log(100)
    write({k: v for k, v in log.items() if k != "timestamp"}, tmp_path / "log", 2)
    with pytest.raises(ValueError, match=r"\['timestamp'\] are missing"):
        shards.adapt_from_shards(tmp_path / "log", *towers())
    bad = dict(log, timestamp=-log["timestamp"])
    write(bad, tmp_path / "bad", 2)
    for processes in (1, 2):
        with pytest.raises(ValueError, match="feature 'timestamp' in '.*part-0000"):
            shards.adapt_from_shards(tmp_path / "bad", *towers(), processes=processes)


def test_merge_state_refuses_other_statistics():
    layer = cf.IdEmbedding(4)
    other = cf.NormalizedTimestamp()
    other.update_state(tf.constant([1_000_000, 2_000_000], tf.int64))
    with pytest.raises(TypeError, match="statistics of the same kind of layer"):
        layer.merge_state(other.pending_state)


# Two MultiWorkerMirroredStrategy workers read their own Parquet files through
# distribute_datasets_from_function and train one model together.
PARQUET_WORKER = """
import json, os, sys
import ctxfeatures as cf
import numpy as np, tensorflow as tf
from conftest import build_retrieval, synthetic_events

index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
tf.keras.utils.set_random_seed(7)
data, catalogue = synthetic_events(n=2048)
model = build_retrieval(data, catalogue, strategy=strategy)
model.compile(tf.keras.optimizers.Adagrad(0.1))
source = os.environ["PARQUET_DIR"]

def dataset_fn(context):
    return model.prepare(cf.shards.parquet_dataset(
        source, batch_size=256, input_context=context, drop_remainder=True))

own = cf.shards.parquet_dataset(
    source, batch_size=256, input_context=tf.distribute.InputContext(2, index, 2))
seen = np.concatenate([b["timestamp"] for b in own.as_numpy_iterator()])
train = strategy.distribute_datasets_from_function(dataset_fn)
history = model.fit(train, epochs=2, steps_per_epoch=4, verbose=0)
print(json.dumps({"seen": sorted(seen.tolist()), "loss": history.history["loss"]}))
"""


@pytest.mark.slow
def test_multi_worker_training_reads_each_workers_own_files(
    tmp_path, root, child_env, cluster, synthetic
):
    data, _ = synthetic(n=2048)
    log = next(iter(data.batch(4096).as_numpy_iterator()))
    write({k: np.asarray(v) for k, v in log.items()}, tmp_path / "log", 4)
    addresses = cluster(worker=2)
    workers = []
    for index in range(2):
        config = {"cluster": addresses, "task": {"type": "worker", "index": index}}
        env = {"TF_CONFIG": json.dumps(config), "PARQUET_DIR": str(tmp_path / "log")}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", PARQUET_WORKER],
                env=child_env(env),
                cwd=str(root),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-4000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # Files 0, 2 and 1, 3: disjoint halves of the log, together all of it.
    assert [len(r["seen"]) for r in results] == [1024, 1024]
    assert sorted(results[0]["seen"] + results[1]["seen"]) == sorted(
        log["timestamp"].tolist()
    )
    # One model: both workers report the same all-reduced loss, which falls.
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    assert results[0]["loss"][1] < results[0]["loss"][0]
