"""One model of the recipe beside SASRec+, most-popular and EASE, on its splits.

    python -m benchmarks peers --setup ml-100k-chrono --data-dir ../shared/data/ml-100k
    python -m benchmarks peers --setup amazon-sports \\
        --data-dir ../shared/data/amazon-sports
    python -m benchmarks peers --models recipe ...  # without SASRec+
    python -m benchmarks peers --quick ...   # smoke run: 1 seed, 2 epochs

The split is the recipe's (``ctxfeatures.recipe``) on the study's setups:
the latest 20% of MovieLens 100K's events or 10% of latest-small's
(chronological), a random 20% of MovieLens 100K's (random: seed 42's draw
for every row and seed), or each user's last event (leave-last-out, Amazon
Sports, whose times are per user) is the test, and the same rule inside the
rest gives the validation events. Every row is ranked by
:func:`ctxfeatures.evaluation.evaluate_top_k` over the whole catalogue with
the user's earlier items excluded. EASE's l2 is chosen on validation among
50, 250 and 1000. SASRec+'s epochs are chosen on validation NDCG@10
(patience 5), then it is trained again on all training events for that
many epochs. The recipe's two models, one per-event model
(:class:`~ctxfeatures.recipe.Recipe` with ``members=1``) and the sequence
model (:class:`~ctxfeatures.recipe.SequenceRecipe`), each get their epochs
from their own validation run; "chosen on validation" is the one with the
better validation NDCG@10, the test unread. Mean ± sd over the seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import numpy as np
import tensorflow as tf

from benchmarks import sasrec
from benchmarks.harness import mean_sd, write_results
from ctxfeatures import baselines, evaluation
from ctxfeatures.datasets import movielens
from ctxfeatures.recipe._choose import choose, margin, pick, train_chosen
from ctxfeatures.recipe._io import ITEM, TIME, USER, read_csv
from ctxfeatures.recipe._protocols import test_events, validation_events
from ctxfeatures.recipe._sequence import SequenceRecipe
from ctxfeatures.recipe._train import (
    Parts,
    Recipe,
    eval_batch_size,
    longest_history,
    with_histories,
)

SETUPS = {  # name: (protocol, test fraction, the paper's length and dropout)
    "ml-100k-random": ("random", 0.2, 200, 0.1),
    "ml-100k-chrono": ("chronological", 0.2, 200, 0.1),
    "ml-latest-small-chrono": ("chronological", 0.1, 200, 0.1),
    "amazon-sports": ("leave-last-out", 0.0, 50, 0.5),
}
EASE_L2 = (50.0, 250.0, 1000.0)
KS = (10, 100)
SEEDS = (42, 142, 242)


def load_log(setup: str, data_dir: str) -> dict[str, np.ndarray]:
    """The setup's events as string user / item columns and int64 seconds."""
    if setup.startswith("ml-"):
        dataset = setup.rsplit("-", 1)[0]
        ratings, _ = movielens.load_arrays(data_dir, dataset=dataset)
        users, items = ratings["user_id"], ratings["movie_id"]
        times = ratings["timestamp"]
    else:
        columns = read_csv(os.path.join(data_dir, "events.csv"), EVENT_COLUMNS)
        users, items, times = (columns[name] for name in EVENT_COLUMNS)
    return {
        USER: np.asarray(users).astype(str),
        ITEM: np.asarray(items).astype(str),
        TIME: np.asarray(times).astype(np.int64),
    }


EVENT_COLUMNS = ("user_id", "item_id", "timestamp")


