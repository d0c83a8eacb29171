"""The study's one-model part: next-item retrieval by one model, per setup.

Part of the MovieLens study (``movielens_context.py``, its entry point). On
each setup it runs :func:`ctxfeatures.recipe.run_recipe` offered the
recipe's search (``search_candidates(members=1)``, ``--model search``): the
per-event model with one member at two temperatures and two recency decays,
and the sequence model. Each gets its epochs from its own validation run,
the one of best validation NDCG@10 (the default unless another leads by
more than one standard error) is trained on all training events, and
EASE's l2 is chosen on the same validation events.
Every row (the model, most-popular, EASE) is ranked by one evaluator over the
whole catalogue, the user's seen items excluded; items only, no item
features, as in next-item papers. The test events are never read to choose.

Setups: MovieLens 100K random and chronological 80/20, latest-small
chronological 90/10, and every ``--data-dir`` folder holding an
``events.csv`` (``user_id,item_id,timestamp``) with the leave-last-out
protocol: Amazon Sports (``amazon-sports/events.csv``), whose times compare
only within a user. It cannot be downloaded; without its folder the part
runs on MovieLens alone. One child process per setup and seed.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import resource
from typing import Any

import numpy as np
from study_report import list_table, markdown_table
from study_runs import in_child, load

EVENTS = "events.csv"
EVENT_COLUMNS = ("user_id", "item_id", "timestamp")
ROWS = ("most popular", "EASE", "one model")
ROW_LABELS = {
    "most popular": "*most popular*",
    "EASE": "*EASE (l2 on validation)*",
    "one model": "one model, chosen on validation",
}


@dataclasses.dataclass(frozen=True)
class NextSetup:
    """One data set and protocol of the one-model part."""

    dataset: str  # a MovieLens name, or an event-log folder
    protocol: str
    test_fraction: float = 0.0

    @property
    def name(self) -> str:
        if self.protocol == "leave-last-out":
            return (
                f"{os.path.basename(os.path.normpath(self.dataset))}, {self.protocol}"
            )
        share = 1.0 - self.test_fraction
        return f"{self.dataset}, {self.protocol} {share:.0%}"


MOVIELENS = (
    NextSetup("ml-100k", "random", 0.2),
    NextSetup("ml-100k", "chronological", 0.2),
    NextSetup("ml-latest-small", "chronological", 0.1),
)


def setups(datasets: list[str], split_names: list[str], data_dirs: list[str]):
    """The MovieLens setups the study's ``--datasets`` and ``--splits`` keep,
    then one leave-last-out setup per event-log folder."""
    chosen = [
        s for s in MOVIELENS if s.dataset in datasets and s.protocol in split_names
    ]
    logs = [d for d in data_dirs if os.path.isfile(os.path.join(d, EVENTS))]
    return chosen + [NextSetup(os.path.abspath(d), "leave-last-out") for d in logs]


def events(setup: NextSetup, data_dirs: list[str]) -> dict[str, np.ndarray]:
    """The setup's user, item and time columns."""
    if setup.protocol == "leave-last-out":
        with open(os.path.join(setup.dataset, EVENTS), newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {
            "user_id": np.array([r["user_id"] for r in rows]),
            "item_id": np.array([r["item_id"] for r in rows]),
            "timestamp": np.array([int(r["timestamp"]) for r in rows], np.int64),
        }
    ratings, _ = load(setup.dataset, data_dirs)
    return {
        "user_id": np.asarray(ratings["user_id"]).astype(str),
        "item_id": np.asarray(ratings["movie_id"]).astype(str),
        "timestamp": np.asarray(ratings["timestamp"], np.int64),
    }


def run_seed(setup: NextSetup, data_dirs: list[str], seed: int, quick: bool) -> dict:
    """One setup and seed, in this process: the rows and what was chosen."""
    # Imported here: the recipe brings TensorFlow into the child only.
    from ctxfeatures.recipe import run_recipe, search_candidates

    epochs = {"max_epochs": 2} if quick else {}
    report = run_recipe(
        events(setup, data_dirs),
        protocol=setup.protocol,
        test_fraction=setup.test_fraction or 0.1,
        recipe=search_candidates(members=1, **epochs),
        seed=seed,
        verbose=False,
    )
    test = report["test"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "rows": {
            "most popular": test["most popular"],
            "EASE": test.get("EASE"),
            "one model": test["recipe"],
        },
        "chosen": label(report["recipe"]),
        "epochs": report["epochs"],
        "offered": report["offered"],
        "ease_l2": report["ease_l2"],
        "seconds": report["seconds"],
        "peak_rss_gb": round(peak, 2),
    }


def run(args: Any, job: dict) -> dict:
    """Every setup and seed, each in a child process; the summary."""
    seeds = range(42, 42 + args.seeds)
    out = {"setups": [], "skipped": None}
    found = setups(args.datasets, args.splits, args.data_dir)
    if not any(s.protocol == "leave-last-out" for s in found):
        out["skipped"] = (
            "no --data-dir folder holds an events.csv: Amazon Sports (not "
            "downloadable) was not run"
        )
        print(f"== one model: {out['skipped']}", flush=True)
    for setup in found:
        print(f"== one model: {setup.name}, seeds {list(seeds)}", flush=True)
        runs = [
            in_child(
                {
                    **job,
                    "kind": "next-item",
                    "next": setup.dataset,
                    "protocol": setup.protocol,
                    "fraction": setup.test_fraction,
                    "seed": seed,
                }
            )
            for seed in seeds
        ]
        out["setups"].append({"setup": setup.name, "runs": runs})
    return out


def label(recipe: dict) -> str:
    """The chosen model in a few words: its kind and searched settings."""
    if recipe["kind"] != "Recipe":
        return f"sequence, {recipe['negatives']}"
    if recipe.get("encoder") == "attention":
        return f"per event, attention, t={recipe['temperature']:g}"
    # A width other than the default is named (search_candidates(dim=128)).
    width = f", {recipe['dim']}-d" if recipe.get("dim", 64) != 64 else ""
    return (
        f"per event, t={recipe['temperature']:g}, d={recipe['recency_decay']:g}" + width
    )


def setup_of(job: dict) -> NextSetup:
    return NextSetup(job["next"], job["protocol"], job["fraction"])


def summary(runs: list[dict], row: str) -> dict[str, dict[str, float]] | None:
    """Mean and sd over seeds of one row's metrics."""
    values = [run["rows"][row] for run in runs]
    if any(value is None for value in values):
        return None
    out = {}
    for metric in ("hit@10", "hit@100", "ndcg@10"):
        array = np.array([value[metric] for value in values], np.float64)
        sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
        out[metric] = {"mean": float(array.mean()), "sd": sd}
    return out


def table_cells(part: dict) -> list[list[str]]:
    """Header, then one line per setup and row, with ratios to EASE."""
    cells = [["setup", "model", "hit@10", "hit@100", "NDCG@10"]]
    cells[0] += ["hit@10 / EASE", "hit@100 / EASE", "chosen", "peak RSS"]
    for entry in part["setups"]:
        runs = entry["runs"]
        ease = summary(runs, "EASE")
        counts = collections.Counter(run["chosen"] for run in runs)
        chosen = "; ".join(f"{name} ({n})" for name, n in counts.most_common())
        peak = max(run["peak_rss_gb"] for run in runs)
        for row in ROWS:
            stats = summary(runs, row)
            if stats is None:
                continue
            ratios = [
                f"{stats[m]['mean'] / ease[m]['mean']:.2f}x" if ease else "n/a"
                for m in ("hit@10", "hit@100")
            ]
            cells.append(
                [entry["setup"], ROW_LABELS[row]]
                + [
                    f"{stats[m]['mean']:.3f} ± {stats[m]['sd']:.3f}"
                    for m in ("hit@10", "hit@100", "ndcg@10")
                ]
                + ratios
                + ([chosen, f"{peak:.2f} GB"] if row == "one model" else ["", ""])
            )
    return cells


FOOTNOTE = (
    "One model: the per-event recipe (one member; temperature 0.1 or 0.2, "
    "recency decay 0.5 or 0.8, or an attention encoder) or the sequence model "
    "(in-batch negatives, or as SASRec+), whichever has the best "
    "validation NDCG@10, the default unless another leads by more than one "
    "standard error (run_recipe offered search_candidates(members=1)); "
    "EASE's l2 among 50, 250, 1000 by validation hit@10. Items only; seen "
    "items excluded; mean ± sd over the seeds. Peak RSS: the largest seed's "
    "process."
)


def markdown(part: dict) -> str:
    lines = ["**one model, next item**", "", *markdown_table(table_cells(part))]
    return "\n".join([*lines, "", *notes(part)]) + "\n"


def restructured_text(part: dict) -> str:
    lines = list_table("one model, next item", table_cells(part))
    return "\n".join([*lines, "", *notes(part)]) + "\n"


def notes(part: dict) -> list[str]:
    skipped = [f"Skipped: {part['skipped']}."] if part["skipped"] else []
    return [FOOTNOTE, *skipped]
