"""Input checks shared by the timestamp layers (layers/_timestamps.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

DAY, WEEK = 86_400, 604_800


# ------------------------------------------------------------ NormalizedTimestamp


@pytest.mark.parametrize(
    "factory",
    [
        cf.NormalizedTimestamp,
        lambda: cf.TimestampBuckets(2, boundaries=[1.0, 2.0]),
        cf.CyclicalTime,
    ],
)
def test_bad_timestamp_inputs(factory):
    layer = factory()
    if layer.needs_adapt:
        layer.adapt(np.array([1, 2], np.int64))
    with pytest.raises(TypeError, match="string.*to_number"):
        layer(tf.constant(["1"]))
    with pytest.raises(ValueError, match="NaN"):
        layer(tf.constant([1.0, math.nan]))
    with pytest.raises(ValueError, match="must be >= 0"):
        layer(tf.constant([-5], tf.int64))
    with pytest.raises(ValueError, match=r"\(batch, 1\)"):
        layer(tf.zeros([2, 3], tf.int64))

    @tf.function
    def graph(x):
        return layer(x)

    with pytest.raises(tf.errors.InvalidArgumentError, match="must be >= 0"):
        graph(tf.constant([-5], tf.int64))


def test_bad_timestamp_arguments_and_adapt():
    with pytest.raises(ValueError, match="`boundaries` must be one of"):
        cf.TimestampBuckets(2, boundaries="log")
    with pytest.raises(ValueError, match="strictly increasing"):
        cf.TimestampBuckets(2, boundaries=[3, 1])
    with pytest.raises(ValueError, match="`num_buckets` must be >= 2"):
        cf.TimestampBuckets(2, num_buckets=1)
    with pytest.raises(ValueError, match="`embedding_dim` must be >= 1"):
        cf.TimestampBuckets(0)
    with pytest.raises(ValueError, match="`out_of_range` must be one of"):
        cf.TimestampBuckets(2, out_of_range="nearest")
    with pytest.raises(ValueError, match="`dropout` must be in \\[0, 1\\)"):
        cf.TimestampBuckets(2, dropout=1.0)
    with pytest.raises(TypeError, match="`clip` must be True or False"):
        cf.NormalizedTimestamp(clip="yes")
    with pytest.raises(ValueError, match="`components`"):
        cf.CyclicalTime(("minute",))
    with pytest.raises(ValueError, match="utc_offset_hours"):
        cf.CyclicalTime(utc_offset_hours=30)
    with pytest.raises(ValueError, match="not adapted"):
        cf.TimestampBuckets(2)(tf.constant([1], tf.int64))
    with pytest.raises(ValueError, match="received no data"):
        cf.NormalizedTimestamp().adapt(np.array([], np.int64))
    with pytest.raises(ValueError, match="uniform boundaries are undefined"):
        cf.TimestampBuckets(2).adapt(np.array([5, 5], np.int64))
    with pytest.raises(ValueError, match="NaN"):
        cf.NormalizedTimestamp().adapt(np.array([1.0, np.nan]))
