"""The sequence recipe: one causal-attention model trained on users' sequences.

Where the per-event recipe trains one example per event and ensembles
models, this one trains a single :class:`~ctxfeatures.SequenceRetrievalModel`
with :class:`~ctxfeatures.CausalAttentionHistory` on rows of each user's
consecutive events, every position's next item scored by cosine similarity
against the batch's other targets (in-batch negatives with the logQ
correction, as the per-event recipe) or, with ``negatives="catalogue"``,
against the whole catalogue (SASRec+'s loss). Its epochs are chosen on the
same validation events, by early stopping on validation NDCG@10 (hit@10
saturates on small catalogues; NDCG@10 also says where in the ten).

The defaults were chosen on MovieLens 100K's validation events (seed 42,
the test unread): in-batch negatives with logQ and cosine / 0.2 on rows of
10 targets reached validation NDCG@10 0.096, against 0.088 for SASRec+'s
catalogue softmax on rows of 50 (0.089 with cosine, 0.090 on rows of 10).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.callbacks import TopKValidation
from ctxfeatures.layers import (
    CausalAttentionHistory,
    DurationBuckets,
    IdEmbedding,
    MultiIdEmbedding,
    TextEmbedding,
)
from ctxfeatures.layers._inputs import check_choice
from ctxfeatures.layers.causal_attention_history import BLOCKS
from ctxfeatures.recipe._io import ITEM, TIME, USER
from ctxfeatures.recipe._train import Parts, Progress, curves_of, validation_ks
from ctxfeatures.sequence_model import SequenceRetrievalModel
from ctxfeatures.sequences import IS_TARGET, to_sequences
from ctxfeatures.tower import Tower, adapt_towers

NEGATIVES = ("catalogue", "in-batch")
PROBABILITY = "probability"


@dataclasses.dataclass(frozen=True)
class SequenceRecipe:
    """One causal-attention model trained on sequences (see
    :doc:`/sequences`).

    Attributes:
        dim: Width of the item table, the encoder and both towers' output.
        window: Most recent history items each attention block reads.
        num_blocks: Causal attention blocks.
        dropout: Dropout of the attention blocks, while training.
        block: The blocks' wiring, ``"pre-norm"`` or SASRec's ``"sasrec"``
            (:class:`~ctxfeatures.CausalAttentionHistory`).
        heads: A dense layer on each tower. ``False`` builds SASRec's
            towers: the query is the encoder's output alone (no time
            feature) and items are scored by their own vectors, the table
            the encoder reads; a catalogue with item features keeps the
            candidate's head, which reads them.
        temperature: Softmax temperature of the similarity.
        l2_normalize: Cosine similarity (both towers L2-normalised) instead
            of the dot product.
        negatives: ``"catalogue"`` (a softmax over every item, SASRec+'s
            loss) or ``"in-batch"`` (the batch's other targets, with the
            logQ correction and accidental hits removed).
        learning_rate: Adam's learning rate.
        length: Target positions per row of a user's events.
        batch_targets: About this many target positions per batch (rows per
            batch follow from the mean targets per row).
        max_epochs: Epochs at most; early stopping on validation NDCG@10
            picks fewer.
        patience: Epochs without a better validation NDCG@10 before stopping.
    """

    dim: int = 64
    window: int = 20
    num_blocks: int = 2
    dropout: float = 0.1
    block: str = "pre-norm"
    heads: bool = True
    temperature: float = 0.2
    l2_normalize: bool = True
    negatives: str = "in-batch"
    learning_rate: float = 1e-3
    length: int = 10
    batch_targets: int = 1000
    max_epochs: int = 40
    patience: int = 3

    def __post_init__(self) -> None:
        for name in ("dim", "window", "num_blocks", "length", "batch_targets"):
            _positive(name, getattr(self, name))
        _positive("max_epochs", self.max_epochs)
        _positive("patience", self.patience)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={self.dropout}"
            )
        for name in ("l2_normalize", "heads"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"`{name}` must be True or False. Received: "
                    f"{name}={getattr(self, name)!r}"
                )
        check_choice(self.negatives, "negatives", NEGATIVES)
        check_choice(self.block, "block", BLOCKS)
        for name in ("temperature", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"`{name}` must be > 0. Received: {name}={getattr(self, name)}"
                )


def item_frequency(items: np.ndarray) -> np.ndarray:
    """Each event's item's share of the events: in-batch sampling's
    probability, for the logQ correction."""
    _, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    return (counts[inverse] / items.size).astype(np.float32)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be an integer >= 1. Received: {name}={value!r}"
        )


def build_sequence_model(
    recipe: SequenceRecipe, parts: Parts
) -> SequenceRetrievalModel:
    """The recipe's towers in a compiled model; the item features adapt on
    the catalogue (the query's layers need no statistics)."""
    items = IdEmbedding(recipe.dim, vocabulary=parts.catalogue[ITEM])
    history = CausalAttentionHistory(
        item_embedding=items,
        window=recipe.window,
        num_blocks=recipe.num_blocks,
        dropout=recipe.dropout,
        block=recipe.block,
    )
    query_features: dict[str, Any] = {"history": history}
    if recipe.heads:
        query_features["seconds_since_last"] = DurationBuckets(8)
    item_features = {
        **{name: TextEmbedding(recipe.dim) for name in parts.text},
        **{
            name: MultiIdEmbedding(16, separator=parts.separator)
            for name in parts.multi
        },
    }
    query = Tower(
        query_features,
        head_units=(recipe.dim,) if recipe.heads else (),
        l2_normalize=recipe.l2_normalize,
        name="query",
    )
    candidate = Tower(
        {ITEM: items, **item_features},
        # Item features need the head to meet the query's width.
        head_units=(recipe.dim,) if recipe.heads or item_features else (),
        l2_normalize=recipe.l2_normalize,
        name="candidate",
    )
    adapt_towers(tf.data.Dataset.from_tensor_slices(parts.catalogue), candidate)
    sampled = recipe.negatives == "in-batch"
    model = SequenceRetrievalModel(
        query,
        candidate,
        parts.catalogue,
        ITEM,
        time=TIME,
        temperature=recipe.temperature,
        negatives=recipe.negatives,
        # A batch of rows repeats items: a target's own item is no negative.
        remove_accidental_hits=sampled,
        candidate_sampling_probability=PROBABILITY if sampled else None,
    )
    model.compile(tf.keras.optimizers.Adam(recipe.learning_rate))
    return model


def sequence_rows(
    recipe: SequenceRecipe,
    model: SequenceRetrievalModel,
    events: dict[str, np.ndarray],
    seed: int,
) -> tf.data.Dataset:
    """``events`` as prepared batches of rows, drawn afresh each epoch."""
    if recipe.negatives == "in-batch":
        events = {**events, PROBABILITY: item_frequency(events[ITEM])}
    rows = to_sequences(
        events,
        user=USER,
        item=ITEM,
        time=TIME,
        length=recipe.length,
        context=recipe.window,
    )
    targets_per_row = rows[IS_TARGET].sum() / max(1, rows[IS_TARGET].shape[0])
    batch = max(1, round(recipe.batch_targets / max(1.0, targets_per_row)))
    # Not cached: each epoch reshuffles the rows into new batches (from the
    # seed, so runs repeat), as SASRec's training loop does. The same batches
    # every epoch (cached) learned more slowly and peaked lower on Amazon
    # Sports' validation events; the lookups are cheap beside the step.
    return model.prepare(rows, batch_size=batch, shuffle=True, seed=seed)


def choose_sequence_epochs(
    recipe: SequenceRecipe,
    events: dict[str, np.ndarray],
    held_out: tf.data.Dataset,
    parts: Parts,
    seed: int,
    eval_batch: int,
    say: Any,
) -> tuple[int, dict[str, list[float]]]:
    """Epochs at the best validation NDCG@10 of a model trained on ``events``
    (never the test events); returns them and the validation curves."""
    tf.keras.utils.set_random_seed(seed)
    model = build_sequence_model(recipe, parts)
    ks = validation_ks(parts)
    check = TopKValidation(held_out, ks=ks, exclude="history", batch_size=eval_batch)
    stop = tf.keras.callbacks.EarlyStopping(
        f"val_ndcg_{ks[0]}", mode="max", patience=recipe.patience
    )
    progress = Progress("validation run", recipe.max_epochs, say)
    history = model.fit(
        sequence_rows(recipe, model, events, seed),
        epochs=recipe.max_epochs,
        verbose=0,
        callbacks=[check, stop, progress],
    )
    curves = curves_of(history, ks)
    return int(np.argmax(curves["ndcg@10"])) + 1, curves


def train_sequence(
    recipe: SequenceRecipe,
    events: dict[str, np.ndarray],
    parts: Parts,
    epochs: int,
    seed: int,
    say: Any,
) -> SequenceRetrievalModel:
    """The recipe trained on ``events`` for ``epochs``."""
    tf.keras.utils.set_random_seed(seed)
    model = build_sequence_model(recipe, parts)
    model.fit(
        sequence_rows(recipe, model, events, seed),
        epochs=epochs,
        verbose=0,
        callbacks=[Progress("model", epochs, say)],
    )
    return model
