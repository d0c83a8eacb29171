"""The chief of the parameter-server test, run by test_parameter_servers.py.

``python tests/ps_chief.py OUT_DIR`` with TF_CONFIG naming this process the
chief of a cluster whose 2 workers and 2 parameter servers already run. It
prints one JSON line. docs/distributed.rst shows the parts between the
``[start ...]`` / ``[end ...]`` markers, exactly as they run here.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf
from conftest import synthetic_events

import ctxfeatures as cf

# [start ps-model]
OUT = sys.argv[1]  # where checkpoints and the export go
N, BATCH = 16384, 128


def read_events() -> tf.data.Dataset:
    """The training interactions (generated here; files in a real job)."""
    return synthetic_events(n=N)[0]


movies = synthetic_events(n=N)[1]


def build(strategy: tf.distribute.Strategy | None = None) -> cf.RetrievalModel:
    tf.keras.utils.set_random_seed(7)
    return cf.build_retrieval_model(
        {
            "user_id": cf.IdEmbedding(16),
            "timestamp": cf.TimestampBuckets(16, num_buckets=20),
        },
        {"item": [cf.IdEmbedding(16), cf.TextEmbedding(16)]},
        movies,
        candidate_id="item",
        adapt_data=read_events(),
        head_units=(16,),
        strategy=strategy,
    )


resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
strategy = tf.distribute.experimental.ParameterServerStrategy(
    resolver,
    # Splits every variable of 256 bytes or more across the two parameter
    # servers (tiny here so the test's small tables split; 256 << 10 is a
    # more usual size).
    variable_partitioner=tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=256, max_shards=2
    ),
)
# Adapts on the chief, then creates every variable on the parameter servers.
model = build(strategy)
model.compile(tf.keras.optimizers.Adagrad(0.05))


def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    # Runs on each worker: its own shard, prepared there (vocabulary lookups
    # included), so only integer ids and numbers reach the training step.
    shard = read_events().shard(context.num_input_pipelines, context.input_pipeline_id)
    return model.prepare(shard.batch(BATCH)).repeat()


# [end ps-model]

# The single-process reference starts from the same weights (read from a
# checkpoint of the sharded model) and trains on the same batches: the
# workers' two shards, in turns.
reference = build()
initial = tf.train.Checkpoint(model=model).write(os.path.join(OUT, "initial"))
tf.train.Checkpoint(model=reference).read(initial).assert_existing_objects_matched()
shards = [read_events().shard(2, i).batch(BATCH) for i in range(2)]
turns = tf.data.Dataset.range(2).repeat(N // BATCH // 2)
batches = reference.prepare(tf.data.Dataset.choose_from_datasets(shards, turns))
reference.compile(tf.keras.optimizers.Adagrad(0.05))
untrained = reference.evaluate(batches, verbose=0, return_dict=True)["loss"]
expected = reference.fit(batches, epochs=1, verbose=0).history["loss"]

# [start ps-fit]
history = model.fit(
    tf.keras.utils.experimental.DatasetCreator(dataset_fn),
    epochs=1,
    steps_per_epoch=N // BATCH,
)
checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
path = checkpoint.save(os.path.join(OUT, "checkpoint"))

# Later, on any machine: restore into a model built without the strategy
# (same features, same adapt data), then evaluate or export.
local = build()
tf.train.Checkpoint(model=local).restore(path).expect_partial()
local.export_recommender(os.path.join(OUT, "recommender"), k=10)
# [end ps-fit]


def shards_of(tower: cf.Tower) -> dict[str, list]:
    """Each embedding table's parts: [rows, device] per variable."""
    parts = {}
    for layers in tower.features.values():
        for layer in layers:
            table = layer.embeddings
            variables = getattr(table, "variables", [table])
            parts[layer.name] = {
                "rows": int(table.shape[0]),
                "parts": [[int(v.shape[0]), v.device] for v in variables],
            }
    return parts


def top_10(candidate: cf.RetrievalModel) -> float:
    return candidate.evaluate_top_k(read_events().batch(1024), ks=(10,))["top_10"]


# A restarted coordinator: a new sharded model restored from the checkpoint.
restored = build(strategy)
restored.compile(tf.keras.optimizers.Adagrad(0.05))
tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(
    path
).assert_existing_objects_matched()
probe = next(iter(batches))
trained_vectors = [v.numpy() for v in model.embed_batch(probe)]
print(
    json.dumps(
        {
            "untrained": untrained,
            "expected": expected[0],
            "loss": history.history["loss"][0],
            "shards": {
                **shards_of(model.query_tower),
                **shards_of(model.candidate_tower),
            },
            "top_10": top_10(model),
            "top_10_local": top_10(local),
            "top_10_restored": top_10(restored),
            "restored_max_difference": max(
                float(np.max(np.abs(a.numpy() - b)))
                for a, b in zip(restored.embed_batch(probe), trained_vectors)
            ),
            "served": tf.saved_model.load(os.path.join(OUT, "recommender"))
            .signatures["serving_default"](
                user_id=tf.constant(["u3"]),
                timestamp=tf.constant([885000000], tf.int64),
            )["ids"]
            .shape.as_list(),
        }
    )
)
