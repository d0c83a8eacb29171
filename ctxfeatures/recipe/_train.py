"""The recipe's model: built, trained with its epochs chosen on validation."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.callbacks import TopKValidation
from ctxfeatures.ensemble import Ensemble
from ctxfeatures.history import add_history
from ctxfeatures.layers import (
    AttentionHistory,
    DurationBuckets,
    HistoryEmbedding,
    IdEmbedding,
    MultiIdEmbedding,
    TextEmbedding,
)
from ctxfeatures.layers._inputs import check_choice
from ctxfeatures.recipe._io import ITEM, TIME, USER
from ctxfeatures.sampling import with_sampling_probability

# Training events carry their last TRAIN_HISTORY items (the recipe reads 20);
# test requests carry every earlier item, so that all seen items are excluded.
TRAIN_HISTORY = 50
# Test requests per evaluation step, fewer when histories are long: a step
# holds batch x longest-history ids, and one user with 10^5 events would make
# 256 requests 2.5 x 10^7 ids wide.
EVAL_BATCH, EVAL_CELLS = 256, 2**20
MEMBER_SEED_STEP = 100
# How the query reads its history: a recency-weighted mean of the item
# vectors (the study's "recent") or self-attention over them (SASRec's
# encoder applied to each request, :class:`~ctxfeatures.AttentionHistory`).
ENCODERS = ("mean", "attention")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The study's ``CHOSEN_DEFAULT`` (a test keeps the two equal).

    Attributes:
        dim: Width of the item table and of both towers' output.
        window: Most recent history items the query reads.
        recency_decay: Weight of each older history item, relative to the
            next one (the ``"mean"`` encoder's).
        temperature: Softmax temperature of the cosine similarity.
        learning_rate: Adam's learning rate.
        batch_size: Training examples per batch (the in-batch negatives).
        max_epochs: Epochs at most; early stopping on validation picks fewer.
        members: Models trained from different seeds and ensembled.
        encoder: ``"mean"`` (the recency-weighted mean of the history's
            item vectors) or ``"attention"`` (one self-attention block over
            them, :class:`~ctxfeatures.AttentionHistory`).
    """

    dim: int = 64
    window: int = 20
    recency_decay: float = 0.8
    temperature: float = 0.2
    learning_rate: float = 1.5e-3
    batch_size: int = 1024
    max_epochs: int = 10
    members: int = 3
    encoder: str = "mean"

    def __post_init__(self) -> None:
        check_choice(self.encoder, "encoder", ENCODERS)


@dataclasses.dataclass(frozen=True)
class Parts:
    """What the model is built from besides the recipe and the events."""

    catalogue: dict[str, np.ndarray]
    text: list[str]
    multi: list[str]
    separator: str


def longest_history(events: dict[str, np.ndarray]) -> int:
    """Events of the most active user: the width of a test request's history."""
    return int(np.unique(events[USER], return_counts=True)[1].max())


