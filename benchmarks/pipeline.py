"""From a Parquet log to a trained model, at scale: each step's time and peak RSS.

    python -m benchmarks pipeline                 # 10^8 events
    python -m benchmarks pipeline --quick         # 2 x 10^5 events (CI smoke)
    python -m benchmarks pipeline --spark 10000000

1. A synthetic log (users with Zipf activity, many events in the same second)
   is written as Parquet shards.
2. ``ctxfeatures.engines.duckdb.add_history`` (max_length 50) writes the
   histories as Parquet.
3. ``ctxfeatures.shards.adapt_from_shards`` learns the vocabularies and time
   statistics from the engine's output (2 worker processes).
4. One training epoch reads the whole output through
   ``ctxfeatures.shards.parquet_dataset`` (block-shuffled); then the same
   model trains on the first output file's rows from Parquet and from
   in-memory arrays, side by side (examples/s ratio).
5. Optionally, the history job on Spark in local mode.

Every step runs in its own process; peak RSS is that process's VmHWM (and,
for adapt, its largest worker's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time

import numpy as np

from benchmarks.harness import run_child, status_mib, write_results

MAX_LENGTH = 50
BATCH = 4096
SHARD_ROWS = 2_000_000


# ----------------------------------------------------------------- the log
def generate_child(events: int, directory: str, seed: int = 0) -> None:
    """Writes ``events`` synthetic events as Parquet shards, in time order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = max(events // 100, 100)
    items = max(min(events // 1000, 100_000), 1000)
    rng = np.random.default_rng(seed)
    # Zipf(1) activity over the users: the busiest holds ~7% of the log.
    weights = 1.0 / np.arange(1, users + 1)
    cumulative = np.cumsum(weights / weights.sum())
    item_weights = np.cumsum(1.0 / np.arange(1, items + 1) ** 0.8)
    item_weights /= item_weights[-1]
    os.makedirs(directory, exist_ok=True)
    start = time.perf_counter()
    second = 1_000_000_000
    shards = -(-events // SHARD_ROWS)
    for shard in range(shards):
        size = min(SHARD_ROWS, events - shard * SHARD_ROWS)
        user = np.searchsorted(cumulative, rng.random(size)).astype(np.int64)
        item = np.searchsorted(item_weights, rng.random(size)).astype(np.int64)
        # About ten events per second: the busiest users rate several items
        # in the same second.
        times = second + np.sort(rng.integers(0, size // 10 + 1, size))
        second = int(times[-1]) + 1
        table = pa.table({"user_id": user, "movie_id": item, "timestamp": times})
        pq.write_table(table, os.path.join(directory, f"log-{shard:05d}.parquet"))
    print(
        json.dumps(
            {
                "events": events,
                "users": users,
                "items": items,
                "files": shards,
                "seconds": time.perf_counter() - start,
                "bytes": _size(directory),
                "peak_rss_mib": status_mib("VmHWM"),
            }
        )
    )


def _size(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
    )


# ----------------------------------------------------------------- steps
def history_child(source: str, destination: str) -> None:
    import ctxfeatures  # noqa: F401
    from ctxfeatures.engines import duckdb as engine

    start = time.perf_counter()
    files = engine.add_history(
        source, destination, item="movie_id", max_length=MAX_LENGTH
    )
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "files": len(files),
                "bytes": _size(destination),
                "peak_rss_mib": status_mib("VmHWM"),
            }
        )
    )


def towers():
    import ctxfeatures as cf

    items = cf.IdEmbedding(32, id_dtype="int64", name="item_ids")
    query = cf.Tower(
        {
            "user_id": cf.IdEmbedding(32, id_dtype="int64"),
            "history": cf.HistoryEmbedding(item_embedding=items),
            "timestamp": cf.NormalizedTimestamp(),
        },
        head_units=(32,),
        name="query",
    )
    candidate = cf.Tower({"movie_id": items}, head_units=(32,), name="candidate")
    return query, candidate


def adapt_child(source: str) -> None:
    import ctxfeatures as cf

    query, candidate = towers()
    start = time.perf_counter()
    cf.shards.adapt_from_shards(source, query, candidate, processes=2)
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    sizes = {
        layer.name: len(layer.get_vocabulary())
        for tower in (query, candidate)
        for layer in tower.feature_layers
        if hasattr(layer, "get_vocabulary")
    }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "vocabularies": sizes,
                "peak_rss_mib": status_mib("VmHWM"),
                "worker_peak_rss_mib": children,
            }
        )
    )


def train_child(source: str, mode: str, limit_files: int) -> None:
    """One epoch over the engine's output, from Parquet or from memory."""
    import tensorflow as tf

    import ctxfeatures as cf

    files = cf.shards.parquet_files(source)[: limit_files or None]
    columns = ["user_id", "history", "timestamp", "movie_id"]
    query, candidate = towers()
    cf.shards.adapt_from_shards(files, query, candidate, processes=2)
    vocabulary = [v for v in candidate.feature_layers[0].get_vocabulary() if v >= 0]
    catalogue = tf.data.Dataset.from_tensor_slices({"movie_id": np.array(vocabulary)})
    model = cf.RetrievalModel(query, candidate, catalogue, "movie_id")
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    if mode == "parquet":
        raw = cf.shards.parquet_dataset(
            files, batch_size=BATCH, columns=columns, shuffle_buffer=200_000, seed=0
        )
        import pyarrow.parquet as pq

        # The files' footers know their row counts: no column is read.
        rows = sum(pq.read_metadata(path).num_rows for path in files)
    else:
        arrays: dict[str, list[np.ndarray]] = {key: [] for key in columns}
        for batch in cf.shards.read_batches(files, columns=columns):
            for key in columns:
                arrays[key].append(batch[key])
        memory = {key: np.concatenate(parts) for key, parts in arrays.items()}
        rows = len(memory["timestamp"])
        order = np.random.default_rng(0).permutation(rows)
        memory = {key: values[order] for key, values in memory.items()}
        raw = tf.data.Dataset.from_tensor_slices(memory).batch(BATCH)
    data = model.prepare(raw).prefetch(tf.data.AUTOTUNE)
    # A short warm-up traces the step; the timed epoch then reads everything.
    model.fit(data.take(3), epochs=1, verbose=0)
    start = time.perf_counter()
    history = model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": mode,
                "examples": rows,
                "files": len(files),
                "seconds": seconds,
                "examples_per_second": rows / seconds,
                "loss": history.history["loss"][-1],
                "peak_rss_mib": status_mib("VmHWM"),
            }
        )
    )


