"""Input checks shared by the timestamp layers (layers/_timestamps.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

DAY, WEEK = 86_400, 604_800


# ------------------------------------------------------------ NormalizedTimestamp


TIME_LAYERS = {
    "normalized": cf.NormalizedTimestamp,
    "buckets": lambda: cf.TimestampBuckets(2, boundaries=[1.0, 2.0]),
    "cyclical": cf.CyclicalTime,
}
BAD_TIMES = [
    ("string", lambda: tf.constant(["1"]), TypeError, "string.*to_number"),
    ("nan", lambda: tf.constant([1.0, math.nan]), ValueError, "NaN"),
    ("negative", lambda: tf.constant([-5], tf.int64), ValueError, "must be >= 0"),
    ("rank", lambda: tf.zeros([2, 3], tf.int64), ValueError, r"\(batch, 1\)"),
    ("inf", lambda: tf.constant([1.0, math.inf]), ValueError, "NaN or infinity"),
    (
        "milliseconds",
        lambda: tf.constant([1_700_000_000_000], tf.int64),
        ValueError,
        "Milliseconds\\? Divide by 1000",
    ),
    (
        "int64-max",
        lambda: tf.constant([2**63 - 1], tf.int64),
        ValueError,
        "the year 3000",
    ),
]


def adapted_time_layer(name):
    layer = TIME_LAYERS[name]()
    if layer.needs_adapt:
        layer.adapt(np.array([1, 2], np.int64))
    return layer


@pytest.mark.parametrize("name", sorted(TIME_LAYERS))
@pytest.mark.parametrize(
    "values, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in BAD_TIMES],
)
def test_bad_timestamp_inputs(name, values, error, match):
    with pytest.raises(error, match=match):
        adapted_time_layer(name)(values())


@pytest.mark.parametrize("name", sorted(TIME_LAYERS))
@pytest.mark.parametrize(
    "values, match",
    [
        pytest.param([-5.0], "must be >= 0", id="negative"),
        pytest.param([math.inf], "NaN or infinity", id="inf"),
        pytest.param([1.7e12], "the year 3000", id="milliseconds"),
    ],
)
def test_graph_mode_applies_the_same_rule(name, values, match):
    layer = adapted_time_layer(name)

    @tf.function
    def graph(x):
        return layer(x)

    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        graph(tf.constant(values, tf.float64))


TIME_ERRORS = [
    (
        "mode",
        lambda: cf.TimestampBuckets(2, boundaries="log"),
        ValueError,
        "`boundaries` must be one of",
    ),
    (
        "unsorted",
        lambda: cf.TimestampBuckets(2, boundaries=[3, 1]),
        ValueError,
        "strictly increasing",
    ),
    (
        "num-buckets",
        lambda: cf.TimestampBuckets(2, num_buckets=1),
        ValueError,
        "`num_buckets` must be >= 2",
    ),
    ("dim", lambda: cf.TimestampBuckets(0), ValueError, "`embedding_dim` must be >= 1"),
    (
        "out-of-range",
        lambda: cf.TimestampBuckets(2, out_of_range="nearest"),
        ValueError,
        "`out_of_range` must be one of",
    ),
    (
        "dropout",
        lambda: cf.TimestampBuckets(2, dropout=1.0),
        ValueError,
        "`dropout` must be in \\[0, 1\\)",
    ),
    (
        "clip",
        lambda: cf.NormalizedTimestamp(clip="yes"),
        TypeError,
        "`clip` must be True or False",
    ),
    ("components", lambda: cf.CyclicalTime(("minute",)), ValueError, "`components`"),
    (
        "offset",
        lambda: cf.CyclicalTime(utc_offset_hours=30),
        ValueError,
        "utc_offset_hours",
    ),
    (
        "not-adapted",
        lambda: cf.TimestampBuckets(2)(tf.constant([1], tf.int64)),
        ValueError,
        "not adapted",
    ),
    (
        "empty-adapt",
        lambda: cf.NormalizedTimestamp().adapt(np.array([], np.int64)),
        ValueError,
        "received no data",
    ),
    (
        "one-time",
        lambda: cf.TimestampBuckets(2).adapt(np.array([5, 5], np.int64)),
        ValueError,
        "uniform boundaries are undefined",
    ),
    (
        "nan-adapt",
        lambda: cf.NormalizedTimestamp().adapt(np.array([1.0, np.nan])),
        ValueError,
        "NaN",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*case[1:], id=case[0]) for case in TIME_ERRORS]
)
def test_bad_timestamp_arguments_and_adapt(call, error, match):
    with pytest.raises(error, match=match):
        call()


def four_paths(layer, tmp_path):
    """Eager, graph, tf.data (preprocess) and a reloaded SavedModel."""
    module = tf.Module()
    module.layer = layer
    module.serve = tf.function(
        lambda times: layer(times), input_signature=[tf.TensorSpec([None], tf.float64)]
    )
    tf.saved_model.save(module, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served")).serve

    def data(values):
        return next(iter(tf.data.Dataset.from_tensors(values).map(layer.preprocess)))

    return {
        "eager": layer,
        "graph": tf.function(lambda values: layer(values)),
        "tf.data": data,
        "saved": served,
    }


@pytest.mark.parametrize(
    "values, match",
    [
        pytest.param([-5.0], "must be >= 0", id="negative"),
        pytest.param([math.nan], "NaN or infinity", id="nan"),
        pytest.param([1.7e12], "the year 3000", id="milliseconds"),
    ],
)
def test_every_path_applies_the_same_rule(tmp_path, values, match):
    layer = adapted_time_layer("normalized")
    for path, call in four_paths(layer, tmp_path).items():
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=match):
            call(tf.constant(values, tf.float64))
