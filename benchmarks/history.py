"""Benchmarks of the history features: preparing 10^7 events, and training speed.

    python -m benchmarks history --data-dir ../shared/data/ml-100k
    python -m benchmarks history --quick      # 10^6 events, 1 epoch

Part 1 runs ``add_history`` on synthetic logs in child processes (each its own
peak RSS) at ``max_length`` 50 and 500 side by side: the ratio shows that
memory does not grow with ``max_length``. Part 2 measures steady-epoch
training throughput of the study's best model on MovieLens 100K.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf  # noqa: I001  (routes tf.keras to Keras 2 first)
from benchmarks.harness import load_example, run_child, status_mib, write_results
from ctxfeatures.datasets import movielens  # noqa: E402
from ctxfeatures.history import add_history  # noqa: E402

BATCH = 4096


def synthetic_log(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """MovieLens-shaped: 50k users with heavy-tailed activity, 20k items."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.3, size) % 50_000
    items = rng.zipf(1.2, size) % 20_000 + 1
    times = np.sort(rng.integers(880_000_000, 893_000_000, size))
    return {"user_id": users, "item_id": items, "timestamp": times}


def prepare_child(size: int, max_length: int) -> None:
    """Times add_history on a dataset of ``size`` events; prints JSON."""
    log = synthetic_log(size)
    data = tf.data.Dataset.from_tensor_slices(log)
    del log
    before = status_mib("VmRSS")
    start = time.perf_counter()
    events = add_history(data, item="item_id", max_length=max_length)
    seconds = time.perf_counter() - start
    added = status_mib("VmHWM") - before
    start = time.perf_counter()
    count = 0
    for batch in events.batch(BATCH).prefetch(2):
        count += int(batch["seconds_since_last"].shape[0])
    read = time.perf_counter() - start
    print(
        json.dumps(
            {
                "events": count,
                "max_length": max_length,
                "prepare_seconds": seconds,
                "prepare_added_peak_mib": added,
                "read_events_per_second": count / read,
                "peak_rss_mib": status_mib("VmHWM"),
            }
        )
    )


def prepare_run(size: int, max_length: int) -> dict:
    return run_child("history", "prepare_child", size, max_length)


class EpochTimer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.start]


def training_throughput(data_dir: str | None, epochs: int) -> dict:
    """Steady-epoch examples/s of the study's best model on ml-100k."""
    study = load_example("movielens_context")

    ratings, movie_columns = movielens.load_arrays(data_dir)
    movies = tf.data.Dataset.from_tensor_slices(movie_columns)
    split = study.make_split(ratings, "chronological", 42)
    spec = study.MODELS["best"]
    title = cf.IdEmbedding(study.DIM)
    train = cf.with_sampling_probability(split.train, study.ITEM, "probability")
    model = cf.build_retrieval_model(
        spec.query(title),
        spec.candidate(title),
        movies,
        candidate_id=study.ITEM,
        adapt_data=split.train,
        head_units=(study.DIM,),
        candidate_sampling_probability="probability",
    )
    model.compile(tf.keras.optimizers.Adam(spec.recipe.learning_rate))
    batches = train.shuffle(100_000, seed=0).batch(spec.recipe.batch_size)
    prepared = model.prepare(batches).cache().with_options(study.PIPELINE)
    timer = EpochTimer()
    model.fit(prepared, epochs=epochs, verbose=0, callbacks=[timer])
    examples = sum(int(b.context["probability"].shape[0]) for b in prepared)
    steady = float(np.median(timer.times[1:] or timer.times))
    return {
        "examples": examples,
        "epoch_seconds": steady,
        "examples_per_second": examples / steady,
    }


def markdown(prepare: list[dict], train: dict) -> str:
    short, long = prepare
    lines = [
        f"add_history on {short['events']:,} synthetic events "
        "(dataset in, dataset out):",
        "",
        "| metric | max_length 50 | max_length 500 | ratio | target (50) |",
        "|---|---|---|---|---|",
    ]
    for key, label, target in (
        ("prepare_seconds", "prepare (s)", "< 60"),
        ("prepare_added_peak_mib", "added peak RSS (MiB)", "< 1536"),
        ("read_events_per_second", "events/s read in batches", ""),
        ("peak_rss_mib", "process peak RSS (MiB)", ""),
    ):
        a, b = short[key], long[key]
        lines.append(f"| {label} | {a:,.1f} | {b:,.1f} | {b / a:.2f} | {target} |")
    lines += [
        "",
        "Training the study's best model (MovieLens 100K, chronological split, "
        f"batch 1024): {train['examples_per_second']:,.0f} examples/s in a steady "
        f"epoch ({train['epoch_seconds']:.2f} s for {train['examples']:,} "
        "examples; target >= 100,000).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    size = 10**6 if args.quick else 10**7
    prepare = [prepare_run(size, 50), prepare_run(size, 500)]
    train = training_throughput(args.data_dir, 2 if args.quick else 4)
    results = {"prepare": prepare, "train": train}
    write_results(args.output, "history", results, markdown(prepare, train))
    return results
