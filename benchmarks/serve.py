"""Serving latency of exported recommenders, in a process with TensorFlow only.

Run by ``run.py`` in a fresh child process, so that nothing from training
(threads, caches, other models) competes with the measurement, and so that
the exports are shown to serve without ctxfeatures or TFRS installed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

ROUNDS = 5


def callers(folder: str) -> dict:
    ours = tf.saved_model.load(os.path.join(folder, "ours"))
    brute_force = tf.saved_model.load(os.path.join(folder, "ref"))
    empty = tf.function(lambda user_id, timestamp: user_id).get_concrete_function(
        tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)
    )
    return {
        "ours": ours.signatures["serving_default"],
        # The tutorial's way: call the restored BruteForce layer on a dict.
        "ref": lambda user_id, timestamp: brute_force(
            {"user_id": user_id, "timestamp": timestamp}
        ),
        "floor": empty,
    }


def one_call_ms(call, inputs: dict, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(**inputs)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(folder: str, repeats: int) -> dict:
    calls = callers(folder)
    one = {
        "user_id": tf.constant(["42"]),
        "timestamp": tf.constant([884_000_000], tf.int64),
    }
    many = {
        "user_id": tf.constant([str(i % 943 + 1) for i in range(256)]),
        "timestamp": tf.fill([256], tf.constant(884_000_000, tf.int64)),
    }
    for call in calls.values():  # warm up
        for _ in range(20):
            call(**one)
            call(**many)
    times = {name: [] for name in calls}
    batch_s = {name: 0.0 for name in calls}
    # Interleaved rounds: machine noise hits every contender alike.
    for _ in range(ROUNDS):
        for name, call in calls.items():
            times[name] += one_call_ms(call, one, max(1, repeats // ROUNDS))
            start = time.perf_counter()
            for _ in range(10):
                call(**many)
            batch_s[name] += time.perf_counter() - start
    return {
        name: {
            "p50_ms": float(np.percentile(times[name], 50)),
            "p99_ms": float(np.percentile(times[name], 99)),
            "qps_256": ROUNDS * 10 * 256 / batch_s[name],
        }
        for name in calls
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
