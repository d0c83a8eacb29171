"""Every public layer: config, .keras and SavedModel round trips, shapes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

TIMES = np.array([880_000_000, 880_500_000, 881_000_000, 889_000_000], np.int64)
WORDS = np.array(["Toy Story (1995)", "Heat (1995)", "Les Misérables", ""])


def cases():
    """(name, factory, adapt data, call data, dtype) with non-default arguments."""
    return [
        (
            "ids",
            lambda: cf.IdEmbedding(
                5, min_frequency=1, num_oov_indices=2, max_tokens=10, name="uid"
            ),
            np.array(["a", "b\nnewline", "é"]),
            tf.constant(["a", "b\nnewline", "é", "new"]),
            tf.string,
        ),
        (
            "int_ids",
            lambda: cf.IdEmbedding(3, id_dtype="int64", vocabulary=[7, 8, 9]),
            None,
            tf.constant([7, 9, 1], tf.int64),
            tf.int64,
        ),
        (
            "hashed",
            lambda: cf.IdEmbedding(3, num_hash_bins=32),
            None,
            tf.constant(["p", "q"]),
            tf.string,
        ),
        (
            "multi",
            lambda: cf.MultiIdEmbedding(4, combiner="sqrtn", separator=";"),
            np.array(["a;b", "b", ""]),
            tf.constant(["a;b", "", "b;zz"]),
            tf.string,
        ),
        (
            "normalized",
            lambda: cf.NormalizedTimestamp(name="t_norm"),
            TIMES,
            tf.constant(TIMES),
            tf.int64,
        ),
        (
            "normalized_unclipped",
            lambda: cf.NormalizedTimestamp(clip=False),
            TIMES,
            tf.constant(np.append(TIMES, 990_000_000)),
            tf.int64,
        ),
        (
            "uniform_clipped",
            lambda: cf.TimestampBuckets(
                3, num_buckets=4, out_of_range="clip", dropout=0.25
            ),
            TIMES,
            tf.constant(np.append(TIMES, [0, 990_000_000])),
            tf.int64,
        ),
        (
            "durations",
            lambda: cf.DurationBuckets(
                3, num_buckets=6, min_seconds=30, max_seconds=86_400, name="gap"
            ),
            None,
            tf.constant([-1, 0, 45, 10**6], tf.int64),
            tf.int64,
        ),
        (
            "uniform",
            lambda: cf.TimestampBuckets(6, num_buckets=7),
            TIMES,
            tf.constant(np.append(TIMES, 990_000_000)),
            tf.int64,
        ),
        (
            "quantile",
            lambda: cf.TimestampBuckets(6, boundaries="quantile", num_buckets=3),
            TIMES,
            tf.constant(TIMES),
            tf.int64,
        ),
        (
            "explicit",
            lambda: cf.TimestampBuckets(3, boundaries=[880_400_000, 885_000_000]),
            None,
            tf.constant(TIMES),
            tf.int64,
        ),
        (
            "cyclical",
            lambda: cf.CyclicalTime(
                ("day_of_year", "hour_of_day"), utc_offset_hours=-5.5
            ),
            None,
            tf.constant(TIMES),
            tf.int64,
        ),
        (
            "text",
            lambda: cf.TextEmbedding(
                4, max_tokens=20, standardize="lower", ngrams=2, name="title"
            ),
            WORDS,
            tf.constant(WORDS),
            tf.string,
        ),
    ]


IDS = [case[0] for case in cases()]


def adapted(case):
    _, factory, data, _, _ = case
    layer = factory()
    if data is not None:
        layer.adapt(data)
    return layer


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_config_round_trip_is_exact(case):
    layer = adapted(case)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_symbolic_call_has_static_shape(case):
    layer = adapted(case)
    inputs = tf.keras.Input(shape=(), dtype=case[4])
    assert tuple(layer(inputs).shape) == (None, layer.output_dim)


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_keras_archive_round_trip_is_bit_identical(
    case, tmp_path, keras_roundtrip, functional
):
    layer = adapted(case)
    model = functional(layer, case[4])
    before = model(case[3]).numpy()
    restored = keras_roundtrip(model, tmp_path / "model.keras")
    np.testing.assert_array_equal(restored(case[3]).numpy(), before)
    inner = restored.layers[-1]
    assert type(inner) is type(layer) and inner.is_adapted


def test_vocabulary_travels_inside_the_archive(tmp_path, functional):
    source = tmp_path / "ids.txt"
    source.write_text("alice\nbob\nbob\n")
    layer = cf.IdEmbedding(4)
    layer.adapt(np.array(source.read_text().split()))
    model = functional(layer, tf.string)
    probe = tf.constant(["bob", "alice", "carol"])
    before = model(probe).numpy()
    model.save(str(tmp_path / "m.keras"))
    os.remove(source)
    restored = tf.keras.models.load_model(str(tmp_path / "m.keras"), safe_mode=True)
    np.testing.assert_array_equal(restored(probe).numpy(), before)
    assert restored.layers[-1].get_vocabulary() == ["bob", "alice"]


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_saved_model_serves_raw_inputs(case, tmp_path, functional):
    layer = adapted(case)
    model = functional(layer, case[4])
    before = model(case[3]).numpy()
    signature = tf.function(
        lambda x: {"out": model(x)},
        input_signature=[tf.TensorSpec([None], case[4])],
    )
    tf.saved_model.save(model, str(tmp_path), signatures={"serving_default": signature})
    served = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    # A graph may fuse float ops differently from eager: allow 1-ulp noise.
    np.testing.assert_allclose(served(case[3])["out"].numpy(), before, rtol=1e-6)


@pytest.mark.parametrize("case", cases(), ids=IDS)
@settings(max_examples=6, deadline=None)
@given(batch=st.integers(min_value=1, max_value=9))
def test_output_is_batch_by_dim_for_any_batch(case, batch):
    layer = adapted(case)
    values = case[3]
    picked = tf.gather(values, np.arange(batch) % int(values.shape[0]))
    out = layer(picked)
    assert out.shape == (batch, layer.output_dim)
    assert out.dtype == tf.float32
