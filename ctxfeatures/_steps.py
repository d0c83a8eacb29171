"""The model base and retrieval task of RetrievalModel, for the process's Keras.

Keras 2: ``tfrs.models.Model`` and :class:`~ctxfeatures.task.InBatchRetrieval`,
as before. Keras 3, where TFRS cannot run: :class:`KerasSteps`, TFRS' train
and test steps written for Keras 3, and
:class:`~ctxfeatures.retrieval_task.RetrievalTask`, the same loss without TFRS.
"""

from __future__ import annotations

import contextlib
from typing import Any

import tensorflow as tf

from ctxfeatures.layers._base import reapply_states
from ctxfeatures.retrieval_task import RetrievalTask

KERAS3 = not tf.keras.layers.Layer.__module__.startswith("tf_keras")


class KerasSteps(tf.keras.Model):
    """``tfrs.models.Model``'s steps for Keras 3: ``compute_loss`` of a batch,
    plus the layers' regularisation losses, minimised by the optimizer.

    Under a ``tf.distribute`` strategy the model skips Keras 3's symbolic
    build, which would average the first batch across replicas, string ids
    included: the towers are built when the model is made. An optimizer made
    outside the strategy's scope, which Keras 2 accepts, is made again inside
    it (Keras 3 would fail at the first step, mixing two strategies).
    """

    def compile(self, optimizer: Any = "rmsprop", *args: Any, **kwargs: Any) -> None:
        strategy = self._distribute_strategy
        optimizer = _in_scope(optimizer, strategy)
        with strategy.scope() if strategy else contextlib.nullcontext():
            super().compile(optimizer, *args, **kwargs)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        # Keras 3 warns on every fit of a dataset that its default
        # shuffle=True is ignored: a dataset shuffles itself (prepare()).
        if isinstance(x, tf.data.Dataset) and not args:
            kwargs.setdefault("shuffle", False)
        return super().fit(x, y, *args, **kwargs)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None):
        return None

    def train_step(self, inputs: Any) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization = _regularization(self.losses)
            total = loss + regularization
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return _logs(loss, regularization)

    def test_step(self, inputs: Any) -> dict[str, tf.Tensor]:
        loss = self.compute_loss(inputs, training=False)
        return _logs(loss, _regularization(self.losses))

    def set_weights(self, weights: Any) -> None:
        super().set_weights(weights)
        reapply_states(self)


def _in_scope(optimizer: Any, strategy: Any) -> Any:
    """``optimizer``, or a fresh copy of it made under ``strategy``."""
    if strategy is None or not isinstance(optimizer, tf.keras.optimizers.Optimizer):
        return optimizer  # a name: Keras makes it under the model's strategy
    if getattr(optimizer, "_distribution_strategy", strategy) is strategy:
        return optimizer
    if optimizer.built:
        raise ValueError(
            "`optimizer` was made and used outside the model's distribution "
            "strategy: make it inside `strategy.scope()`, or pass an unused "
            f"one. Received: optimizer={type(optimizer).__name__} with "
            f"{optimizer.iterations.numpy()} steps taken"
        )
    with strategy.scope():  # an unused optimizer: its config is all it has
        return type(optimizer).from_config(optimizer.get_config())


def replica_logs(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A step's logs, shaped for Keras 3's multi-worker reduction.

    Keras 3 reduces each log of a MultiWorkerMirroredStrategy step with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on a scalar; the
    logs are the same on every replica, so one-element vectors reduce to them.
    """
    strategy = tf.distribute.get_strategy()
    if not (KERAS3 and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def _regularization(losses: list[tf.Tensor]) -> tf.Tensor:
    return tf.add_n(losses) if losses else tf.constant(0.0)


def _logs(loss: tf.Tensor, regularization: tf.Tensor) -> dict[str, tf.Tensor]:
    return {
        "loss": loss,
        "regularization_loss": regularization,
        "total_loss": loss + regularization,
    }


def _tfrs_classes() -> tuple[type, type]:
    from ctxfeatures._tfrs import tfrs
    from ctxfeatures.task import InBatchRetrieval

    return tfrs.models.Model, InBatchRetrieval


ModelBase, Task = (KerasSteps, RetrievalTask) if KERAS3 else _tfrs_classes()
