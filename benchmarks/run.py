"""Benchmarks: ctxfeatures against the TFRS tutorial's own code, side by side.

Prints a Markdown table (ctxfeatures, reference, ratio) and writes it as JSON.
Only ratios measured in the same run mean anything on a shared machine.

    python benchmarks/run.py --data-dir ../shared/data/ml-100k
    python benchmarks/run.py --quick      # smoke run: 1 epoch, small scale
"""

from __future__ import annotations

import os

# TFRS needs Keras 2; set before any TensorFlow import (isort may reorder).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import ctxfeatures as cf  # noqa: I001  (routes tf.keras to Keras 2 first)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tutorial_reference as ref  # noqa: E402

from ctxfeatures.datasets import movielens  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def ours(train, test, movies, timestamps, epochs):
    tf.keras.utils.set_random_seed(42)
    query = {"user_id": cf.IdEmbedding(32)}
    if timestamps:
        query["timestamp"] = [cf.TimestampBuckets(32), cf.NormalizedTimestamp()]
    model = cf.build_retrieval_model(
        query,
        {"movie_title": [cf.IdEmbedding(32), cf.TextEmbedding(32)]},
        movies,
        candidate_id="movie_title",
        adapt_data=train,
    )
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    cached = train.shuffle(100_000, seed=42).batch(2048).cache()
    _, fit_s = timed(lambda: model.fit(cached, epochs=epochs, verbose=0))
    test_batches = test.batch(4096).cache()
    model.evaluate_top_k(test_batches, ks=(100,))  # warm the trace
    result, eval_s = timed(lambda: model.evaluate_top_k(test_batches))
    return model, fit_s, eval_s, result["top_100"]


def reference(ratings, movies, train, test, timestamps, epochs):
    tf.keras.utils.set_random_seed(42)
    model = ref.build(timestamps, ratings, movies)
    cached = train.shuffle(100_000, seed=42).batch(2048).cache()
    _, fit_s = timed(lambda: model.fit(cached, epochs=epochs, verbose=0))
    test_batches = test.batch(4096).cache()
    metrics, eval_s = timed(
        lambda: model.evaluate(test_batches, return_dict=True, verbose=0)
    )
    return (
        model,
        fit_s,
        eval_s,
        metrics["factorized_top_k/top_100_categorical_accuracy"],
    )


def latency(call, inputs, repeats):
    for _ in range(20):
        call(**inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(**inputs)
        times.append(time.perf_counter() - start)
    times = np.asarray(times) * 1000
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def serving(model, ref_model, movies_titles, repeats):
    folder = tempfile.mkdtemp()
    model.export_recommender(os.path.join(folder, "ours"), k=10)
    index = tfrs.layers.factorized_top_k.BruteForce(ref_model.query_model, k=10)
    index.index_from_dataset(
        movies_titles.batch(100).map(lambda t: (t, ref_model.candidate_model(t)))
    )
    index(
        {"user_id": tf.constant(["1"]), "timestamp": tf.constant([880000000], tf.int64)}
    )
    tf.saved_model.save(index, os.path.join(folder, "ref"))
    ours_fn = tf.saved_model.load(os.path.join(folder, "ours")).signatures[
        "serving_default"
    ]
    ref_loaded = tf.saved_model.load(os.path.join(folder, "ref"))
    ref_fn = lambda user_id, timestamp: ref_loaded(  # noqa: E731
        {"user_id": user_id, "timestamp": timestamp}
    )
    empty = tf.function(lambda user_id, timestamp: user_id).get_concrete_function(
        tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)
    )
    one = {
        "user_id": tf.constant(["42"]),
        "timestamp": tf.constant([884000000], tf.int64),
    }
    many = {
        "user_id": tf.constant([str(i % 943 + 1) for i in range(256)]),
        "timestamp": tf.fill([256], tf.constant(884000000, tf.int64)),
    }
    out = {}
    for name, fn in (("ours", ours_fn), ("ref", ref_fn), ("floor", empty)):
        p50, p99 = latency(fn, one, repeats)
        _, batch_s = timed(lambda: [fn(**many) for _ in range(50)])
        out[name] = {"p50_ms": p50, "p99_ms": p99, "qps_256": 50 * 256 / batch_s}
    return out


def scale_run(size: int) -> dict:
    """One epoch on synthetic data in a child process, for its own peak RSS."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import scale; scale.main({size})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def row(name, a, b, unit, better="lower"):
    ratio = a / b if b else float("nan")
    return {
        "metric": name,
        "ctxfeatures": a,
        "reference": b,
        "ratio": ratio,
        "unit": unit,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else 3
    repeats = 200 if args.quick else 1000
    sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000, 10_000_000)

    ratings, movies_full = movielens.load(args.data_dir)
    r_ratings, r_movies, r_train, r_test = ref.tutorial_data(ratings, movies_full)
    train = r_train.cache()
    test = r_test.cache()
    movies = r_movies.map(lambda t: {"movie_title": t})
    rows, accuracy = [], {}
    for timestamps in (False, True):
        label = "with timestamps" if timestamps else "no timestamps"
        model, fit_a, eval_a, acc_a = ours(train, test, movies, timestamps, epochs)
        ref_model, fit_b, eval_b, acc_b = reference(
            r_ratings, r_movies, train, test, timestamps, epochs
        )
        accuracy[label] = (acc_a, acc_b)
        if timestamps:
            rows.append(row(f"fit, {epochs} epochs (s)", fit_a, fit_b, "s"))
            rows.append(row("eval, test set (s)", eval_a, eval_b, "s"))
            rows.append(
                row(
                    "training examples / s",
                    80_000 * epochs / fit_a,
                    80_000 * epochs / fit_b,
                    "ex/s",
                    "higher",
                )
            )
            serve = serving(model, ref_model, r_movies, repeats)
    for label, (a, b) in accuracy.items():
        rows.append(row(f"test top-100, {label}", a, b, "", "higher"))
    rows.append(
        row(
            "serving p50, 1 query (ms)",
            serve["ours"]["p50_ms"],
            serve["ref"]["p50_ms"],
            "ms",
        )
    )
    rows.append(
        row(
            "serving p99, 1 query (ms)",
            serve["ours"]["p99_ms"],
            serve["ref"]["p99_ms"],
            "ms",
        )
    )
    rows.append(
        row(
            "serving queries/s at batch 256",
            serve["ours"]["qps_256"],
            serve["ref"]["qps_256"],
            "q/s",
            "higher",
        )
    )
    rows.append(
        row(
            "empty tf.function p50 (ms): call floor",
            serve["floor"]["p50_ms"],
            serve["floor"]["p50_ms"],
            "ms",
        )
    )
    scale = [scale_run(size) for size in sizes]

    lines = ["| metric | ctxfeatures | reference | ratio |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['metric']} | {r['ctxfeatures']:.4g} | {r['reference']:.4g} "
            f"| {r['ratio']:.3f} |"
        )
    lines += [
        "",
        "| interactions | epoch (s) | examples/s | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for s in scale:
        lines.append(
            f"| {s['size']:,} | {s['seconds']:.2f} | {s['size'] / s['seconds']:,.0f} "
            f"| {s['peak_rss_mib']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.json"), "w") as handle:
        json.dump(
            {
                "rows": rows,
                "scale": scale,
                "quick": args.quick,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
            },
            handle,
            indent=2,
        )
    with open(os.path.join(args.output, "results.md"), "w") as handle:
        handle.write(table + "\n")


if __name__ == "__main__":
    main()
