"""Multi-worker scale: examples/s with one and two localhost workers.

    python -m benchmarks distributed            # 200 000 interactions
    python -m benchmarks distributed --quick    # 50 000

Each run trains one epoch of the scale benchmark's timestamp model
(synthetic MovieLens-shaped interactions, 20 000 titles, global batch 4096)
with ``MultiWorkerMirroredStrategy``: 1 worker, then 2 worker processes on
this machine, each its own process with its own peak RSS. Two workers on one
two-core machine share the cores, so the ratio shows the cost of the
collectives, not a speed-up a cluster would see.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from benchmarks.harness import ROOT, peak_rss_mib, write_results

BATCH = 4096


def worker(size: int, items: int) -> None:
    """One worker's epoch (TF_CONFIG set by the parent); prints JSON."""
    import tensorflow as tf

    from benchmarks.scale import interactions, timestamp_model

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    data = interactions(size, items).unbatch().batch(BATCH)
    model = timestamp_model(data, size, items, BATCH, strategy)
    model.compile(tf.keras.optimizers.Adagrad(0.1))
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "examples_per_second": size / seconds,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_run(workers: int, size: int, items: int) -> dict:
    """Starts ``workers`` processes with TF_CONFIG; their JSON results."""
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(workers)]
    processes = []
    for index in range(workers):
        config = {
            "cluster": {"worker": addresses},
            "task": {"type": "worker", "index": index},
        }
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(config),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        command = [
            "-m",
            "benchmarks.harness",
            "distributed",
            "worker",
            json.dumps([size, items]),
        ]
        processes.append(
            subprocess.Popen(
                [sys.executable, *command],
                cwd=str(ROOT),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(err[-2000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    slowest = max(r["seconds"] for r in results)
    return {
        "workers": workers,
        "seconds": slowest,
        "examples_per_second": size / slowest,
        "peak_rss_mib": [round(r["peak_rss_mib"], 1) for r in results],
    }


def markdown(size: int, runs: list[dict]) -> str:
    lines = [
        f"Multi-worker, {size:,} interactions, one epoch, global batch {BATCH}:",
        "",
        "| workers | epoch (s) | examples/s | ratio to 1 worker "
        "| peak RSS per process (MiB) |",
        "|---|---|---|---|---|",
    ]
    base = runs[0]["examples_per_second"]
    for run in runs:
        lines.append(
            f"| {run['workers']} | {run['seconds']:.2f} | "
            f"{run['examples_per_second']:,.0f} | "
            f"{run['examples_per_second'] / base:.2f} | "
            f"{', '.join(str(m) for m in run['peak_rss_mib'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args(argv)
    size = 50_000 if args.quick else 200_000
    runs = [cluster_run(workers, size, args.items) for workers in (1, 2)]
    results = {"size": size, "runs": runs}
    write_results(args.output, "distributed", results, markdown(size, runs))
    return results
