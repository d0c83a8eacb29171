"""Distribution helpers of the retrieval model."""

from __future__ import annotations

import itertools

import tensorflow as tf

# Collective key ranges handed out to strategies, one per model (see below).
_KEY_BASES = itertools.count(1_000_000, 1_000_000)


def isolate_collectives(strategy: tf.distribute.Strategy) -> None:
    """Gives a MirroredStrategy collective keys no other strategy uses.

    Every MirroredStrategy numbers its collective ops from the same start, so
    a second strategy in one process reuses the first one's keys. Gradient
    all-reduces keep their shapes, but the candidates gathered across
    replicas change shape with the batch size, and TensorFlow then aborts
    every collective op for the rest of the process. A fresh key range per
    model avoids that (a no-op where TensorFlow's internals differ).
    """
    extended = strategy.extended
    if not isinstance(strategy, tf.distribute.MirroredStrategy) or not hasattr(
        extended, "_make_collective_ops_with_fallbacks"
    ):
        return
    default = extended._cross_device_ops is extended._collective_ops
    extended._collective_key_base = next(_KEY_BASES)
    extended._collective_ops = extended._make_collective_ops_with_fallbacks()
    if default:
        extended._cross_device_ops = extended._collective_ops
