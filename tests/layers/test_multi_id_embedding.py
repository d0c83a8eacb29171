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


def adapted_genres():
    layer = cf.MultiIdEmbedding(2, name="genres")
    layer.adapt(np.array(["a|b"]))
    return layer


MULTI_ERRORS = [
    (
        "combiner",
        lambda: cf.MultiIdEmbedding(2, combiner="max"),
        ValueError,
        "`combiner` must be one of",
    ),
    (
        "not-adapted",
        lambda: cf.MultiIdEmbedding(2, name="genres")(tf.constant(["a"])),
        ValueError,
        "'genres' is not adapted",
    ),
    ("float-ids", lambda: adapted_genres()(tf.constant([[1.0]])), TypeError, "float32"),
    (
        "rank-3",
        lambda: adapted_genres()(tf.zeros([1, 2, 3], tf.string)),
        ValueError,
        "ragged ids",
    ),
]


@pytest.mark.parametrize(
    "call, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in MULTI_ERRORS],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()
