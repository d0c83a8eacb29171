from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

DAY, WEEK = 86_400, 604_800
times = st.integers(min_value=0, max_value=4_000_000_000)


# ------------------------------------------------------------ NormalizedTimestamp
def test_normalized_by_hand():
    layer = cf.NormalizedTimestamp(clip=False)
    layer.adapt(np.array([0, 10, 20], np.int64))
    assert layer.mean == 10.0 and layer.variance == pytest.approx(200 / 3)
    out = layer(tf.constant([10, 20, 30], tf.int64)).numpy()
    np.testing.assert_allclose(out, [[0.0], [1.2247449], [2.4494898]], rtol=1e-6)
    assert out.dtype == np.float32


def test_normalized_clips_to_the_adapted_range_by_default():
    layer = cf.NormalizedTimestamp()
    layer.adapt(np.array([100, 110, 120], np.int64))
    assert layer.time_range == (100.0, 120.0)
    out = layer(tf.constant([0, 100, 120, 10**10], tf.int64)).numpy()[:, 0]
    np.testing.assert_allclose(out, [-1.2247449, -1.2247449, 1.2247449, 1.2247449])
    # One distinct time: every output is 0, never a huge z-score.
    single = cf.NormalizedTimestamp()
    single.adapt(np.array([5, 5], np.int64))
    assert single(tf.constant([5, 10**9], tf.int64)).numpy().tolist() == [[0], [0]]


@settings(max_examples=30, deadline=None)
@given(st.lists(times, min_size=1, max_size=30), st.lists(times, min_size=1))
def test_clipped_output_stays_within_the_adapted_outputs(adapted, served):
    layer = cf.NormalizedTimestamp()
    layer.adapt(np.asarray(adapted, np.int64))
    bounds = layer(np.asarray([min(adapted), max(adapted)], np.int64)).numpy()
    out = layer(np.asarray(served, np.int64)).numpy()
    assert np.isfinite(out).all()
    assert (out >= bounds.min() - 1e-6).all() and (out <= bounds.max() + 1e-6).all()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.integers(min_value=800_000_000, max_value=1_700_000_000),
        min_size=2,
        max_size=200,
    ).filter(lambda xs: len(set(xs)) > 1),
    st.integers(min_value=1, max_value=7),
)
def test_normalized_mean_zero_variance_one_for_any_batching(values, batch):
    layer = cf.NormalizedTimestamp()
    data = np.asarray(values, np.int64)
    layer.adapt(tf.data.Dataset.from_tensor_slices(data).batch(batch))
    out = layer(data).numpy()[:, 0].astype(np.float64)
    assert abs(out.mean()) < 1e-4
    assert out.var() == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------ TimestampBuckets
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
def test_cyclical_known_points():
    layer = cf.CyclicalTime(("hour_of_day", "day_of_week"))
    # 1970-01-05 00:00 UTC is a Monday: both phases are zero.
    monday = layer(tf.constant([4 * DAY], tf.int64)).numpy()[0]
    np.testing.assert_allclose(monday, [0, 1, 0, 1], atol=1e-7)
    six_am = layer(tf.constant([4 * DAY + 6 * 3600], tf.int64)).numpy()[0]
    np.testing.assert_allclose(six_am[:2], [1, 0], atol=1e-7)
    # UTC+6 makes 00:00 UTC local 06:00.
    local = cf.CyclicalTime(("hour_of_day",), utc_offset_hours=6)
    np.testing.assert_allclose(local(tf.constant([0])).numpy()[0], [1, 0], atol=1e-7)


@settings(max_examples=50, deadline=None)
@given(times)
def test_cyclical_periods_are_exact_and_on_the_unit_circle(t):
    layer = cf.CyclicalTime(("hour_of_day", "day_of_week", "day_of_year"))
    out = layer(tf.constant([t, t + DAY, t + WEEK], tf.int64)).numpy()
    np.testing.assert_allclose(out[0, :2], out[1, :2], atol=1e-6)
    np.testing.assert_allclose(out[0, 2:4], out[2, 2:4], atol=1e-6)
    radii = out.reshape(3, 3, 2) ** 2
    np.testing.assert_allclose(radii.sum(-1), 1.0, atol=1e-6)


# ------------------------------------------------------------ bad inputs
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
