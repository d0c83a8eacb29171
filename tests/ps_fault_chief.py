"""The chief of the fault tests, run by test_faults.py.

``python tests/ps_fault_chief.py OUT_DIR VICTIM_PID`` with TF_CONFIG naming
this process the chief of a cluster of 2 workers and 1 parameter server. When
VICTIM_PID is not 0, that process (a worker or the parameter server) is killed
once training has run 40 steps. Prints one JSON line; a lost parameter server
ends the process with the library's error after that line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from conftest import synthetic_events

import ctxfeatures as cf

OUT, VICTIM = sys.argv[1], int(sys.argv[2])
KILL_AT = 40


def write_parquet(events: tf.data.Dataset, directory: str, files: int) -> None:
    columns = next(iter(events.batch(1 << 20).as_numpy_iterator()))
    os.makedirs(directory)
    size = len(columns["user_id"])
    for number, rows in enumerate(np.array_split(np.arange(size), files)):
        table = pa.table({k: v[rows] for k, v in columns.items()})
        pq.write_table(table, os.path.join(directory, f"part-{number}.parquet"))


# [start fault-job]
N, BATCH = 16384, 128


def read_events() -> tf.data.Dataset:
    """The training interactions (generated here; files in a real job)."""
    return synthetic_events(n=N)[0]


movies = synthetic_events(n=N)[1]

resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
tf.keras.utils.set_random_seed(7)
model = cf.build_retrieval_model(
    {"user_id": cf.IdEmbedding(16), "timestamp": cf.TimestampBuckets(16)},
    {"item": [cf.IdEmbedding(16), cf.TextEmbedding(16)]},
    movies,
    candidate_id="item",
    adapt_data=read_events(),
    head_units=(16,),
    strategy=strategy,
)
model.compile(tf.keras.optimizers.Adagrad(0.05))


# The training events as TFRecord files, converted once from an engine's
# Parquet output (here: 4 Parquet files of the same events).
RECORDS = os.path.join(OUT, "records")
if not os.path.exists(RECORDS):
    write_parquet(read_events(), os.path.join(OUT, "parquet"), files=4)
    cf.tfrecords.parquet_to_tfrecords(os.path.join(OUT, "parquet"), RECORDS)


def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    # Runs on each worker, in TensorFlow ops only: its own files, prepared
    # there (vocabulary lookups included).
    records = cf.tfrecords.tfrecord_dataset(
        RECORDS, batch_size=BATCH, input_context=context
    )
    return model.prepare(records).repeat()


def train() -> dict:
    # Run again after a lost parameter server: it resumes from OUT/checkpoints.
    return cf.training.fit_parameter_servers(
        model,
        dataset_fn,
        epochs=2,
        steps_per_epoch=64,
        directory=os.path.join(OUT, "checkpoints"),
        save_every=16,
    )


# [end fault-job]
killed: dict[str, float] = {}


def kill_when_due() -> None:
    """Kills the victim once the parameter servers have counted KILL_AT steps."""
    while True:
        step = int(model.optimizer.iterations.numpy())
        if step >= KILL_AT:
            os.kill(VICTIM, signal.SIGKILL)
            killed.update(step=step, time=time.monotonic())
            return
        time.sleep(0.01)


if VICTIM:
    threading.Thread(target=kill_when_due, daemon=True).start()
start = time.monotonic()
try:
    result = train()
except cf.training.ParameterServerLost as error:
    print(
        json.dumps(
            {
                "lost": str(error),
                "kill_step": killed.get("step"),
                "seconds_to_fail": time.monotonic() - killed.get("time", start),
            }
        ),
        flush=True,
    )
    raise
print(
    json.dumps(
        {
            **result,
            "steps": int(model.optimizer.iterations.numpy()),
            "kill_step": killed.get("step"),
            "seconds": time.monotonic() - start,
        }
    ),
    flush=True,
)
