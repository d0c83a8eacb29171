"""Sequence training against per-event training of the same model, in one run.

    python -m benchmarks sequence --data-dir ../shared/data/ml-100k
    python -m benchmarks sequence --quick ...   # smoke run: 2 epochs

MovieLens 100K, the study's chronological split (latest 20% of events are
the test). One model, built twice from the same seed: a user id, the user's
last 50 items (a mean, sharing the candidates' item table) and the time
since the previous event; in-batch softmax at temperature 0.1 with
accidental hits removed; Adam 1e-3. Per event: ``add_history`` rows in
batches of 1024 (``RetrievalModel``). Sequences: ``to_sequences`` rows of
50 targets after 50 context positions, 20 rows a batch, about the same
number of targets (``SequenceRetrievalModel``). Both train the same epochs
on prepared, cached batches; the table gives test hit@10 / hit@100 (seen
items excluded) and training targets per second over the steady epochs
(the first, which traces, left out), and their ratio.

The step's arithmetic ceiling, measured in the same run: the three matmuls
a catalogue softmax cannot avoid (the logits of 1,024 targets against every
item, and their two gradients), timed alone on random tensors of the same
shapes; each row's throughput is also given as a share of it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf
from benchmarks.harness import write_results
from benchmarks.sequence_peers import load_log
from ctxfeatures import history, sequences
from ctxfeatures.recipe._io import ITEM, TIME, USER
from ctxfeatures.recipe._protocols import test_events

LENGTH, DIM = 50, 64
ENCODERS = ("mean", "causal attention")


def history_layer(encoder: str, items: cf.IdEmbedding) -> cf.HistoryEmbedding:
    """The mean of the last 50 items, or causal attention (window 20, two
    blocks: the last 39 items)."""
    if encoder == "mean":
        return cf.HistoryEmbedding(item_embedding=items, window=50)
    return cf.CausalAttentionHistory(item_embedding=items, window=20, num_blocks=2)


def build(kind: str, encoder: str, log: dict, catalogue: np.ndarray, seed: int):
    tf.keras.utils.set_random_seed(seed)
    items = cf.IdEmbedding(DIM, vocabulary=catalogue)
    query = cf.Tower(
        {
            USER: cf.IdEmbedding(DIM),
            "history": history_layer(encoder, items),
            "seconds_since_last": cf.DurationBuckets(16),
        },
        head_units=(DIM,),
    )
    query.adapt({USER: log[USER]})
    model_class = cf.SequenceRetrievalModel if kind == "sequence" else cf.RetrievalModel
    model = model_class(
        query,
        cf.Tower({ITEM: items}, head_units=(DIM,)),
        {ITEM: catalogue},
        ITEM,
        temperature=0.1,
        negatives="catalogue",
    )
    model.compile(tf.keras.optimizers.Adam(1e-3))
    return model


def train_data(kind: str, model, train: dict, seed: int) -> tuple[tf.data.Dataset, int]:
    # The history each event needs: the layer's window (its receptive field).
    needed = model.query_tower.features["history"][0].window
    if kind == "sequence":
        rows = sequences.to_sequences(
            train, user=USER, item=ITEM, time=TIME, length=LENGTH, context=needed
        )
        data = model.prepare(rows, batch_size=1024 // LENGTH, shuffle=True, seed=seed)
    else:
        events = history.add_history(
            train, user=USER, item=ITEM, time=TIME, max_length=needed
        )
        data = model.prepare(events, batch_size=1024, shuffle=True, seed=seed)
    return data.cache(), int(train[ITEM].size)


def held_out(log: dict, test: np.ndarray) -> dict[str, np.ndarray]:
    """The test events with each user's whole earlier history."""
    longest = int(np.unique(log[USER], return_counts=True)[1].max())
    with_history = history.add_history(
        log, user=USER, item=ITEM, time=TIME, max_length=longest
    )
    return {key: value[test] for key, value in with_history.items()}


def run(
    kind: str,
    encoder: str,
    log: dict,
    test: np.ndarray,
    evaluation: dict,
    epochs: int,
    seed: int,
) -> dict:
    catalogue = np.unique(log[ITEM])
    train = {key: value[~test] for key, value in log.items()}
    model = build(kind, encoder, log, catalogue, seed)
    data, targets = train_data(kind, model, train, seed)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - start)
    result = model.evaluate_top_k(
        evaluation, ks=(10, 100), exclude="history", batch_size=256
    )
    steady = seconds[1:] or seconds
    return {
        "hit@10": result["top_10"],
        "hit@100": result["top_100"],
        "targets_per_s": targets * len(steady) / sum(steady),
    }


def matmul_ceiling(catalogue: int, targets: int = 1024, calls: int = 30) -> float:
    """Targets/s of the catalogue softmax's three matmuls alone (forward
    logits, gradients to the queries and to the items)."""
    queries = tf.random.normal([targets, DIM])
    items = tf.random.normal([catalogue, DIM])
    upstream = tf.random.normal([targets, catalogue])

    @tf.function
    def step() -> tf.Tensor:
        logits = tf.matmul(queries, items, transpose_b=True)
        to_queries = tf.matmul(upstream, items)
        to_items = tf.matmul(upstream, queries, transpose_a=True)
        # Read one value of each, so that none is pruned from the graph.
        return logits[0, 0] + to_queries[0, 0] + to_items[0, 0]

    step().numpy()  # traced and warm
    start = time.perf_counter()
    for _ in range(calls):
        step().numpy()
    return targets * calls / (time.perf_counter() - start)


def markdown(rows: dict[str, dict], ceiling: float) -> str:
    lines = [
        "| training | test hit@10 | test hit@100 | targets/s | / ceiling |",
        "|---|---|---|---|---|",
    ]
    for kind, row in rows.items():
        lines.append(
            f"| {kind} | {row['hit@10']:.3f} | {row['hit@100']:.3f} "
            f"| {row['targets_per_s']:,.0f} | {row['targets_per_s'] / ceiling:.3f} |"
        )
    lines.append(f"| matmul ceiling | - | - | {ceiling:,.0f} | 1 |")
    for encoder in ENCODERS:
        sequence = rows[f"{encoder}, sequence"]["targets_per_s"]
        ratio = sequence / rows[f"{encoder}, per event"]["targets_per_s"]
        lines.append(f"\nSequence / per-event throughput, {encoder}: {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sequence")
    parser.add_argument("--data-dir", required=True, help="MovieLens 100K folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="2 epochs")
    parser.add_argument("--output", default="benchmarks/out")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    log = load_log("ml-100k-chrono", args.data_dir)
    test = test_events("chronological", log[USER], log[TIME], 0.2)
    evaluation = held_out(log, test)
    rows = {
        f"{encoder}, {kind}": run(
            kind, encoder, log, test, evaluation, epochs, args.seed
        )
        for encoder in ENCODERS
        for kind in ("per event", "sequence")
    }
    ceiling = matmul_ceiling(int(np.unique(log[ITEM]).size))
    results = {
        "rows": rows,
        "matmul_ceiling_targets_per_s": ceiling,
        "epochs": epochs,
        "seed": args.seed,
    }
    write_results(args.output, "sequence", results, markdown(rows, ceiling))
    return results


if __name__ == "__main__":
    main()
