"""Distributed scale: multi-worker and parameter-server examples/s and memory.

    python -m benchmarks distributed            # 200 000 interactions
    python -m benchmarks distributed --quick    # 50 000, smaller PS table

Each run trains one epoch of the scale benchmark's timestamp model
(synthetic MovieLens-shaped interactions, 20 000 titles, batches of 4096),
every task its own process on this machine with its own peak RSS:

* ``MultiWorkerMirroredStrategy`` with 1, then 2 workers (global batch 4096);
* ``ParameterServerStrategy``: a chief, 2 workers and 2 parameter servers,
  every variable of 256 KiB or more split across the two servers, each step
  one batch of 4096 on one worker; with the adapted user vocabulary, then
  with user ids hashed into a large table (``--table-rows``) under Keras 2's
  Adagrad and the legacy Adagrad, then the largest table
  (``--largest-rows``, legacy Adagrad).

Two-core machine: the tasks share the cores, so the ratios show what the
distribution costs, not a speed-up a cluster would see.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import ROOT, peak_rss_mib, status_mib, write_results

BATCH = 4096
DIM = 32


def two_epochs(model: Any, data: Any, **fit_kwargs: Any) -> tuple[float, float]:
    """Seconds of the first epoch (tracing, optimizer slots) and the second."""
    import tensorflow as tf

    ends = [time.perf_counter()]
    stamp = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: ends.append(time.perf_counter())
    )
    model.fit(data, epochs=2, verbose=0, callbacks=[stamp], **fit_kwargs)
    return ends[1] - ends[0], ends[2] - ends[1]


def worker(size: int, items: int) -> None:
    """One multi-worker task's epoch (TF_CONFIG set by the parent); prints JSON."""
    import tensorflow as tf

    from benchmarks.scale import interactions, timestamp_model

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    data = interactions(size, items).unbatch().batch(BATCH)
    model = timestamp_model(data, size, items, BATCH, strategy)
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    first, seconds = two_epochs(model, data)
    print(
        json.dumps(
            {
                "first_epoch_seconds": first,
                "seconds": seconds,
                "examples_per_second": size / seconds,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def serve() -> None:
    """A parameter server or worker task: a TensorFlow server, until killed."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    tf.distribute.Server(
        resolver.cluster_spec(),
        job_name=resolver.task_type,
        task_index=resolver.task_id,
        protocol="grpc",
        start=True,
    ).join()


def ps_chief(
    size: int, items: int, table_rows: int | None, optimizer: str = "Adagrad"
) -> None:
    """The parameter-server coordinator's epochs; prints JSON."""
    import tensorflow as tf

    from benchmarks.scale import USERS, interactions, timestamp_model

    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=256 << 10, max_shards=2
    )
    strategy = tf.distribute.experimental.ParameterServerStrategy(
        tf.distribute.cluster_resolver.TFConfigClusterResolver(),
        variable_partitioner=partitioner,
    )
    # With a hashed table, as many distinct users as rows.
    users = table_rows or USERS

    def data(shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
        rows = interactions(size, items, users=users, shard=shard)
        return rows.unbatch().batch(BATCH)

    model = timestamp_model(data(), size, items, BATCH, strategy, table_rows)
    optimizers = {
        "Adagrad": tf.keras.optimizers.Adagrad,
        "legacy Adagrad": tf.keras.optimizers.legacy.Adagrad,
    }
    model.compile(optimizers[optimizer](0.1))

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = (context.num_input_pipelines, context.input_pipeline_id)
        return model.prepare(data(shard)).repeat()

    steps = size // BATCH
    first, seconds = two_epochs(
        model,
        tf.keras.utils.experimental.DatasetCreator(dataset_fn),
        steps_per_epoch=steps,
    )
    table = model.query_tower.features["user_id"][0].embeddings
    parts = getattr(table, "variables", [table])
    print(
        json.dumps(
            {
                "first_epoch_seconds": first,
                "seconds": seconds,
                "examples_per_second": steps * BATCH / seconds,
                "peak_rss_mib": peak_rss_mib(),
                "user_table_rows": int(table.shape[0]),
                "user_table_mib": int(table.shape[0]) * DIM * 4 / 2**20,
                "user_table_parts": [v.device for v in parts],
            }
        )
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(cluster: dict, task: str, index: int, function: str, args: list):
    """A task of ``cluster`` running ``benchmarks.distributed.<function>``."""
    config = {"cluster": cluster, "task": {"type": task, "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = ["-m", "benchmarks.harness", "distributed", function, json.dumps(args)]
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise RuntimeError(err[-2000:])
    return json.loads(out.strip().splitlines()[-1])


def cluster_run(workers: int, size: int, items: int) -> dict:
    """``workers`` multi-worker processes; the slowest epoch and each peak RSS."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(workers)]}
    processes = [
        _start(cluster, "worker", index, "worker", [size, items])
        for index in range(workers)
    ]
    results = [_result(process) for process in processes]
    slowest = max(r["seconds"] for r in results)
    return {
        "strategy": "multi-worker",
        "optimizer": "Adagrad",
        "workers": workers,
        "first_epoch_seconds": max(r["first_epoch_seconds"] for r in results),
        "seconds": slowest,
        "examples_per_second": size / slowest,
        "peak_rss_mib": {
            f"worker {i}": round(r["peak_rss_mib"], 1) for i, r in enumerate(results)
        },
    }


def ps_run(
    size: int, items: int, table_rows: int | None = None, optimizer: str = "Adagrad"
) -> dict:
    """Chief + 2 workers + 2 parameter servers; the epoch and each peak RSS."""
    cluster = {
        task: [f"127.0.0.1:{_free_port()}" for _ in range(count)]
        for task, count in (("chief", 1), ("worker", 2), ("ps", 2))
    }
    servers = {
        f"{task} {index}": _start(cluster, task, index, "serve", [])
        for task in ("worker", "ps")
        for index in range(2)
    }
    try:
        chief = _result(
            _start(
                cluster, "chief", 0, "ps_chief", [size, items, table_rows, optimizer]
            )
        )
        # The servers never exit: read their peaks while they still run.
        peaks = {name: status_mib("VmHWM", s.pid) for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.kill()
            server.communicate()
    return {
        "strategy": "parameter servers",
        "optimizer": optimizer,
        "workers": 2,
        "first_epoch_seconds": chief["first_epoch_seconds"],
        "seconds": chief["seconds"],
        "examples_per_second": chief["examples_per_second"],
        "user_table_rows": chief["user_table_rows"],
        "user_table_mib": round(chief["user_table_mib"], 1),
        "user_table_parts": chief["user_table_parts"],
        "peak_rss_mib": {
            "chief": round(chief["peak_rss_mib"], 1),
            **{name: round(mib, 1) for name, mib in peaks.items()},
        },
    }


def markdown(size: int, runs: list[dict]) -> str:
    lines = [
        f"Distributed training, {size:,} interactions per epoch, batches of "
        f"{BATCH}; examples/s of the second epoch:",
        "",
        "| strategy | optimizer | workers | user table (rows, MiB) "
        "| first epoch (s) | second epoch (s) | examples/s | ratio to 1 worker "
        "| peak RSS per process (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = runs[0]["examples_per_second"]
    for run in runs:
        table = (
            f"{run['user_table_rows']:,}, {run['user_table_mib']:,.0f}"
            if "user_table_rows" in run
            else "vocabulary"
        )
        peaks = ", ".join(f"{k} {v:,.0f}" for k, v in run["peak_rss_mib"].items())
        lines.append(
            f"| {run['strategy']} | {run['optimizer']} | {run['workers']} | "
            f"{table} | "
            f"{run['first_epoch_seconds']:.2f} | {run['seconds']:.2f} | "
            f"{run['examples_per_second']:,.0f} | "
            f"{run['examples_per_second'] / base:.2f} | {peaks} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument(
        "--table-rows",
        type=int,
        default=None,
        help="rows of the hashed user table trained with both optimizers "
        "(default 2**24, 2**20 with --quick)",
    )
    parser.add_argument(
        "--largest-rows",
        type=int,
        default=None,
        help="rows of the largest table, trained with the legacy optimizer "
        "(default 2**25; 0 skips it; never with --quick)",
    )
    args = parser.parse_args(argv)
    size = 50_000 if args.quick else 200_000
    table_rows = args.table_rows or (2**20 if args.quick else 2**24)
    runs = [cluster_run(workers, size, args.items) for workers in (1, 2)]
    runs.append(ps_run(size, args.items))
    for optimizer in ("Adagrad", "legacy Adagrad"):
        runs.append(ps_run(size, args.items, table_rows, optimizer))
    largest = args.largest_rows if args.largest_rows is not None else 2**25
    if not args.quick and largest:
        runs.append(ps_run(size, args.items, largest, "legacy Adagrad"))
    results = {"size": size, "runs": runs}
    write_results(args.output, "distributed", results, markdown(size, runs))
    return results
