"""The model base and retrieval task of RetrievalModel, for the process's Keras.

Keras 2: ``tfrs.models.Model`` and :class:`~ctxfeatures.task.InBatchRetrieval`,
as before. Keras 3, where TFRS cannot run: :class:`KerasSteps`, TFRS' train
and test steps written for Keras 3, and
:class:`~ctxfeatures.retrieval_task.RetrievalTask`, the same loss without TFRS.
"""

from __future__ import annotations

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
    included: the towers are built when the model is made. Multi-worker
    training is refused for now, with the way to run it (Keras 2).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise NotImplementedError(
                "Under Keras 3, RetrievalModel trains on one machine for now "
                "(one device or MirroredStrategy): MultiWorkerMirroredStrategy "
                "needs Keras 2. Set TF_USE_LEGACY_KERAS=1 before TensorFlow is "
                "imported."
            )
        super().__init__(*args, **kwargs)

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
