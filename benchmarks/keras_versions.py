"""The recipe under Keras 2 and Keras 3, side by side, on MovieLens 100K.

    python -m benchmarks keras --data-dir ../shared/data/ml-100k

For each seed, one child process per Keras (a process has one ``tf.keras``)
trains the study's chosen recipe (``ctxfeatures.recipe.Recipe``, one model)
for the same number of epochs on the same chronological 90/10 split and
reports test hit@10 / hit@100 (seen items excluded) and its training
examples/s over the steady epochs (the first, which traces, left out). The
table gives each Keras's mean ± sd over the seeds and the throughput ratio
Keras 3 / Keras 2 of each seed's pair, run one after the other.

The tutorial-model row of ``python -m benchmarks run`` (the TFRS tutorial's
model with timestamps, written with ctxfeatures: random 80/20 split, 3
epochs, batch 2048) runs the same way and reports test top-100 accuracy
(nothing excluded, as the tutorial) and steady-epoch examples/s. TFRS' own
tutorial code needs Keras 2, so ``python -m benchmarks run`` keeps it there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.harness import ROOT, mean_sd, write_results

SEEDS = (42, 43, 44)


def child(data_dir: str, seed: int, epochs: int) -> None:
    """One Keras's run (the Keras is chosen by the parent's environment)."""
    import tensorflow as tf

    import ctxfeatures as cf
    from ctxfeatures.datasets import movielens
    from ctxfeatures.recipe._io import ITEM, TIME, USER
    from ctxfeatures.recipe._protocols import test_events
    from ctxfeatures.recipe._train import (
        Parts,
        Recipe,
        build,
        eval_batch_size,
        longest_history,
        with_histories,
    )
    from ctxfeatures.sampling import with_sampling_probability

    ratings, _ = movielens.load_arrays(data_dir)
    log = {
        USER: ratings["user_id"].astype(str),
        ITEM: ratings["movie_title"].astype(str),
        TIME: ratings["timestamp"].astype(np.int64),
    }
    test = test_events("chronological", log[USER], log[TIME], 0.1)
    longest = longest_history(log)
    train, held_out = with_histories(log, ~test, test, longest)
    recipe = Recipe(members=1)
    parts = Parts({ITEM: np.unique(log[ITEM])}, [], [], "|")
    tf.keras.utils.set_random_seed(seed)
    model = build(recipe, train, parts)
    data = with_sampling_probability(train, ITEM, "probability")
    prepared = model.prepare(
        data, batch_size=recipe.batch_size, shuffle=True, seed=seed
    )
    prepared = prepared.cache()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(prepared, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - start)
    result = model.evaluate_top_k(
        held_out, ks=(10, 100), exclude="history", batch_size=eval_batch_size(longest)
    )
    examples = int((~test).sum())
    steady = seconds[1:] or seconds
    print(
        json.dumps(
            {
                "keras": cf.keras_version,
                "seed": seed,
                "hit@10": result["top_10"],
                "hit@100": result["top_100"],
                "examples_per_s": examples * len(steady) / sum(steady),
            }
        )
    )


def tutorial_child(data_dir: str, seed: int, epochs: int) -> None:
    """The tutorial model's run under the parent's choice of Keras."""
    import ctxfeatures as cf
    from benchmarks.tutorial_ours import ours, tutorial_data
    from ctxfeatures.datasets import movielens

    _, titles, train, test = tutorial_data(*movielens.load(data_dir))
    candidates = titles.map(lambda title: {"movie_title": title})
    run = ours(train.cache(), test.cache(), candidates, True, epochs, seed)
    print(
        json.dumps(
            {
                "keras": cf.keras_version,
                "seed": seed,
                "top_100": run["top_100"],
                "examples_per_s": run["examples_per_s"],
            }
        )
    )


def run_child(
    data_dir: str, seed: int, epochs: int, keras: int, name: str = "child"
) -> dict:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1" if keras == 2 else "0"}
    code = (
        f"from benchmarks.keras_versions import {name}; "
        f"{name}({data_dir!r}, {seed}, {epochs})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = [
        "| Keras | test hit@10 | test hit@100 | examples/s |",
        "|---|---|---|---|",
    ]
    for keras in (2, 3):
        mine = [row for row in rows if row["keras"] == keras]
        cells = [mean_sd([row[key] for row in mine]) for key in ("hit@10", "hit@100")]
        speed = np.mean([row["examples_per_s"] for row in mine])
        lines.append(f"| {keras} | {cells[0]} | {cells[1]} | {speed:,.0f} |")
    ratios = [
        three["examples_per_s"] / two["examples_per_s"]
        for two, three in zip(
            [r for r in rows if r["keras"] == 2], [r for r in rows if r["keras"] == 3]
        )
    ]
    lines.append(ratio_line(ratios))
    return "\n".join(lines)


def ratio_line(ratios: list[float]) -> str:
    each = ", ".join(f"{r:.2f}" for r in ratios)
    mean = np.mean(ratios)
    return f"\nThroughput ratio Keras 3 / Keras 2, per seed: {each} (mean {mean:.2f})"


def tutorial_markdown(rows: list[dict]) -> str:
    """The tutorial model's rows: top-100 and examples/s, and their ratio."""
    by_keras = {k: [r for r in rows if r["keras"] == k] for k in (2, 3)}
    lines = [
        "\nThe TFRS tutorial's model with timestamps, written with ctxfeatures:",
        "",
        "| Keras | test top-100 | examples/s |",
        "|---|---|---|",
    ]
    for keras, mine in by_keras.items():
        speed = np.mean([r["examples_per_s"] for r in mine])
        spread = mean_sd([r["top_100"] for r in mine])
        lines.append(f"| {keras} | {spread} | {speed:,.0f} |")
    ratios = [
        three["examples_per_s"] / two["examples_per_s"]
        for two, three in zip(by_keras[2], by_keras[3])
    ]
    lines.append(ratio_line(ratios))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks keras")
    parser.add_argument("--data-dir", required=True, help="MovieLens 100K folder")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs")
    parser.add_argument("--output", default="benchmarks/out")
    args = parser.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    epochs = 2 if args.quick else args.epochs
    data_dir = os.path.abspath(args.data_dir)
    rows, tutorial = [], []
    for seed in seeds:
        for keras in (2, 3):
            rows.append(run_child(data_dir, seed, epochs, keras))
            tutorial.append(
                run_child(data_dir, seed, min(epochs, 3), keras, "tutorial_child")
            )
    results = {"rows": rows, "tutorial_rows": tutorial, "epochs": epochs}
    text = markdown(rows) + "\n" + tutorial_markdown(tutorial)
    write_results(args.output, "keras", results, text)
    return results


if __name__ == "__main__":
    main()
