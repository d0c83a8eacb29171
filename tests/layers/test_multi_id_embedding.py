from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

TABLE = np.array(
    [[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 8.0]], dtype=np.float32
)  # rows: OOV, a, b, c


def layer_with_table(combiner: str) -> cf.MultiIdEmbedding:
    layer = cf.MultiIdEmbedding(2, vocabulary=["a", "b", "c"], combiner=combiner)
    layer.build(None)
    layer.embeddings.assign(TABLE)
    return layer


@pytest.mark.parametrize(
    "combiner, expected",
    [
        ("sum", [[4.0, 6.0], [5.0, 8.0], [0.0, 0.0]]),
        ("mean", [[2.0, 3.0], [5.0, 8.0], [0.0, 0.0]]),
        ("sqrtn", [[4 / np.sqrt(2), 6 / np.sqrt(2)], [5.0, 8.0], [0.0, 0.0]]),
    ],
)
def test_combiners_by_hand(combiner, expected):
    layer = layer_with_table(combiner)
    out = layer(tf.constant(["a|b", "c", ""])).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    ragged = layer(tf.ragged.constant([["a", "b"], ["c"], []])).numpy()
    np.testing.assert_allclose(ragged, expected, rtol=1e-6)


def test_unknown_ids_use_the_oov_row_and_trailing_empty_rows_stay():
    layer = layer_with_table("mean")
    out = layer(tf.constant(["zz|a", "", ""])).numpy()
    np.testing.assert_allclose(out, [[0.5, 1.0], [0, 0], [0, 0]])


def test_adapt_on_ragged_dataset_and_dense_int_ids():
    data = tf.data.Dataset.from_tensor_slices(
        tf.ragged.constant([["x", "y"], ["y"], []])
    ).batch(2)
    layer = cf.MultiIdEmbedding(3)
    layer.adapt(data)
    assert layer.get_vocabulary() == ["y", "x"]
    ints = cf.MultiIdEmbedding(3, id_dtype="int64", combiner="sum")
    ints.adapt(np.array([[1, 2], [2, 2]]))
    assert ints.get_vocabulary() == [2, 1]
    assert ints(tf.constant([[1, 2]], tf.int64)).shape == (1, 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="`combiner` must be one of"):
        cf.MultiIdEmbedding(2, combiner="max")
    layer = cf.MultiIdEmbedding(2, name="genres")
    with pytest.raises(ValueError, match="'genres' is not adapted"):
        layer(tf.constant(["a"]))
    layer.adapt(np.array(["a|b"]))
    with pytest.raises(TypeError, match="float32"):
        layer(tf.constant([[1.0]]))
    with pytest.raises(ValueError, match="ragged ids"):
        layer(tf.zeros([1, 2, 3], tf.string))
