"""Long training jobs that survive being killed: exact resume at any batch.

Keras' ``BackupAndRestore`` restores the weights and the step counters after
a crash, but not the position of the input: resumed mid-epoch, it replays the
first batches of the epoch and never sees the rest. :func:`fit_resumable`
checkpoints the input iterator with the model and the optimizer, so a job
killed at any batch and started again with the same call continues with the
very next batch, and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import check_positive_int

__all__ = ["fit_resumable"]


def _steps_per_epoch(data: tf.data.Dataset) -> int:
    steps = int(data.cardinality())
    if steps == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "fit_resumable(): the dataset repeats forever; pass one epoch of "
            "batches (it is repeated `epochs` times)."
        )
    if steps < 0:
        steps = int(data.reduce(0, lambda count, _: count + 1))
    if steps == 0:
        raise ValueError("fit_resumable(): the dataset is empty.")
    return steps


def fit_resumable(
    model: tf.keras.Model,
    data: tf.data.Dataset,
    *,
    epochs: int,
    directory: str,
    save_every: int = 100,
    max_to_keep: int = 2,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, list[float]]:
    """Trains ``model`` on ``data`` for ``epochs``, resumable after a kill.

    Every ``save_every`` steps (and at the end) a checkpoint in ``directory``
    records the model's variables, the optimizer's and the input iterator's
    position, including a shuffle buffer's state. Calling the function again
    with the same arguments after the process died restores all three and
    continues at the next batch; once done, it returns at once.

    The input must be deterministic for the resumed run to equal an
    uninterrupted one: seed any ``shuffle`` (``shuffle(n, seed=...)``), and
    keep stateful random ops (e.g. ``TimestampBuckets(dropout=...)``) out of
    the model or accept that they draw other numbers after a resume.

    Args:
        model: A compiled model (e.g. a :class:`~ctxfeatures.RetrievalModel`).
        data: One epoch of batches; it is repeated ``epochs`` times.
        epochs: Number of passes over ``data``.
        directory: Where checkpoints live; created if missing.
        save_every: Steps between checkpoints.
        max_to_keep: Checkpoints kept in ``directory``.
        on_step: Optional ``on_step(step, logs)`` called after each step
            (1-based over the whole run), e.g. to log progress.

    Returns:
        ``{"loss": [...]}``: the mean training loss of each epoch run by this
        call (epochs finished before a resume are not repeated).

    Raises:
        ValueError: an uncompiled model, an empty or infinite dataset, or
            ``epochs`` / ``save_every`` below 1.

    Example:
        See :doc:`/training` for a job that is killed and resumed.
    """
    epochs = check_positive_int(epochs, "epochs")
    save_every = check_positive_int(save_every, "save_every")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "fit_resumable(): compile the model first, e.g. "
            "`model.compile(tf.keras.optimizers.Adam(0.01))`."
        )
    steps = _steps_per_epoch(data)
    os.makedirs(directory, exist_ok=True)
    iterator = iter(data.repeat(epochs))
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=model.optimizer, iterator=iterator, step=step
    )
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    train_step = tf.function(model.train_step)
    losses: dict[int, list[float]] = {}
    while int(step) < epochs * steps:
        logs = train_step(next(iterator))
        step.assign_add(1)
        epoch = (int(step) - 1) // steps
        losses.setdefault(epoch, []).append(float(logs["loss"]))
        if int(step) % save_every == 0:
            manager.save(checkpoint_number=int(step))
        if on_step is not None:
            on_step(int(step), logs)
    if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(
        f"-{int(step)}"
    ):
        manager.save(checkpoint_number=int(step))
    return {"loss": [float(np.mean(v)) for _, v in sorted(losses.items())]}
