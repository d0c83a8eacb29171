"""DurationBuckets: log-spaced buckets, "no previous event", extremes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf


def test_hand_computed_buckets():
    layer = cf.DurationBuckets(2, num_buckets=4, min_seconds=10, max_seconds=1000)
    np.testing.assert_allclose(layer.get_edges(), [10, 100, 1000])
    ids = layer.bucketize(tf.constant([-1, 0, 9, 10, 99, 100, 999, 1000, 10**15]))
    assert ids.numpy().tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=50))
def test_buckets_are_monotone_and_every_output_finite(durations):
    layer = cf.DurationBuckets(3)
    values = np.sort(np.asarray(durations, np.int64))
    ids = layer.bucketize(values).numpy()
    assert (np.diff(ids) >= 0).all() and ids.min() >= 1 and ids.max() <= 32
    assert np.isfinite(layer(values).numpy()).all()


def test_no_previous_event_has_its_own_row():
    layer = cf.DurationBuckets(4, embeddings_initializer="identity", num_buckets=3)
    out = layer(tf.constant([-1, 5, 10**9], tf.int64)).numpy()
    np.testing.assert_allclose(out[0], [1, 0, 0, 0])
    assert not np.allclose(out[1], out[0])


def test_float_durations_and_graph_mode_agree():
    layer = cf.DurationBuckets(2)
    eager = layer.bucketize(np.array([0.5, 3600.0, -1.0])).numpy()
    graph = tf.function(layer.bucketize)(tf.constant([0.5, 3600.0, -1.0])).numpy()
    assert eager.tolist() == graph.tolist()


def test_keras_round_trip(tmp_path, keras_roundtrip, functional):
    layer = cf.DurationBuckets(3, num_buckets=5, min_seconds=2, max_seconds=500)
    model = functional(layer, tf.int64)
    data = tf.constant([-1, 1, 30, 10**8], tf.int64)
    restored = keras_roundtrip(model, tmp_path / "d.keras")
    np.testing.assert_allclose(restored(data).numpy(), model(data).numpy())
    assert restored.layers[-1].get_config()["max_seconds"] == 500


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_buckets": 1}, "`num_buckets` must be >= 2"),
        ({"min_seconds": 0}, "0 < min_seconds < max_seconds"),
        ({"min_seconds": 10, "max_seconds": 5}, "0 < min_seconds < max_seconds"),
        ({"max_seconds": float("inf")}, "must be finite"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cf.DurationBuckets(4, **kwargs)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (np.array([np.nan]), ValueError, "durations contain NaN"),
        (np.array([-5], np.int64), ValueError, "or -1 for 'no previous event'"),
        (np.array(["5"]), TypeError, "received dtype string"),
    ],
)
def test_input_errors(value, error, match):
    layer = cf.DurationBuckets(2, name="gap")
    with pytest.raises(error, match=match) as info:
        layer(value)
    assert "'gap'" in str(info.value)
