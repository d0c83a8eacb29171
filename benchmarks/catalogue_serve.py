"""Serving figures of exported recommenders, in a process with TensorFlow only.

``python benchmarks/catalogue_serve.py FOLDER EXACT_BATCH NAME...``: loads
``FOLDER/NAME`` for each NAME, the first one exact (ctxfeatures and TFRS
cannot be imported here), measures one-query latency and batch throughput,
writes each one's top-k for the recall users to ``FOLDER/NAME-found.npy`` and
prints JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

USERS = 1000
RECALL_USERS = 300
BATCH = 256


def latency(call, one, many, rounds: int = 200) -> dict:
    """p50/p99 of one query (ms) and queries/s over batches of ``many``."""
    for _ in range(10):
        call(one)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call(one)
        times.append((time.perf_counter() - start) * 1000)
    call(many)
    repeats = 3
    start = time.perf_counter()
    for _ in range(repeats):
        call(many)
    seconds = time.perf_counter() - start
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "qps": repeats * len(many) / seconds,
        "batch": len(many),
    }


def main(folder: str, exact_batch: int, names: list[str]) -> dict:
    rows = {}
    for name in names:
        path = os.path.join(folder, name)
        served = tf.saved_model.load(path).signatures["serving_default"]

        def call(users, served=served):
            return served(user_id=users)

        found = np.concatenate(
            [
                call(tf.constant(np.arange(i, min(i + 16, RECALL_USERS))))["ids"]
                for i in range(0, RECALL_USERS, 16)
            ]
        )
        np.save(os.path.join(folder, f"{name}-found.npy"), found)
        batch = exact_batch if name == names[0] else BATCH
        row = latency(
            call, tf.constant([7], tf.int64), tf.constant(np.arange(batch) % USERS)
        )
        row["saved_model_mib"] = folder_mib(path)
        rows[name] = row
    return rows


def folder_mib(path: str) -> float:
    total = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )
    return total / 2**20


if __name__ == "__main__":
    for _name in ("ctxfeatures", "tensorflow_recommenders"):
        sys.modules[_name] = None  # the exports must serve without them
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
