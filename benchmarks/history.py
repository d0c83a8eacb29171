"""Benchmarks of the history features: preparing 10^7 events, and training speed.

    python -m benchmarks history --data-dir ../shared/data/ml-100k
    python -m benchmarks history --quick      # 2 x 10^5 events, 2 epochs

Part 1 runs ``add_history`` on synthetic logs in child processes (each its own
peak RSS) at ``max_length`` 50 and 500 side by side: the ratio shows that
memory does not grow with ``max_length``. Part 2 measures steady-epoch
training throughput on MovieLens 100K of the study's best model, of the same
model with full-catalogue and mixed negatives, and of the recipe the study's
validation search chooses most often, each in its own process. Beside them,
in a process of its own, it times the three scoring products of an in-batch
step of the chosen recipe's shape alone: the ceiling this machine, in this
run, puts on any in-batch recipe of that shape (the machine's speed varies
from day to day; the ratio to the ceiling does much less).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import tensorflow as tf

import ctxfeatures  # noqa: F401, I001  (Keras 2: benchmarks/__init__ sets it)
from benchmarks.harness import (
    load_example,
    run_child,
    status_mib,
    timed,
    write_results,
)
from benchmarks.tutorial_ours import EpochTimer  # noqa: E402
from ctxfeatures.history import add_history  # noqa: E402
from ctxfeatures.losses import dot_scores  # noqa: E402

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


def training_throughput(
    data_dir: str | None, epochs: int, recipe: str = "best", negatives: str = ""
) -> dict:
    """Steady-epoch examples/s of one study recipe on ml-100k (chronological).

    ``recipe`` is a model of the study or ``"chosen"`` (the validation
    search's default space at its most common choice); ``negatives``
    replaces the recipe's negatives when given.
    """
    study = load_example("movielens_context")
    folders = [data_dir] if data_dir else []
    ratings, movie_columns = study.load("ml-100k", folders)
    movies = tf.data.Dataset.from_tensor_slices(movie_columns)
    setup = study.SETUPS[1]
    train = study.train_mask(ratings, setup, 42)
    split = study.make_split(ratings, train)
    spec = study.MODELS.get(recipe) or study.CHOSEN_DEFAULT.model()
    if negatives:
        logq = negatives != "catalogue"
        spec = dataclasses.replace(
            spec,
            recipe=dataclasses.replace(spec.recipe, negatives=negatives, logq=logq),
        )
    spec = dataclasses.replace(
        spec, recipe=dataclasses.replace(spec.recipe, epochs=epochs)
    )
    timer = EpochTimer()
    history = study.fit_model(
        spec, split, movies, frozenset(ratings), 0, callbacks=[timer]
    )
    examples = int(train.sum())
    steady = float(np.median(timer.times[1:] or timer.times))
    del history
    return {
        "recipe": recipe,
        "negatives": spec.recipe.negatives,
        "examples": examples,
        "epoch_seconds": steady,
        "examples_per_second": examples / steady,
    }


def throughput_run(data_dir: str | None, epochs: int, recipe: str, negatives: str):
    """One recipe in its own process, so that runs do not share caches."""
    return run_child(
        "history", "throughput_child", data_dir or "", epochs, recipe, negatives
    )


def throughput_child(data_dir: str, epochs: str, recipe: str, negatives: str):
    print(
        json.dumps(
            training_throughput(data_dir or None, int(epochs), recipe, negatives)
        )
    )


def products_ceiling(batch: int, dim: int, steps: int = 50) -> dict:
    """Times an in-batch step's three scoring products alone.

    The step scores a ``(batch, dim)`` query block against the candidate
    block of the same shape with :func:`ctxfeatures.losses.dot_scores`, and
    its gradient multiplies the ``(batch, batch)`` score gradient by each
    block: ``3 * 2 * batch**2 * dim`` floating-point operations, timed here
    as the step runs them (the scores and their gradient, from a tape). No
    in-batch recipe of that shape trains faster than ``batch`` examples per
    time of these three products, whatever its other ops cost.
    """
    generator = tf.random.Generator.from_seed(0)
    query = generator.normal([batch, dim])
    candidate = generator.normal([batch, dim])
    upstream = generator.normal([batch, batch])

    @tf.function
    def products() -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            tape.watch([query, candidate])
            scores = dot_scores(query, candidate)
        query_grad, candidate_grad = tape.gradient(
            scores, [query, candidate], output_gradients=upstream
        )
        return scores[0, 0], query_grad[0, 0], candidate_grad[0, 0]

    def run_steps() -> None:
        for _ in range(steps):
            float(products()[0])  # waits for the step's ops

    run_steps()  # traces the function and warms the kernels
    rounds = [timed(run_steps)[1] / steps for _ in range(5)]
    seconds = float(np.median(rounds))
    return {
        "batch": batch,
        "dim": dim,
        "step_seconds": seconds,
        "gflops": 6 * batch**2 * dim / seconds / 1e9,
        "ceiling_examples_per_second": batch / seconds,
    }


def ceiling_child() -> None:
    study = load_example("movielens_context")
    choice = study.CHOSEN_DEFAULT
    batch = choice.model().recipe.batch_size
    print(json.dumps(products_ceiling(batch, choice.dim)))


RECIPES = (
    ("best", ""),
    ("best", "catalogue"),
    ("best", "mixed"),
    ("chosen", ""),
)


def markdown(prepare: list[dict], train: list[dict], ceiling: dict) -> str:
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
        "Training on MovieLens 100K (chronological split, batch 1024), "
        "steady epoch, each recipe in its own process (target >= 100,000 "
        "examples/s):",
        "",
        "| recipe | negatives | examples/s | epoch (s) | ratio to best |",
        "|---|---|---|---|---|",
    ]
    base = train[0]["examples_per_second"]
    for run in train:
        lines.append(
            f"| {run['recipe']} | {run['negatives']} "
            f"| {run['examples_per_second']:,.0f} | {run['epoch_seconds']:.2f} "
            f"| {run['examples_per_second'] / base:.2f} |"
        )
    chosen = next(r for r in train if r["recipe"] == "chosen")["examples_per_second"]
    ceiling_rate = ceiling["ceiling_examples_per_second"]
    lines += [
        "",
        f"This machine in this run: the three scoring products of an in-batch "
        f"step at batch {ceiling['batch']}, {ceiling['dim']}-d (the chosen "
        f"recipe's shape) take {ceiling['step_seconds'] * 1e3:.2f} ms alone "
        f"({ceiling['gflops']:.1f} GFLOP/s), a ceiling of {ceiling_rate:,.0f} "
        f"examples/s for any in-batch recipe of that shape; the chosen recipe "
        f"reached {chosen / ceiling_rate:.0%} of it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    size = 2 * 10**5 if args.quick else 10**7
    prepare = [prepare_run(size, 50), prepare_run(size, 500)]
    epochs = 2 if args.quick else 4
    ceiling = run_child("history", "ceiling_child")
    runs = [throughput_run(args.data_dir, epochs, *recipe) for recipe in RECIPES]
    results = {
        "prepare": prepare,
        "train": runs[0],
        "recipes": runs,
        "ceiling": ceiling,
    }
    markdown_text = markdown(prepare, runs, ceiling)
    write_results(args.output, "history", results, markdown_text)
    return results