class Split:
    """Masks and evaluation data of one setup (shared by every row)."""

    def __init__(
        self, log: dict[str, np.ndarray], protocol: str, test_fraction: float
    ) -> None:
        self.log = log
        self.test = test_events(protocol, log[USER], log[TIME], test_fraction)
        self.train = ~self.test
        self.validation = validation_events(protocol, log[USER], log[TIME], self.train)
        self.catalogue = np.unique(log[ITEM])
        self.longest = longest = longest_history(log)
        self.batch = eval_batch_size(longest)
        fit = self.train & ~self.validation
        self.fit_data, self.validation_data = with_histories(
            log, fit, self.validation, longest
        )
        self.train_data, self.test_data = with_histories(
            log, self.train, self.test, longest
        )
        self.validation_data = self.validation_data.cache()
        self.test_data = self.test_data.cache()

    def columns(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {key: value[mask] for key, value in self.log.items()}

    def evaluate(self, scorer, final: bool) -> dict[str, float]:
        data = self.test_data if final else self.validation_data
        result = evaluation.evaluate_top_k(
            scorer, data, ks=KS, exclude="history", batch_size=self.batch
        )
        return {
            "hit@10": result["top_10"],
            "hit@100": result["top_100"],
            "ndcg@10": result["ndcg_10"],
        }


def baseline_rows(split: Split) -> dict[str, dict]:
    """Most popular and EASE (l2 chosen on validation), fitted on training."""
    fit = split.columns(split.train & ~split.validation)
    chosen, best = EASE_L2[0], -1.0
    for l2 in EASE_L2:
        ease = baselines.EASE(l2).fit(
            fit, user=USER, item=ITEM, candidates=split.catalogue
        )
        score = split.evaluate(ease, final=False)["hit@10"]
        if score > best:
            chosen, best = l2, score
    rows = {}
    for name, scorer in (
        ("most popular", baselines.MostPopular()),
        (f"EASE (l2={chosen:g})", baselines.EASE(chosen)),
    ):
        scorer.fit(
            split.columns(split.train),
            user=USER,
            item=ITEM,
            candidates=split.catalogue,
        )
        rows[name] = split.evaluate(scorer, final=True)
    return rows


def sasrec_row(
    split: Split, settings: sasrec.Settings, seed: int, max_epochs: int
) -> dict[str, float]:
    """SASRec+: epochs chosen on validation, then trained on all training."""
    index = {item: i + 1 for i, item in enumerate(split.catalogue)}
    items = np.asarray([index[item] for item in split.log[ITEM]], np.int32)

    def sequences(mask: np.ndarray) -> np.ndarray:
        log = split.log
        return sasrec.training_sequences(
            log[USER][mask], items[mask], log[TIME][mask], settings.max_length
        )

    def model() -> sasrec.SASRec:
        tf.keras.utils.set_random_seed(seed)
        return sasrec.SASRec(split.catalogue.size, settings)

    searched = model()
    scorer = sasrec.SASRecScorer(searched, split.catalogue, ITEM)
    curve: list[float] = []

    def validate(epoch: int) -> None:
        curve.append(split.evaluate(scorer, final=False)["ndcg@10"])
        # A run takes hours on a CPU: say where it is.
        print(f"SASRec+ epoch {epoch}: validation NDCG@10 {curve[-1]:.4f}", flush=True)
        if epoch - (int(np.argmax(curve)) + 1) >= 5:
            raise StopIteration  # patience: five epochs without a better one

    try:
        sasrec.fit_epochs(
            searched,
            sequences(split.train & ~split.validation),
            max_epochs,
            seed,
            validate,
        )
    except StopIteration:
        pass
    epochs = int(np.argmax(curve)) + 1
    final = model()
    train = sequences(split.train)
    seconds = sasrec.fit_epochs(final, train, epochs, seed)
    row = split.evaluate(sasrec.SASRecScorer(final, split.catalogue, ITEM), True)
    targets = int((train[:, :-1] > 0).sum())
    steady = seconds[1:] or seconds
    row.update(epochs=epochs, targets_per_s=targets * len(steady) / sum(steady))
    return row


def recipe_rows(split: Split, seed: int, quick: bool) -> dict[str, dict]:
    """The recipe's two models, per event (one model, no ensemble) and on
    sequences, each with its epochs chosen on validation; and the one that
    ``run_recipe`` offered both picks, without reading the test (the better
    validation NDCG@10, the per-event one unless the other leads it by more
    than one standard error)."""
    parts = Parts({ITEM: split.catalogue}, [], [], "|")
    epochs = {"max_epochs": 2} if quick else {}
    fit_events = split.columns(split.train & ~split.validation)
    rows = {}
    for name, recipe in (
        ("recipe, per event", Recipe(members=1, **epochs)),
        ("recipe, sequence", SequenceRecipe(**epochs)),
    ):
        start = time.perf_counter()
        chosen = choose(
            [recipe],
            fit_events,
            split.fit_data,
            split.validation_data,
            parts,
            seed,
            split.longest,
            _quiet,
        )
        model = train_chosen(
            chosen,
            split.columns(split.train),
            lambda: split.train_data,
            parts,
            seed,
            _quiet,
        )
        rows[name] = split.evaluate(model, final=True)
        rows[name].update(
            epochs=chosen.epochs,
            seconds=round(time.perf_counter() - start, 1),
            **{"validation ndcg@10": chosen.offered[0]["ndcg@10"]},
        )
    # run_recipe's rule: the first offered (per event) unless the other
    # leads it by more than one standard error.
    names = list(rows)
    scores = [rows[name]["validation ndcg@10"] for name in names]
    noise = margin(scores[0], int(split.validation.sum()))
    best = names[pick(scores, noise)]
    rows["chosen on validation"] = {**rows[best], "chosen": best}
    return rows


def _quiet(line: str) -> None:
    del line


def peak_rss_gb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def markdown(rows: dict[str, list[dict]], setup: str) -> str:
    ease = next(name for name in rows if name.startswith("EASE"))
    lines = [
        f"{setup}: mean ± sd over {max(map(len, rows.values()))} seed(s)",
        "",
        "| model | hit@10 | hit@100 | NDCG@10 | /EASE @10 | /EASE @100 |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        cells = [
            mean_sd([run[key] for run in runs])
            for key in ("hit@10", "hit@100", "ndcg@10")
        ]
        ratios = [
            np.mean([run[key] for run in runs])
            / np.mean([run[key] for run in rows[ease]])
            for key in ("hit@10", "hit@100")
        ]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {ratios[0]:.2f}x | {ratios[1]:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks peers")
    parser.add_argument("--setup", choices=sorted(SETUPS), default="ml-100k-chrono")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="1 to 3")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=("sasrec", "recipe"),
        default=["sasrec", "recipe"],
        help="rows beside most-popular and EASE",
    )
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs")
    parser.add_argument("--output", default="benchmarks/out")
    args = parser.parse_args(argv)
    protocol, test_fraction, length, dropout = SETUPS[args.setup]
    settings = sasrec.Settings(max_length=length, dropout=dropout)
    seeds = SEEDS[:1] if args.quick else SEEDS[: args.seeds]
    max_epochs = 2 if args.quick else args.max_epochs
    start = time.perf_counter()
    split = Split(load_log(args.setup, args.data_dir), protocol, test_fraction)
    rows: dict[str, list[dict]] = {
        name: [row] for name, row in baseline_rows(split).items()
    }
    for seed in seeds:
        found = {}
        if "sasrec" in args.models:
            found["SASRec+"] = sasrec_row(split, settings, seed, max_epochs)
        if "recipe" in args.models:
            found.update(recipe_rows(split, seed, args.quick))
        for name, row in found.items():
            rows.setdefault(name, []).append(row)
            print(f"seed {seed}: {name} {row}", flush=True)
    results = {
        "setup": args.setup,
        "protocol": protocol,
        "settings": dataclasses.asdict(settings),
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_gb": round(peak_rss_gb(), 2),
    }
    footer = (
        f"\n\nWall time {results['seconds']:.0f} s, peak RSS "
        f"{results['peak_rss_gb']:.2f} GB."
    )
    text = markdown(rows, args.setup) + footer
    write_results(args.output, f"peers-{args.setup}", results, text)
    return results


if __name__ == "__main__":
    main()
