"""The sequence recipe's training batches: new ones each epoch, from the seed."""

from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.recipe import SequenceRecipe
from ctxfeatures.recipe._io import ITEM, TIME, USER
from ctxfeatures.recipe._sequence import build_sequence_model, sequence_rows
from ctxfeatures.recipe._train import Parts

RECIPE = SequenceRecipe(dim=8, window=3, num_blocks=1, length=4, batch_targets=12)


def events(users: int = 30, steps: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        USER: np.repeat([f"u{u}" for u in range(users)], steps),
        ITEM: np.array([f"i{i}" for i in rng.integers(20, size=users * steps)]),
        TIME: np.tile(1_000_000 + 60 * np.arange(steps), users),
    }


def epochs(seed: int, count: int = 2) -> list[list[np.ndarray]]:
    """Each epoch's batches, as the target items' table indices."""
    parts = Parts({ITEM: np.array([f"i{i}" for i in range(20)])}, [], [], "|")
    tf.keras.utils.set_random_seed(seed)
    model = build_sequence_model(RECIPE, parts)
    data = sequence_rows(RECIPE, model, events(), seed)
    return [[targets(batch) for batch in data] for _ in range(count)]


def targets(batch: Any) -> np.ndarray:
    return np.concatenate([np.ravel(t) for t in tf.nest.flatten(batch.candidate)])


def test_each_epoch_draws_new_batches_of_the_same_targets():
    first, second = epochs(seed=7)
    # The same targets, in other batches: the rows are reshuffled each epoch
    # (SASRec's loop), not cached as one fixed order.
    np.testing.assert_array_equal(
        np.sort(np.concatenate(first)), np.sort(np.concatenate(second))
    )
    assert len(first) > 3
    assert any(a.tolist() != b.tolist() for a, b in zip(first, second))


def test_the_seed_repeats_every_epochs_batches():
    again = epochs(seed=7)
    for run_a, run_b in zip(epochs(seed=7), again):
        assert [a.tolist() for a in run_a] == [b.tolist() for b in run_b]
    other = epochs(seed=8)[0]
    assert [a.tolist() for a in other] != [a.tolist() for a in again[0]]
