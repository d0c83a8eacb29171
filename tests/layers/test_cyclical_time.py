"""CyclicalTime: known points, exact periods, the unit circle."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

DAY, WEEK = 86_400, 604_800


times = st.integers(min_value=0, max_value=4_000_000_000)


# ------------------------------------------------------------ NormalizedTimestamp


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
