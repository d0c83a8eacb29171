"""The embedding block: one set of options for every embedding layer, pooling."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

TIMES = np.array([100, 200, 300, 400], np.int64)


def embedding_layers(**options):
    """Every embedding layer, adapted, with the same table options."""
    item = cf.IdEmbedding(3, **options)
    item.adapt(np.array(["a", "b"]))
    layers = [
        (item, tf.constant(["a", "b"])),
        (cf.MultiIdEmbedding(3, **options), tf.constant(["a|b", "b"])),
        (cf.HistoryEmbedding(3, **options), tf.constant([["a", ""], ["b", "a"]])),
        (cf.TextEmbedding(3, **options), tf.constant(["a b", "b"])),
        (cf.TimestampBuckets(3, num_buckets=3, **options), tf.constant(TIMES[:2])),
        (cf.DurationBuckets(3, **options), tf.constant([5, 60], tf.int64)),
    ]
    for layer, values in layers[1:4]:
        layer.adapt(values)
    layers[4][0].adapt(TIMES)
    return layers


@pytest.mark.parametrize("index", range(6))
def test_every_embedding_layer_takes_the_same_table_options(index):
    layer, values = embedding_layers(
        embeddings_initializer="ones", embeddings_regularizer="l2"
    )[index]
    output = layer(values)
    np.testing.assert_allclose(layer.embeddings.numpy(), 1.0)
    # The regulariser is applied: its loss is the table's squared norm.
    expected = 0.01 * float(tf.reduce_sum(layer.embeddings**2))
    assert float(tf.add_n(layer.losses)) == pytest.approx(expected, rel=1e-5)
    assert output.shape == (2, 3)
    config = layer.get_config()
    assert config["embeddings_initializer"]["class_name"] == "Ones"
    assert config["embeddings_regularizer"]["class_name"] == "L2"


def test_integer_lists_drop_padding_dense_or_ragged():
    layer = cf.MultiIdEmbedding(2, [3, 5, 9], id_dtype="int64", combiner="sum")
    dense = layer(tf.constant([[3, 5, -1], [9, -1, -1], [-1, -1, -1]], tf.int64))
    ragged = layer(tf.ragged.constant([[3, 5], [9], []], tf.int64))
    np.testing.assert_allclose(dense.numpy(), ragged.numpy())
    np.testing.assert_array_equal(dense.numpy()[2], 0.0)
    assert layer.input_signature().shape.as_list() == [None, None]


def test_negative_index_is_no_value():
    layer = cf.TimestampBuckets(2, boundaries=[10], embeddings_initializer="ones")
    np.testing.assert_array_equal(layer.embed(tf.constant([-1, 0, 1])).numpy()[0], 0)
    np.testing.assert_array_equal(layer.embed(tf.constant([-1, 0, 1])).numpy()[1:], 1)


def test_pooling_looks_up_each_distinct_id_once():
    # A history batch repeats its items: the table's gradient must hold one
    # row per distinct id, not one per value (the optimiser would otherwise
    # deduplicate every gathered row at every step).
    layer = cf.MultiIdEmbedding(2, [1, 2, 3], id_dtype="int64", combiner="mean")
    values = tf.ragged.constant([[1, 2, 1, 1], [2, 2], [], [3, 1]], tf.int64)
    layer(values)
    table = layer.embeddings
    table.assign([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with tf.GradientTape() as tape:
        pooled = layer(values)
        loss = tf.reduce_sum(pooled * [[1.0, 0.0]])
    gradient = tape.gradient(loss, table)
    assert isinstance(gradient, tf.IndexedSlices)
    assert sorted(gradient.indices.numpy().tolist()) == [1, 2, 3]
    # Repeats count in the mean; the empty row pools to zeros.
    np.testing.assert_allclose(
        pooled.numpy(), [[1.5, 2.5], [3.0, 4.0], [0.0, 0.0], [3.0, 4.0]]
    )
    dense = tf.math.unsorted_segment_sum(
        gradient.values, gradient.indices, table.shape[0]
    )
    # d(sum of first coordinates)/d(row): 3/4 (row 0) + 1/2 (row 3) for id 1.
    np.testing.assert_allclose(dense.numpy()[:, 0], [0.0, 1.25, 1.25, 0.5])
