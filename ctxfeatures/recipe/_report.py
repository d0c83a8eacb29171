"""The recipe's results: every ranker by one evaluator, and the table."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures import baselines, evaluation
from ctxfeatures.recipe._io import ITEM, USER

KS = (10, 100)
EASE_L2 = 250.0


def cutoffs(size: int) -> tuple[int, int]:
    """hit@10 and hit@100 for a catalogue of ``size``: a list of every item
    when it is smaller (the same number, under the same name)."""
    return (min(KS[0], size), min(KS[1], size))


def metrics(result: dict, size: int) -> dict[str, float]:
    ten, hundred = cutoffs(size)
    return {
        "hit@10": result[f"top_{ten}"],
        "hit@100": result[f"top_{hundred}"],
        "ndcg@10": result[f"ndcg_{ten}"],
    }


def compare(
    model: Any,
    train_columns: dict[str, np.ndarray],
    catalogue: dict[str, np.ndarray],
    test: tf.data.Dataset,
    batch: int,
    say: Any,
) -> dict[str, dict]:
    """Test metrics of the recipe, most-popular and EASE, by one evaluator."""
    rankers = {"recipe": model}
    members = getattr(model, "models", ())  # an Ensemble's
    if len(members) > 1:
        rankers["recipe, one model"] = members[0]
    size = int(catalogue[ITEM].size)
    ks = cutoffs(size)
    results = {}
    for name, ranker in rankers.items():
        say(f"    evaluating {name}")
        result = ranker.evaluate_top_k(test.batch(batch), ks=ks, exclude="history")
        results[name] = metrics(result, size)
    scorers = {
        "most popular": baselines.MostPopular(),
        "EASE": baselines.EASE(EASE_L2),
    }
    for name, scorer in scorers.items():
        if name == "EASE" and catalogue[ITEM].size > scorer.max_items:
            say(f"    EASE skipped: {catalogue[ITEM].size:,} items > max_items.")
            continue
        say(f"    fitting and evaluating {name}")
        scorer.fit(train_columns, user=USER, item=ITEM, candidates=catalogue[ITEM])
        result = evaluation.evaluate_top_k(
            scorer, test, ks=ks, exclude="history", batch_size=batch
        )
        results[name] = metrics(result, size)
    return results


def table(results: dict[str, dict]) -> str:
    """A Markdown table, with each row's ratio to EASE."""
    reference = results.get("EASE")
    lines = [
        "| model | hit@10 | hit@100 | NDCG@10 | hit@10 / EASE | hit@100 / EASE |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        ratios = [
            f"{row[k] / reference[k]:.2f}x" if reference and reference[k] else "n/a"
            for k in ("hit@10", "hit@100")
        ]
        lines.append(
            f"| {name} | {row['hit@10']:.3f} | {row['hit@100']:.3f} "
            f"| {row['ndcg@10']:.3f} | {' | '.join(ratios)} |"
        )
    return "\n".join(lines)
