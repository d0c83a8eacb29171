"""Long training jobs that survive being killed: exact resume at any batch.

Keras' ``BackupAndRestore`` restores the weights and the step counters after
a crash, but not the position of the input: resumed mid-epoch, it replays the
first batches of the epoch and never sees the rest. :func:`fit_resumable`
checkpoints the input iterator with the model and the optimizer, so a job
killed at any batch and started again with the same call continues with the
very next batch, and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ctxfeatures.layers._inputs import check_positive_int

__all__ = ["ParameterServerLost", "fit_parameter_servers", "fit_resumable"]


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


def _require_compiled(model: tf.keras.Model, owner: str, optimizer: str) -> None:
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"{owner}: compile the model first, e.g. "
            f"`model.compile(tf.keras.optimizers.{optimizer})`."
        )


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
    _require_compiled(model, "fit_resumable()", "Adam(0.01)")
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


class ParameterServerLost(RuntimeError):
    """A parameter server failed: its variables are gone, so training stops.

    Restart the parameter servers, then run the same job again:
    :func:`fit_parameter_servers` resumes from its last checkpoint.
    """


class _WorkerFailures(logging.Handler):
    """Counts the coordinator's "worker failed" reports during a fit."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Worker /job:worker") and " failed with " in message:
            self.count += 1


class _SaveSegments(tf.keras.callbacks.Callback):
    """Saves a checkpoint at the end of every segment (Keras "epoch")."""

    def __init__(self, manager: tf.train.CheckpointManager, step: tf.Variable):
        super().__init__()
        self.manager, self.step = manager, step

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.manager.save(checkpoint_number=int(self.step.numpy()))


def fit_parameter_servers(
    model: tf.keras.Model,
    dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset],
    *,
    epochs: int,
    steps_per_epoch: int,
    directory: str,
    save_every: int,
    max_to_keep: int = 2,
    verbose: int = 0,
) -> dict[str, Any]:
    """Trains under ``ParameterServerStrategy``, surviving lost workers.

    * A worker that dies is survived by TensorFlow's coordinator: the steps
      it was running go back in the queue, other workers run them, and
      training completes (a restarted worker rejoins).
    * A parameter server that dies takes its variables with it. The call
      then stops within seconds with :class:`ParameterServerLost`, whose
      message names the checkpoint to resume from. Restart the parameter
      servers and run the same job again: this function restores the last
      checkpoint (written every ``save_every`` steps) and continues, so at
      most ``save_every`` steps are trained twice.

    Keras' ``BackupAndRestore`` does neither under parameter servers (it
    saves nothing for a model built by its first step), which is why this
    function exists.

    Args:
        model: A compiled model whose variables were created under a
            ``tf.distribute.experimental.ParameterServerStrategy``.
        dataset_fn: ``dataset_fn(input_context)`` returning each worker's
            infinite (repeated) dataset of batches, as for
            ``tf.keras.utils.experimental.DatasetCreator``.
        epochs: Number of epochs of ``steps_per_epoch`` steps.
        steps_per_epoch: Steps per epoch; a multiple of ``save_every``.
        directory: Where checkpoints live; created if missing.
        save_every: Steps between checkpoints.
        max_to_keep: Checkpoints kept in ``directory``.
        verbose: Keras' ``fit`` verbosity.

    Returns:
        ``{"loss": [...], "resumed_from_step": int, "worker_failures": int}``:
        the mean loss of each epoch trained by this call, the step restored
        from a checkpoint (0 for a new job), and how many times a worker
        failed and its steps were given to another.

    Raises:
        RuntimeError: under Keras 3, which has no parameter-server training.
        ParameterServerLost: a parameter server failed during training.
        ValueError: no parameter-server strategy, an uncompiled model, or
            ``steps_per_epoch`` not a multiple of ``save_every``.
    """
    if not tf.keras.layers.Layer.__module__.startswith("tf_keras"):
        raise RuntimeError(
            "fit_parameter_servers() needs Keras 2 (tf-keras): Keras 3 has no "
            "ParameterServerStrategy or DatasetCreator support. Run the job "
            "with TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported, or "
            "train with MirroredStrategy / MultiWorkerMirroredStrategy."
        )
    epochs = check_positive_int(epochs, "epochs")
    steps_per_epoch = check_positive_int(steps_per_epoch, "steps_per_epoch")
    save_every = check_positive_int(save_every, "save_every")
    _check_parameter_servers(model, steps_per_epoch, save_every)
    os.makedirs(directory, exist_ok=True)
    step = model.optimizer.iterations
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
    resumed = int(step.numpy())
    segments = steps_per_epoch // save_every
    failures = _WorkerFailures()
    logger = tf.get_logger()
    logger.addHandler(failures)
    try:
        history = model.fit(
            tf.keras.utils.experimental.DatasetCreator(dataset_fn),
            epochs=epochs * segments,
            initial_epoch=resumed // save_every,
            steps_per_epoch=save_every,
            callbacks=[_SaveSegments(manager, step)],
            verbose=verbose,
        )
    except (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
    ) as error:
        if "/job:ps" not in str(error):
            raise
        raise ParameterServerLost(_lost_message(error, manager, directory)) from None
    finally:
        logger.removeHandler(failures)
    losses = history.history.get("loss", [])
    # Each epoch's mean over its segments (segments of equal size).
    first = (resumed // save_every) % segments
    per_epoch: list[list[float]] = []
    for index, loss in enumerate(losses):
        if not per_epoch or (first + index) % segments == 0:
            per_epoch.append([])
        per_epoch[-1].append(loss)
    return {
        "loss": [float(np.mean(values)) for values in per_epoch],
        "resumed_from_step": resumed,
        "worker_failures": failures.count,
    }


def _check_parameter_servers(
    model: tf.keras.Model, steps_per_epoch: int, save_every: int
) -> None:
    strategy = getattr(model, "distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        raise ValueError(
            "fit_parameter_servers(): the model's variables must be created "
            "under a tf.distribute.experimental.ParameterServerStrategy scope "
            "(e.g. `build_retrieval_model(..., strategy=strategy)`); for one "
            "process use fit_resumable()."
        )
    _require_compiled(model, "fit_parameter_servers()", "Adagrad(0.05)")
    if steps_per_epoch % save_every:
        raise ValueError(
            "fit_parameter_servers(): `steps_per_epoch` must be a multiple of "
            f"`save_every`. Received: steps_per_epoch={steps_per_epoch}, "
            f"save_every={save_every}"
        )


def _lost_message(
    error: Exception, manager: tf.train.CheckpointManager, directory: str
) -> str:
    task = re.search(r"/job:ps/replica:\d+/task:\d+", str(error))
    where = task.group(0) if task else None
    latest = manager.latest_checkpoint
    resume = (
        f"the last checkpoint, {latest}"
        if latest
        else f"the start (no checkpoint in '{directory}' yet)"
    )
    return (
        f"A parameter server failed ({where or 'a /job:ps task'}), and its "
        "variables were lost with it, so training cannot go on. Restart the "
        "parameter servers, then run this job again: fit_parameter_servers() "
        f"resumes from {resume}."
    )
