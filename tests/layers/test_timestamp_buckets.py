"""TimestampBuckets: boundaries, out-of-range times, dropout, monotone ids."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

DAY, WEEK = 86_400, 604_800


times = st.integers(min_value=0, max_value=4_000_000_000)


# ------------------------------------------------------------ NormalizedTimestamp


def test_uniform_boundaries_are_the_tutorial_linspace():
    layer = cf.TimestampBuckets(4, num_buckets=5, out_of_range="clip")
    data = np.array([1000, 1400, 2000], np.int64)
    layer.adapt(data)
    np.testing.assert_array_equal(layer.get_boundaries(), np.linspace(1000, 2000, 5))
    ids = layer.bucketize(tf.constant([0, 1000, 1249, 1250, 2000, 9999], tf.int64))
    # Clipped: before the range is the earliest time's bucket, after the latest's.
    assert ids.numpy().tolist() == [1, 1, 1, 2, 5, 5]


def test_out_of_range_times_are_a_zero_vector_by_default():
    layer = cf.TimestampBuckets(3, num_buckets=5, embeddings_initializer="ones")
    layer.adapt(np.array([1000, 1400, 2000], np.int64))
    assert layer.time_range == (1000.0, 2000.0)
    times = tf.constant([999, 1000, 2000, 2001], tf.int64)
    assert layer.bucketize(times).numpy().tolist() == [-1, 1, 5, -1]
    assert layer(times).numpy().sum(axis=1).tolist() == [0, 3, 3, 0]


def test_dropout_hides_the_time_in_training_only():
    layer = cf.TimestampBuckets(
        2, num_buckets=3, dropout=0.5, embeddings_initializer="ones"
    )
    layer.adapt(np.arange(1000, dtype=np.int64))
    times = tf.constant(np.arange(1000, dtype=np.int64))
    assert layer(times, training=False).numpy().min() == 1.0
    hidden = (layer(times, training=True).numpy().sum(axis=1) == 0).mean()
    assert 0.4 < hidden < 0.6


def test_explicit_boundaries_and_edge_buckets():
    layer = cf.TimestampBuckets(3, boundaries=[100, 200, 300])
    assert layer.is_adapted
    ids = layer.bucketize(tf.constant([0, 99, 100, 250, 300, 10**9], tf.int64))
    assert ids.numpy().tolist() == [0, 0, 1, 2, 3, 3]
    assert layer(tf.constant([5], tf.int64)).shape == (1, 3)


def test_quantile_buckets_have_equal_mass():
    data = np.random.default_rng(0).exponential(1e6, 20_000).astype(np.int64)
    data += 880_000_000
    layer = cf.TimestampBuckets(2, boundaries="quantile", num_buckets=4)
    layer.adapt(data)
    counts = np.bincount(layer.bucketize(data).numpy(), minlength=4)
    assert counts.size == 4
    np.testing.assert_allclose(counts / data.size, 0.25, atol=0.03)


def test_second_level_precision_near_epoch_1e9():
    layer = cf.TimestampBuckets(2, boundaries=[1_000_000_000])
    ids = layer.bucketize(tf.constant([999_999_999, 1_000_000_000], tf.int64))
    assert ids.numpy().tolist() == [0, 1]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(times, min_size=2, max_size=50),
    st.sampled_from(["uniform", "quantile"]),
    st.sampled_from(["zero", "clip"]),
)
def test_bucket_id_is_monotone_in_time(values, mode, out_of_range):
    values = sorted(values)
    if values[0] == values[-1]:
        values[-1] += 1
    layer = cf.TimestampBuckets(
        2, boundaries=mode, num_buckets=8, out_of_range=out_of_range
    )
    layer.adapt(np.asarray(values, np.int64))
    probe = np.asarray(sorted(values + [0, values[-1] + 10**6]), np.int64)
    ids = layer.bucketize(probe).numpy()
    inside = (probe >= values[0]) & (probe <= values[-1])
    assert (np.diff(ids[inside]) >= 0).all()
    assert ids[inside].min() >= 0 and ids.max() <= layer.num_boundaries
    if out_of_range == "zero":
        assert (ids[~inside] == -1).all()
    else:
        assert (np.diff(ids) >= 0).all()


# ------------------------------------------------------------ CyclicalTime
