"""HistoryEmbedding: window, recency, shared table, saving, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

VOCAB = ["a", "b", "c", "d"]


def one_hot_layer(**kwargs):
    """Row i of the table is the one-hot vector of id i (OOV row 0)."""
    return cf.HistoryEmbedding(
        5, vocabulary=VOCAB, embeddings_initializer="identity", **kwargs
    )


def test_mean_of_the_window_drops_padding_at_either_end():
    layer = one_hot_layer(window=2)
    out = layer(tf.constant([["", "a", "b", "c"], ["d", "", "", ""]])).numpy()
    # Row 0: b and c (the last two); row 1: only d.
    np.testing.assert_allclose(out, [[0, 0, 0.5, 0.5, 0], [0, 0, 0, 0, 1]])


def test_recency_weights_by_hand():
    layer = one_hot_layer(recency_decay=0.5, combiner="sum")
    out = layer(tf.ragged.constant([["a", "b", "c"]])).numpy()
    # c is the most recent (weight 1), b one step back (0.5), a two (0.25).
    np.testing.assert_allclose(out, [[0, 0.25, 0.5, 1.0, 0]])
    mean = one_hot_layer(recency_decay=0.5)(tf.ragged.constant([["a", "c"]]))
    np.testing.assert_allclose(mean.numpy(), [[0, 1 / 3, 0, 2 / 3, 0]], rtol=1e-6)


def test_empty_history_is_a_zero_vector_not_nan():
    for combiner in ("mean", "sum", "sqrtn"):
        layer = one_hot_layer(combiner=combiner, recency_decay=0.9)
        out = layer(tf.constant([["", ""]])).numpy()
        assert out.tolist() == [[0.0] * 5]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(VOCAB + ["zz"]), max_size=6), min_size=1),
    st.integers(1, 4),
)
def test_output_is_batch_by_dim_and_window_ignores_older_items(rows, window):
    layer = one_hot_layer(window=window, combiner="sum")
    out = layer(tf.ragged.constant(rows, dtype=tf.string)).numpy()
    assert out.shape == (len(rows), 5)
    recent = layer(tf.ragged.constant([r[-window:] for r in rows], tf.string))
    np.testing.assert_allclose(out, recent.numpy())


def test_shared_table_is_the_candidate_layers_and_trains_with_it():
    item = cf.IdEmbedding(3, name="title")
    item.adapt(np.array(["x", "y", "z"]))
    history = cf.HistoryEmbedding(item_embedding=item, window=5)
    assert history.output_dim == 3 and history.is_adapted
    out = history(tf.constant([["", "y"]]))
    np.testing.assert_allclose(out.numpy(), item(tf.constant(["y"])).numpy())
    assert history.trainable_weights[0] is item.trainable_weights[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(history(tf.constant([["x"]])))
    grad = tape.gradient(loss, item.trainable_weights[0])
    assert grad is not None


def test_shared_layer_needs_its_item_layer_adapted():
    item = cf.IdEmbedding(3, name="title")
    history = cf.HistoryEmbedding(item_embedding=item)
    assert not history.needs_adapt and not history.is_adapted
    with pytest.raises(ValueError, match="shared item layer 'title'"):
        history(tf.constant([["x"]]))


def test_own_vocabulary_adapts_on_histories():
    layer = cf.HistoryEmbedding(4)
    layer.adapt(tf.constant([["", "a", "b"], ["", "", "b"]]))
    assert layer.get_vocabulary() == ["b", "a"]


@pytest.mark.parametrize("shared", [False, True])
def test_keras_round_trip_with_non_default_arguments(tmp_path, shared, keras_roundtrip):
    tf.keras.utils.set_random_seed(2)
    if shared:
        item = cf.IdEmbedding(4, name="title")
        item.adapt(np.array(["a", "b", "é"]))
        layer = cf.HistoryEmbedding(
            item_embedding=item, window=3, recency_decay=0.7, combiner="sqrtn"
        )
    else:
        layer = cf.HistoryEmbedding(
            4, window=3, recency_decay=0.7, combiner="sqrtn", num_oov_indices=2
        )
        layer.adapt(np.array([["a", "b"], ["é", ""]]))
    inputs = tf.keras.Input(shape=(None,), dtype=tf.string)
    model = tf.keras.Model(inputs, layer(inputs))
    data = tf.constant([["", "a", "é", "b", "new"], ["", "", "", "", ""]])
    restored = keras_roundtrip(model, tmp_path / "h.keras")
    np.testing.assert_allclose(restored(data).numpy(), model(data).numpy())
    config = restored.layers[-1].get_config()
    assert config["window"] == 3 and config["recency_decay"] == 0.7
    assert ("item_embedding" in config) == shared


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "needs `embedding_dim`"),
        ({"embedding_dim": 4, "window": 0}, ValueError, "`window` must be >= 1"),
        (
            {"embedding_dim": 4, "recency_decay": 1.5},
            ValueError,
            "must be in \\(0, 1\\]",
        ),
        ({"embedding_dim": 4, "recency_decay": "x"}, TypeError, "must be a number"),
        ({"embedding_dim": 4, "combiner": "max"}, ValueError, "`combiner`"),
        ({"item_embedding": "title"}, TypeError, "candidate tower's IdEmbedding"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        cf.HistoryEmbedding(**kwargs)


def test_shared_argument_conflicts():
    item = cf.IdEmbedding(3)
    with pytest.raises(ValueError, match="differs from the shared"):
        cf.HistoryEmbedding(8, item_embedding=item)
    with pytest.raises(ValueError, match="remove \\['max_tokens'\\]"):
        cf.HistoryEmbedding(item_embedding=item, max_tokens=10)


@pytest.mark.parametrize(
    "value, error, match",
    [
        (tf.constant([[1, 2]], tf.int64), TypeError, "built for string ids"),
        (tf.constant([[1.0, 2.0]]), TypeError, "expects string or integer ids"),
        (tf.constant(["a", "b"]), ValueError, "shaped \\(batch, length\\)"),
    ],
)
def test_input_errors_name_the_layer(value, error, match):
    layer = one_hot_layer(name="recent")
    with pytest.raises(error, match=match) as info:
        layer(value)
    assert "'recent'" in str(info.value)