def eval_batch_size(longest: int) -> int:
    return max(1, min(EVAL_BATCH, EVAL_CELLS // longest))


def with_histories(
    events: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, longest: int
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Training and test events, each with the user's earlier items."""
    return train_histories(events, train, test), test_histories(
        events, train, test, longest
    )


def train_histories(
    events: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray
) -> tf.data.Dataset:
    """The training events with their last ``TRAIN_HISTORY`` earlier items."""
    log, count = _test_first(events, train, test)
    return add_history(log, **_NAMES, max_length=TRAIN_HISTORY).skip(count)


def test_histories(
    events: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, longest: int
) -> tf.data.Dataset:
    """The test events with every earlier item (``longest`` at most)."""
    log, count = _test_first(events, train, test)
    return add_history(log, **_NAMES, max_length=longest).take(count)


_NAMES = dict(user=USER, item=ITEM, time=TIME)


def _test_first(
    events: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray
) -> tuple[tf.data.Dataset, int]:
    # Test events first, so that each part is a cheap take() / skip().
    order = np.concatenate([np.flatnonzero(test), np.flatnonzero(train)])
    log = tf.data.Dataset.from_tensor_slices({k: v[order] for k, v in events.items()})
    return log, int(test.sum())


def build(recipe: Recipe, train: tf.data.Dataset, parts: Parts) -> Any:
    from ctxfeatures.builder import build_retrieval_model  # TFRS, on first use

    item = IdEmbedding(recipe.dim)
    if recipe.encoder == "attention":
        history = AttentionHistory(item_embedding=item, window=recipe.window)
    else:
        history = HistoryEmbedding(
            item_embedding=item,
            window=recipe.window,
            recency_decay=recipe.recency_decay,
        )
    query = {
        "history": history,
        "seconds_since_last": DurationBuckets(8),
    }
    candidate = {
        ITEM: item,
        **{name: TextEmbedding(recipe.dim) for name in parts.text},
        **{
            name: MultiIdEmbedding(16, separator=parts.separator)
            for name in parts.multi
        },
    }
    model = build_retrieval_model(
        query,
        candidate,
        tf.data.Dataset.from_tensor_slices(parts.catalogue),
        candidate_id=ITEM,
        adapt_data=train,
        head_units=(recipe.dim,),
        l2_normalize=True,
        temperature=recipe.temperature,
        candidate_sampling_probability="probability",
    )
    model.compile(tf.keras.optimizers.Adam(recipe.learning_rate))
    return model


class Progress(tf.keras.callbacks.Callback):
    """One line per epoch: loss, validation metrics, seconds."""

    def __init__(self, label: str, epochs: int, say: Any) -> None:
        super().__init__()
        self.label, self.epochs, self.say = label, epochs, say
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        shown = [f"loss {logs.get('loss', float('nan')):.4f}"]
        shown += [
            f"validation hit@{key[8:]} {value:.4f}"
            for key, value in logs.items()
            if key.startswith("val_top_")
        ]
        seconds = time.perf_counter() - self._start
        self.say(
            f"    {self.label} epoch {epoch + 1}/{self.epochs}: "
            f"{', '.join(shown)} ({seconds:.1f} s)"
        )


def fit(
    model: Any,
    recipe: Recipe,
    train: tf.data.Dataset,
    epochs: int,
    seed: int,
    callbacks: list | None = None,
) -> dict:
    """Trains with in-batch negatives and the logQ correction."""
    data = with_sampling_probability(train, ITEM, "probability")
    prepared = model.prepare(
        data, batch_size=recipe.batch_size, shuffle=True, seed=seed
    )
    # Cached: lookups and tokenising once, the same shuffled batches each epoch.
    return model.fit(prepared.cache(), epochs=epochs, verbose=0, callbacks=callbacks)


def choose_epochs(
    recipe: Recipe,
    fitted: tf.data.Dataset,
    held_out: tf.data.Dataset,
    parts: Parts,
    seed: int,
    longest: int,
    say: Any,
) -> tuple[int, dict[str, list[float]]]:
    """Epochs at the best validation hit@100 (the test events are not read);
    returns them and the validation curves."""
    tf.keras.utils.set_random_seed(seed)
    model = build(recipe, fitted, parts)
    ks = validation_ks(parts)
    check = TopKValidation(
        held_out, ks=ks, exclude="history", batch_size=eval_batch_size(longest)
    )
    stop = tf.keras.callbacks.EarlyStopping(f"val_top_{ks[1]}", mode="max", patience=2)
    progress = Progress("validation run", recipe.max_epochs, say)
    history = fit(
        model, recipe, fitted, recipe.max_epochs, seed, [check, stop, progress]
    )
    curves = curves_of(history, ks)
    return int(np.argmax(curves["hit@100"])) + 1, curves


def validation_ks(parts: Parts) -> tuple[int, int]:
    """Validation's cut-offs, 10 and 100, at most the catalogue's size."""
    size = int(parts.catalogue[ITEM].size)
    return min(10, size), min(100, size)


def curves_of(history: Any, ks: tuple[int, int]) -> dict[str, list[float]]:
    """Validation metrics by epoch: ``hit@10``, ``hit@100`` and ``ndcg@10``."""
    logs = history.history
    curves = {
        f"hit@{nominal}": [float(v) for v in logs[f"val_top_{k}"]]
        for nominal, k in zip((10, 100), ks)
    }
    curves["ndcg@10"] = [float(v) for v in logs[f"val_ndcg_{ks[0]}"]]
    return curves


def train_members(
    recipe: Recipe,
    train: tf.data.Dataset,
    parts: Parts,
    epochs: int,
    seed: int,
    say: Any,
) -> Ensemble:
    """The recipe from ``recipe.members`` seeds (seed, seed + 100, ...),
    ensembled."""
    models = []
    for member in range(recipe.members):
        # 100 apart: runs with --seed 42, 43 and 44 share no member.
        member_seed = seed + MEMBER_SEED_STEP * member
        tf.keras.utils.set_random_seed(member_seed)
        model = build(recipe, train, parts)
        label = f"model {member + 1}/{recipe.members}"
        fit(model, recipe, train, epochs, member_seed, [Progress(label, epochs, say)])
        models.append(model)
    return Ensemble(models)
