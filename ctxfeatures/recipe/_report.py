"""The recipe's results: every ranker by one evaluator, and the table."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures import baselines, evaluation
from ctxfeatures.recipe._io import ITEM, USER

KS = (10, 100)
# EASE's l2 is chosen among these on the validation events (by hit@10), as
# the study does: one fixed value favours the data sets it was tuned on.
EASE_L2 = (50.0, 250.0, 1000.0)
# Baselines score in batches of at most this many requests: each batch's
# batch x catalogue score rows stay in the allocator beside EASE's matrix
# (0.22 GB at 256 rows and 18,000 items, 0.12 GB at 64), at little cost in
# time: EASE reads one weight row per distinct history item of a batch, and
# Amazon Sports' validation batches of 256 would read only 10% fewer rows.
SCORER_BATCH = 64


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


def fitted_metrics(
    make: Callable[[], Any],
    columns: dict[str, np.ndarray],
    catalogue: dict[str, np.ndarray],
    data: tf.data.Dataset,
    batch: int,
) -> dict[str, float]:
    """hit@10, hit@100 and NDCG@10 on ``data`` of the scorer ``make()``
    fitted on ``columns``; the scorer is freed before this returns (EASE's
    packed matrix: 0.63 GB at 18,000 items, one at a time)."""
    size = int(catalogue[ITEM].size)
    scorer = make().fit(columns, user=USER, item=ITEM, candidates=catalogue[ITEM])
    result = evaluation.evaluate_top_k(
        scorer,
        data,
        ks=cutoffs(size),
        exclude="history",
        batch_size=min(batch, SCORER_BATCH),
    )
    del scorer
    gc.collect()
    return metrics(result, size)


def choose_ease_l2(
    fit_columns: dict[str, np.ndarray],
    catalogue: dict[str, np.ndarray],
    held_out: tf.data.Dataset,
    batch: int,
    say: Any,
) -> tuple[float | None, dict[str, float]]:
    """EASE's l2 of the best validation hit@10, fitted on ``fit_columns``,
    and each l2's validation hit@10; ``None`` if the catalogue is too large."""
    if int(catalogue[ITEM].size) > baselines.EASE().max_items:
        return None, {}
    scores = {
        f"{l2:g}": fitted_metrics(
            lambda l2=l2: baselines.EASE(l2), fit_columns, catalogue, held_out, batch
        )["hit@10"]
        for l2 in EASE_L2
    }
    listed = ", ".join(f"l2={l2} {score:.3f}" for l2, score in scores.items())
    best = max(scores, key=lambda l2: scores[l2])
    say(f"    EASE validation hit@10: {listed}; l2={best} chosen")
    return float(best), scores


def baselines_rows(
    fit_columns: dict[str, np.ndarray],
    train_columns: dict[str, np.ndarray],
    catalogue: dict[str, np.ndarray],
    held_out: tf.data.Dataset,
    test: tf.data.Dataset,
    batch: int,
    say: Any,
) -> tuple[float | None, dict[str, float], dict[str, dict]]:
    """Most-popular's and EASE's test metrics, EASE's l2 chosen on
    ``held_out`` (fitted on ``fit_columns``): ``(l2, its validation hit@10 by
    l2, rows)``.

    The recipe runs this before it builds any model: EASE's packed matrix
    (0.63 GB at 18,000 items) is then the only large thing in the process, and
    it is freed before training starts.
    """
    ease_l2, ease_validation = choose_ease_l2(
        fit_columns, catalogue, held_out, batch, say
    )
    makers: dict[str, Callable[[], Any]] = {"most popular": baselines.MostPopular}
    if ease_l2 is None:
        say(f"    EASE skipped: {int(catalogue[ITEM].size):,} items > max_items.")
    else:
        makers["EASE"] = lambda: baselines.EASE(ease_l2)
    rows = {}
    for name, make in makers.items():
        say(f"    fitting and evaluating {name}")
        rows[name] = fitted_metrics(make, train_columns, catalogue, test, batch)
    return ease_l2, ease_validation, rows


def model_rows(
    model: Any, test: tf.data.Dataset, size: int, batch: int, say: Any
) -> dict[str, dict]:
    """The recipe's test metrics (and its first member's, for an ensemble)."""
    rankers = {"recipe": model}
    members = getattr(model, "models", ())  # an Ensemble's
    if len(members) > 1:
        rankers["recipe, one model"] = members[0]
    rows = {}
    for name, ranker in rankers.items():
        say(f"    evaluating {name}")
        result = ranker.evaluate_top_k(
            test.batch(batch), ks=cutoffs(size), exclude="history"
        )
        rows[name] = metrics(result, size)
    return rows


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
