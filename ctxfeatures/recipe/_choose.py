"""Epochs, and the model where several are offered, chosen on validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.recipe._sequence import (
    SequenceRecipe,
    choose_sequence_epochs,
    train_sequence,
)
from ctxfeatures.recipe._train import (
    Parts,
    Recipe,
    choose_epochs,
    eval_batch_size,
    train_members,
)

AnyRecipe = Recipe | SequenceRecipe
# What each model's early stopping watches (the per-event one keeps the
# study's hit@100; the sequence one NDCG@10).
MONITORED = {Recipe: "hit@100", SequenceRecipe: "ndcg@10"}
# What decides between models: where in the first ten the answer is.
DECIDING = "ndcg@10"


@dataclasses.dataclass
class Chosen:
    """The chosen model's settings, epochs and validation curves, and each
    offered model's validation result."""

    recipe: AnyRecipe
    epochs: int
    curves: dict[str, list[float]]
    offered: list[dict[str, Any]]


def as_recipes(recipe: AnyRecipe | Sequence[AnyRecipe] | None) -> list[AnyRecipe]:
    """``recipe`` as a non-empty list of recipes, or a clear error."""
    if recipe is None:
        return [Recipe()]
    recipes = [recipe] if isinstance(recipe, Recipe | SequenceRecipe) else recipe
    recipes = list(recipes) if isinstance(recipes, Sequence) else [recipes]
    wrong = [r for r in recipes if not isinstance(r, Recipe | SequenceRecipe)]
    if not recipes or wrong:
        raise ValueError(
            "`recipe` must be a Recipe, a SequenceRecipe or a list of them (the "
            "validation run chooses among a list). Received: "
            f"recipe={recipe!r}"
        )
    return recipes


def choose(
    recipes: list[AnyRecipe],
    events: dict[str, np.ndarray],
    fitted: tf.data.Dataset,
    held_out: tf.data.Dataset,
    parts: Parts,
    seed: int,
    longest: int,
    say: Any,
) -> Chosen:
    """Each recipe's epochs on the validation events (``events`` and
    ``fitted``: the training events without them, as columns and with
    histories); the recipe with the best validation NDCG@10 at its epochs."""
    best: tuple[AnyRecipe, int, dict[str, list[float]]] | None = None
    best_score = -np.inf
    offered: list[dict[str, Any]] = []
    for recipe in recipes:
        if len(recipes) > 1:
            say(f"{type(recipe).__name__}:")
        if isinstance(recipe, SequenceRecipe):
            batch = eval_batch_size(longest)
            epochs, curves = choose_sequence_epochs(
                recipe, events, held_out, parts, seed, batch, say
            )
        else:
            epochs, curves = choose_epochs(
                recipe, fitted, held_out, parts, seed, longest, say
            )
        monitored = MONITORED[type(recipe)]
        listed = ", ".join(f"{value:.3f}" for value in curves[monitored])
        say(f"{epochs} epochs (validation {monitored} by epoch: {listed})")
        score = curves[DECIDING][epochs - 1]
        offered.append(
            {"kind": type(recipe).__name__, "epochs": epochs, DECIDING: score}
        )
        if best is None or score > best_score:
            best, best_score = (recipe, epochs, curves), score
    assert best is not None
    if len(recipes) > 1:
        say(f"chosen: {type(best[0]).__name__} (validation {DECIDING})")
    return Chosen(*best, offered=offered)


def train_chosen(
    chosen: Chosen,
    events: dict[str, np.ndarray],
    train_data: Callable[[], tf.data.Dataset],
    parts: Parts,
    seed: int,
    say: Any,
) -> Any:
    """The chosen recipe trained on all training events (``events`` as
    columns; ``train_data`` makes them with histories) for its epochs."""
    recipe, epochs = chosen.recipe, chosen.epochs
    if isinstance(recipe, SequenceRecipe):
        return train_sequence(recipe, events, parts, epochs, seed, say)
    # Made only here: add_history's offsets are numpy work over the whole log
    # that the sequence model, which reads the columns, does not need.
    return train_members(recipe, train_data(), parts, epochs, seed, say)


def describe(recipe: AnyRecipe, epochs: int) -> str:
    if isinstance(recipe, SequenceRecipe):
        return f"training the sequence model for {epochs} epochs"
    return f"training {recipe.members} model(s) for {epochs} epochs"
