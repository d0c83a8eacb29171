"""Next-item recommendations for your own event log, with the study's recipe.

From the command line (installed with the package)::

    python -m ctxfeatures.recipe events.csv --items items.csv \\
        --user userId --item movieId --time timestamp --text title --multi genres

or from Python, on columns you already hold::

    from ctxfeatures.recipe import run_recipe
    report = run_recipe(events, user="user_id", item="item_id", time="ts",
                        protocol="leave-last-out", export="recommender")

Never reading the test events to choose anything, it:

1. splits the events by ``protocol``: ``"chronological"`` (the latest
   ``test_fraction`` in time is the test), ``"leave-last-out"`` (each
   user's last event; for logs whose times compare only within a user) or
   ``"random"`` (a ``test_fraction`` drawn with ``seed``: the TFRS
   tutorial's split);
2. gives every event its user's earlier items (``add_history`` on the whole
   log: never the event itself, nor anything at the same second or later);
3. chooses the number of epochs on a validation slice (the same rule on the
   training events: their latest 10%, each user's second-to-last event, or
   a random 10%) by early stopping on validation hit@100;
4. trains the recipe on all training events for that many epochs from
   ``members`` seeds and ensembles the models (:class:`~ctxfeatures.Ensemble`);
   or, with ``recipe=SequenceRecipe()`` (``--model sequence``), trains one
   causal-attention model on users' sequences, its epochs chosen on
   validation NDCG@10; offered several (a list, ``--model auto`` or
   ``--model search``: :func:`search_candidates`), it trains the one of
   best validation NDCG@10, the first offered unless another leads it by
   more than one standard error;
5. reports test hit@10, hit@100 and NDCG@10 of the ensemble and of its first
   model beside most-popular and EASE (its l2 among 50, 250 and 1000 chosen
   on the same validation events), seen items excluded for all;
6. with ``export``, saves the ensemble as one recommender that takes a
   request's ``history`` and ``seconds_since_last`` (a sequence model with
   SASRec's towers, ``heads=False``, the ``history`` alone) and returns the
   top 100 items the user has not seen.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ctxfeatures.layers._inputs import check_choice
from ctxfeatures.recipe._choose import (
    as_recipes,
    choose,
    describe,
    search_candidates,
    train_chosen,
)
from ctxfeatures.recipe._io import ITEM, TIME, USER, events_from_columns, join_items
from ctxfeatures.recipe._protocols import PROTOCOLS, test_events, validation_events
from ctxfeatures.recipe._report import baselines_rows, model_rows, table
from ctxfeatures.recipe._sequence import SequenceRecipe
from ctxfeatures.recipe._train import (
    Parts,
    Recipe,
    eval_batch_size,
    longest_history,
    test_histories,
    train_histories,
)

__all__ = [
    "PROTOCOLS",
    "Recipe",
    "SequenceRecipe",
    "run_recipe",
    "search_candidates",
    "table",
]


def run_recipe(
    events: Mapping[str, Any],
    items: Mapping[str, Any] | None = None,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time_column: str = "timestamp",
    text: Sequence[str] = (),
    multi: Sequence[str] = (),
    separator: str = "|",
    protocol: str = "chronological",
    test_fraction: float = 0.1,
    recipe: Recipe | SequenceRecipe | Sequence[Recipe | SequenceRecipe] | None = None,
    seed: int = 42,
    export: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    verbose: bool = True,
    _sources: tuple[str, str] = ("the events", "the items"),
) -> dict[str, Any]:
    """Runs the recipe on an event log and returns its report.

    Args:
        events: A mapping of columns (or a pandas DataFrame), one row per
            event: a user, an item and an integer Unix-seconds or ISO-8601
            time.
        items: Optional mapping of item features, one row per item, keyed
            by the same ``item`` column.
        user: Name of the user column.
        item: Name of the item column (in both mappings).
        time_column: Name of the time column.
        text: Text columns of ``items`` (titles, descriptions).
        multi: Multi-valued columns of ``items`` (``"Action|Comedy"``).
        separator: Separator of the multi-valued columns.
        protocol: ``"chronological"``, ``"leave-last-out"`` or ``"random"``.
        test_fraction: The test's share of the events, for the
            chronological and random protocols.
        recipe: The settings: a :class:`Recipe` (the study's, by default),
            a :class:`SequenceRecipe`, or a list of them, among which the
            validation run chooses (best validation NDCG@10; the first
            offered unless another leads by more than one standard error).
        seed: Seed of the first model (the others: +100, +200, ...) and of
            the random protocol's draw.
        export: Optional folder to save the recommender to.
        output: Optional JSON file for the report.
        verbose: Print progress per stage and per epoch, then the table.

    Returns:
        ``{"recipe", "offered", "protocol", "events", "epochs",
        "validation_hit@10", "validation_hit@100", "validation_ndcg@10",
        "ease_l2", "ease_validation_hit@10",
        "test": {ranker: {"hit@10", "hit@100", "ndcg@10"}}, "seconds"}``:
        ``recipe`` holds the chosen model's ``kind`` and settings,
        ``offered`` each offered model's epochs and validation NDCG@10,
        ``ease_l2`` EASE's l2, chosen by validation hit@10 (``None`` where
        the catalogue is too large for EASE).

    Raises:
        ValueError: a missing or empty column, unknown items, an unknown
            protocol, a test fraction outside (0, 1), or a ``recipe`` that is
            not a recipe.
    """
    recipes = as_recipes(recipe)
    check_choice(protocol, "protocol", PROTOCOLS)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            "`test_fraction` must be in (0, 1). Received: "
            f"test_fraction={test_fraction}"
        )
    say = _Stages(verbose, total=5 if export is None else 6)
    say.stage("reading the events")
    # Errors name the files when the command line passes them (_sources).
    log = events_from_columns(events, user, item, time_column, _sources[0])
    catalogue = join_items(log, items, item, [*text, *multi], _sources[1])
    parts = Parts(catalogue, list(text), list(multi), separator)
    return _run(recipes, log, parts, protocol, test_fraction, seed, export, output, say)


def _run(
    recipes: list[Recipe | SequenceRecipe],
    log: dict[str, np.ndarray],
    parts: Parts,
    protocol: str,
    test_fraction: float,
    seed: int,
    export: Any,
    output: Any,
    say: _Stages,
) -> dict[str, Any]:
    test = test_events(protocol, log[USER], log[TIME], test_fraction, seed)
    train = ~test
    validation = validation_events(protocol, log[USER], log[TIME], train, seed)
    counts = {
        "events": int(log[TIME].size),
        "users": int(np.unique(log[USER]).size),
        "items": int(parts.catalogue[ITEM].size),
        "train": int(train.sum()),
        "validation": int(validation.sum()),
        "test": int(test.sum()),
    }
    say(", ".join(f"{value:,} {name}" for name, value in counts.items()))
    if not counts["test"] or not counts["validation"]:
        raise ValueError(
            f"The {protocol} protocol leaves no test or validation events "
            f"({counts}): with leave-last-out, users need at least three events."
        )
    longest = longest_history(log)
    fit = train & ~validation
    held_out = test_histories(log, fit, validation, longest)
    fit_events = {key: value[fit] for key, value in log.items()}
    train_columns = {key: value[train] for key, value in log.items()}
    test_data = test_histories(log, train, test, longest)
    batch = eval_batch_size(longest)
    say.stage("most-popular and EASE (l2 chosen on validation) on the test events")
    # Before any model: EASE's matrix and the models' memory never add up.
    ease_l2, ease_validation, baseline_rows = baselines_rows(
        fit_events, train_columns, parts.catalogue, held_out, test_data, batch, say
    )
    say.stage("choosing the number of epochs on validation")
    # Built after the baselines: 0.1 GB less beside EASE's matrix (Amazon).
    fitted = train_histories(log, fit, validation)
    chosen = choose(recipes, fit_events, fitted, held_out, parts, seed, longest, say)
    say.stage(describe(chosen.recipe, chosen.epochs))
    model = train_chosen(
        chosen,
        train_columns,
        lambda: train_histories(log, train, test),
        parts,
        seed,
        say,
    )
    say.stage("evaluating on the test events")
    results = model_rows(model, test_data, counts["items"], batch, say) | baseline_rows
    if export is not None:
        say.stage(f"exporting the recommender to {os.fspath(export)}")
        k = min(100, counts["items"])
        model.export_recommender(os.fspath(export), k=k, exclude="history")
    report = {
        "recipe": {"kind": type(chosen.recipe).__name__}
        | dataclasses.asdict(chosen.recipe),
        "offered": chosen.offered,
        "protocol": protocol,
        "events": counts,
        "epochs": chosen.epochs,
        **{f"validation_{key}": curve for key, curve in chosen.curves.items()},
        "ease_l2": ease_l2,
        "ease_validation_hit@10": ease_validation,
        "test": results,
        "seconds": round(say.elapsed(), 1),
    }
    say.done(table(results), export, model.query_tower.feature_names)
    if output is not None:
        with open(output, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return report


class _Stages:
    """Progress lines: numbered stages with the time since the start."""

    def __init__(
        self, verbose: bool, total: int, write: Callable[[str], None] = print
    ) -> None:
        self.verbose, self.total, self.write = verbose, total, write
        self.start = time.perf_counter()
        self.number = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, line: str) -> None:
        if self.verbose:
            self.write(f"  {line.strip()}" if not line.startswith("    ") else line)

    def stage(self, name: str) -> None:
        self.number += 1
        if self.verbose:
            self.write(f"[{self.number}/{self.total}] {name} ({self.elapsed():.0f} s)")

    def done(self, results: str, export: Any, inputs: list[str]) -> None:
        if not self.verbose:
            return
        self.write(f"\nTest results ({self.elapsed():.0f} s in all):\n\n{results}")
        if export is not None:
            # SASRec's towers (heads=False) read the history alone.
            said = [
                f"{name} (item ids, most recent last)" if name == "history" else name
                for name in inputs
            ]
            self.write(
                f"\nRecommender saved to {os.fspath(export)}: it takes "
                f"{' and '.join(said)}; load it with "
                "ctxfeatures.serving.load_recommender or tf.saved_model.load."
            )
