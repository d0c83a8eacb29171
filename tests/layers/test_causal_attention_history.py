"""CausalAttentionHistory: causal, windowed, one pass for every prefix, saved."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

VOCAB = ["a", "b", "c", "d", "e"]


def layer(**kwargs) -> cf.CausalAttentionHistory:
    tf.keras.utils.set_random_seed(0)
    return cf.CausalAttentionHistory(4, vocabulary=VOCAB, **kwargs)


def test_the_encoding_depends_on_exactly_its_receptive_field():
    # window 2, 2 blocks: the last item sees 1 + 2 * (2 - 1) = 3 items.
    attention = layer(window=2, num_blocks=2)
    assert attention.receptive_field == 3
    base = attention(tf.constant([["a", "b", "c", "d"]])).numpy()
    older = attention(tf.constant([["e", "b", "c", "d"]])).numpy()
    inside = attention(tf.constant([["a", "e", "c", "d"]])).numpy()
    np.testing.assert_array_equal(base, older)  # beyond the field: ignored
    assert np.abs(base - inside).max() > 1e-4  # within it: read


def test_order_matters_and_padding_either_end_or_ragged_agree():
    attention = layer(window=3)
    ab = attention(tf.constant([["", "a", "b"]])).numpy()
    ba = attention(tf.constant([["", "b", "a"]])).numpy()
    assert np.abs(ab - ba).max() > 1e-4
    right = attention(tf.constant([["a", "b", ""]])).numpy()
    ragged = attention(tf.ragged.constant([["a", "b"]])).numpy()
    np.testing.assert_allclose(ab, right, atol=1e-6)
    np.testing.assert_allclose(ab, ragged, atol=1e-6)
    empty = attention(tf.constant([["", "", ""]])).numpy()
    np.testing.assert_array_equal(empty, np.zeros((1, 4)))


@pytest.mark.parametrize("block", ["pre-norm", "sasrec"])
def test_one_pass_encodes_every_prefix(block):
    # encode() over a row: position t equals the layer on the row's first
    # t + 1 items, the sequence form SequenceRetrievalModel trains with.
    attention = layer(window=3, num_blocks=2, num_heads=2, block=block)
    attention.build(None)
    attention.distance_bias.assign(tf.random.normal(attention.distance_bias.shape))
    row = ["a", "c", "b", "e", "d", "a"]
    indices = attention.lookup_ids(tf.constant(row))[None]
    states = attention.encode(indices).numpy()[0]
    for t in range(len(row)):
        alone = attention(tf.constant([row[: t + 1]])).numpy()[0]
        np.testing.assert_allclose(states[t], alone, atol=1e-5)


def test_the_sasrec_block_is_what_its_definition_says():
    # Same seed, same weights: only the wiring differs. One SASRec block by
    # hand (distance biases start at zero): keys and values from the scaled
    # item vectors, the residual on the normalised ones.
    rows = tf.constant([["", "a", "b", "d"], ["c", "e", "a", "b"]])
    pre = layer(window=3, num_blocks=1)
    sasrec = layer(window=3, num_blocks=1, block="sasrec")
    assert np.abs(pre(rows).numpy() - sasrec(rows).numpy()).max() > 1e-3
    x = sasrec._table()(sasrec.lookup_ids(rows[1:])) * 2.0  # sqrt(4)
    norm, query, key, value, merge, feed_norm, hidden, output = sasrec.block_layers
    distance = tf.range(4)[:, None] - tf.range(4)[None]
    logits = tf.matmul(query(norm(x)), key(x), transpose_b=True) / 2.0
    logits = tf.where((distance >= 0) & (distance < 3), logits, -1e9)
    h = feed_norm(norm(x) + merge(tf.matmul(tf.nn.softmax(logits), value(x))))
    expected = sasrec.final_norm(h + output(hidden(h)))[0, -1]
    np.testing.assert_allclose(sasrec(rows).numpy()[1], expected.numpy(), atol=1e-5)


def test_keras_round_trip_with_non_default_arguments(tmp_path, keras_roundtrip):
    attention = layer(
        window=3, num_heads=2, num_blocks=3, dropout=0.1, block="sasrec", name="seq"
    )
    inputs = tf.keras.Input((None,), dtype=tf.string)
    model = tf.keras.Model(inputs, attention(inputs))
    rows = tf.constant([["", "a", "b", "d"], ["c", "zz", "", ""]])
    loaded = keras_roundtrip(model, tmp_path / "causal.keras")
    np.testing.assert_array_equal(loaded(rows).numpy(), model(rows).numpy())
    config = loaded.get_layer("seq").get_config()
    assert (config["window"], config["num_heads"], config["num_blocks"]) == (3, 2, 3)
    assert (config["dropout"], config["block"]) == (0.1, "sasrec")
    assert "combiner" not in config and "recency_decay" not in config


ERRORS = [
    ("window", {"window": 0}, ValueError, "window"),
    ("heads", {"num_heads": 3}, ValueError, "must divide the embedding size 4"),
    ("blocks", {"num_blocks": 0}, ValueError, "num_blocks"),
    ("dropout", {"dropout": 1.0}, ValueError, "dropout"),
    ("block", {"block": "post-norm"}, ValueError, "`block` must be one of"),
    ("combiner", {"combiner": "sum"}, ValueError, "does not take `combiner`"),
]


@pytest.mark.parametrize(
    "kwargs, error, match", [pytest.param(*c[1:], id=c[0]) for c in ERRORS]
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        layer(**kwargs)
