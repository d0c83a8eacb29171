"""NormalizedTimestamp: hand-computed values, clipping, moments for any batching."""

from __future__ import annotations

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


def test_one_distinct_time_unclipped_is_refused_and_keeps_the_previous_state():
    layer = cf.NormalizedTimestamp(clip=False, name="time")
    layer.adapt(np.array([0, 10, 20], np.int64))
    before = layer(tf.constant([20], tf.int64)).numpy()
    with pytest.raises(ValueError, match="'time': every adapted timestamp equals 5"):
        layer.adapt(np.array([5, 5], np.int64))
    # Nothing half-changed: the layer still holds its earlier statistics.
    assert (layer.mean, layer.time_range) == (10.0, (0.0, 20.0))
    np.testing.assert_array_equal(layer(tf.constant([20], tf.int64)).numpy(), before)
