from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf


def test_masked_mean_by_hand_and_empty_string_is_zero():
    layer = cf.TextEmbedding(2, vocabulary=["", "[UNK]", "toy", "story"])
    layer.build(None)
    layer.embeddings.assign(np.array([[9, 9], [1, 1], [2, 4], [4, 8]], np.float32))
    out = layer(tf.constant(["Toy Story", "toy", "", "toy unknown!"])).numpy()
    np.testing.assert_allclose(out, [[3, 6], [2, 4], [0, 0], [1.5, 2.5]])
    assert not np.isnan(out).any()


def test_adapt_learns_standardised_tokens_by_frequency():
    layer = cf.TextEmbedding(4, max_tokens=5)
    layer.adapt(tf.data.Dataset.from_tensor_slices(["A b.", "b c", "b a"]).batch(2))
    assert layer.get_vocabulary() == ["", "[UNK]", "b", "a", "c"]
    assert layer(tf.constant([["a b"]])).shape == (1, 4)


def adapted_title():
    layer = cf.TextEmbedding(2, name="title")
    layer.adapt(["x y"])
    return layer


TEXT_ERRORS = [
    ("dim", lambda: cf.TextEmbedding(-1), ValueError, "`embedding_dim` must be >= 1"),
    (
        "duplicates",
        lambda: cf.TextEmbedding(2, vocabulary=["a", "a"]),
        ValueError,
        "duplicates",
    ),
    (
        "not-adapted",
        lambda: cf.TextEmbedding(2, name="title")(tf.constant(["x"])),
        ValueError,
        "'title' is not adapted",
    ),
    (
        "empty-adapt",
        lambda: cf.TextEmbedding(2).adapt([]),
        ValueError,
        "received no data",
    ),
    (
        "numbers",
        lambda: adapted_title()(tf.constant([3])),
        TypeError,
        "expects strings",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*case[1:], id=case[0]) for case in TEXT_ERRORS]
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.text(alphabet="aAbB .,!é'-", min_size=0, max_size=12), min_size=1, max_size=8
    ),
    st.sampled_from(
        ["lower_and_strip_punctuation", "lower", "strip_punctuation", None]
    ),
    st.sampled_from(["whitespace", "character"]),
    st.sampled_from([None, 2]),
)
def test_adapt_counts_the_tokens_text_vectorization_sees(texts, standardize, split, n):
    ours = cf.TextEmbedding(
        2, max_tokens=None, standardize=standardize, split=split, ngrams=n
    )
    keras = tf.keras.layers.TextVectorization(
        max_tokens=None, standardize=standardize, split=split, ngrams=n
    )
    keras.adapt(np.array(texts))
    expected = keras.get_vocabulary()
    if len(expected) <= 2:  # no token at all
        with pytest.raises(ValueError, match="received no data"):
            ours.adapt(np.array(texts))
        return
    ours.adapt(np.array(texts))
    assert sorted(ours.get_vocabulary()) == sorted(expected)
    assert ours.get_vocabulary()[:2] == ["", "[UNK]"]