def spark_child(source: str, destination: str) -> None:
    from pyspark.sql import SparkSession

    import ctxfeatures  # noqa: F401
    from ctxfeatures.engines import spark as engine

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "16")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    frame = engine.add_history(
        spark.read.parquet(source), item="movie_id", max_length=MAX_LENGTH
    )
    frame.write.parquet(destination)
    seconds = time.perf_counter() - start
    spark.stop()
    print(json.dumps({"seconds": seconds, "bytes": _size_tree(destination)}))


def _size_tree(directory: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(directory)
        for name in names
    )


# ----------------------------------------------------------------- report
def markdown(results: dict) -> str:
    log, history, adapt = results["log"], results["history"], results["adapt"]
    lines = [
        f"Synthetic log: {log['events']:,} events, {log['users']:,} users "
        f"(Zipf activity), {log['items']:,} items, {log['files']} Parquet files "
        f"({log['bytes'] / 2**20:,.0f} MiB). Each step in its own process.",
        "",
        "| step | time (s) | peak RSS (MiB) | notes |",
        "|---|---|---|---|",
        f"| write the log | {log['seconds']:.1f} | {log['peak_rss_mib']:,.0f} | |",
        f"| histories (DuckDB, max_length {MAX_LENGTH}) | {history['seconds']:.1f} "
        f"| {history['peak_rss_mib']:,.0f} | {history['files']} files, "
        f"{history['bytes'] / 2**20:,.0f} MiB |",
        f"| vocabularies and statistics (2 workers) | {adapt['seconds']:.1f} "
        f"| {adapt['peak_rss_mib']:,.0f} (workers {adapt['worker_peak_rss_mib']:,.0f})"
        f" | {', '.join(f'{k} {v:,}' for k, v in adapt['vocabularies'].items())} |",
    ]
    for run in [results["epoch"], *results["train"]]:
        lines.append(
            f"| one epoch from {run['mode']} ({run['examples']:,} events, "
            f"{run['files']} files) "
            f"| {run['seconds']:.1f} | {run['peak_rss_mib']:,.0f} "
            f"| {run['examples_per_second']:,.0f} examples/s |"
        )
    if results.get("spark"):
        spark = results["spark"]
        lines.append(
            f"| histories (Spark local[2], {spark['events']:,} events) "
            f"| {spark['seconds']:.1f} | | |"
        )
    parquet, memory = results["train"]
    lines += [
        "",
        "Training from the engine's output vs from memory (same rows, same "
        f"model, batch {BATCH}): "
        f"{parquet['examples_per_second'] / memory['examples_per_second']:.2f}x.",
    ]
    return "\n".join(lines) + "\n"


def _partial(output: str, results: dict) -> None:
    """The steps done so far, in case a long run is stopped."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "pipeline.partial.json"), "w") as handle:
        json.dump(results, handle, indent=2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10**8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--spark", type=int, default=0, help="events for Spark")
    parser.add_argument("--train-files", type=int, default=0, help="0: all")
    parser.add_argument("--work", default="benchmarks/out/pipeline-data")
    parser.add_argument("--output", default="benchmarks/out")
    args = parser.parse_args(argv)
    events = 200_000 if args.quick else args.events
    shutil.rmtree(args.work, ignore_errors=True)
    log_dir, out_dir = f"{args.work}/log", f"{args.work}/history"
    results = {"log": run_child("pipeline", "generate_child", events, log_dir)}
    results["history"] = run_child("pipeline", "history_child", log_dir, out_dir)
    _partial(args.output, results)
    results["adapt"] = run_child("pipeline", "adapt_child", out_dir)
    _partial(args.output, results)
    # The same model on the first output file's rows, from Parquet and from
    # memory (which must hold them all), side by side; later one epoch over
    # the whole output from Parquet.
    results["train"] = [
        run_child("pipeline", "train_child", out_dir, mode, 1)
        for mode in ("parquet", "memory")
    ]
    _partial(args.output, results)
    if args.spark:
        spark_log = f"{args.work}/spark-log"
        run_child("pipeline", "generate_child", args.spark, spark_log)
        spark = run_child(
            "pipeline", "spark_child", spark_log, f"{args.work}/spark-history"
        )
        results["spark"] = {**spark, "events": args.spark}
        _partial(args.output, results)
    results["epoch"] = run_child(
        "pipeline", "train_child", out_dir, "parquet", args.train_files
    )
    write_results(args.output, "pipeline", results, markdown(results))
    shutil.rmtree(args.work, ignore_errors=True)
    return results
