"""AttentionHistory: order matters, window, padding, sharing, saving, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

VOCAB = ["a", "b", "c", "d"]


def layer(**kwargs):
    kwargs.setdefault("window", 3)
    return cf.AttentionHistory(4, vocabulary=VOCAB, **kwargs)


def test_order_matters_unlike_a_mean():
    attention = layer()
    forward = attention(tf.constant([["a", "b", "c"]])).numpy()
    backward = attention(tf.constant([["c", "b", "a"]])).numpy()
    # Position embeddings: the same items in another order differ...
    assert np.abs(forward - backward).max() > 1e-3
    # ...where a mean cannot tell them apart.
    mean = cf.HistoryEmbedding(4, vocabulary=VOCAB)
    np.testing.assert_allclose(
        mean(tf.constant([["a", "b", "c"]])),
        mean(tf.constant([["c", "b", "a"]])),
        rtol=1e-6,  # summation order (Keras 3's kernels round differently)
    )


def test_padding_at_either_end_and_ragged_input_agree_and_empty_is_zero():
    attention = layer()
    ragged = attention(tf.ragged.constant([["a", "b"], []])).numpy()
    front = attention(tf.constant([["", "a", "b"], ["", "", ""]])).numpy()
    back = attention(tf.constant([["a", "b", ""], ["", "", ""]])).numpy()
    np.testing.assert_allclose(ragged, front, atol=1e-6)
    np.testing.assert_allclose(ragged, back, atol=1e-6)
    assert ragged[1].tolist() == [0.0] * 4


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(VOCAB + ["zz"]), max_size=7), min_size=1),
    st.integers(1, 4),
)
def test_output_is_batch_by_dim_and_older_items_are_ignored(rows, window):
    attention = layer(window=window)
    out = attention(tf.ragged.constant(rows, dtype=tf.string)).numpy()
    assert out.shape == (len(rows), 4)
    recent = attention(tf.ragged.constant([r[-window:] for r in rows], tf.string))
    np.testing.assert_allclose(out, recent.numpy(), atol=1e-5)


def test_shared_table_trains_with_the_candidate_layer():
    item = cf.IdEmbedding(4, vocabulary=VOCAB, name="title")
    attention = cf.AttentionHistory(item_embedding=item, window=2)
    attention(tf.constant([["a", "b"]]))
    assert attention.embeddings is item.embeddings
    assert any(w is item.embeddings for w in attention.trainable_weights)


def test_keras_round_trip_with_non_default_arguments(tmp_path, keras_roundtrip):
    attention = layer(window=4, num_heads=2, num_blocks=2, dropout=0.1, name="seq")
    inputs = tf.keras.Input((None,), dtype=tf.string)
    model = tf.keras.Model(inputs, attention(inputs))
    rows = tf.constant([["", "a", "b", "d"], ["c", "zz", "", ""]])
    loaded = keras_roundtrip(model, tmp_path / "attention.keras")
    np.testing.assert_array_equal(loaded(rows).numpy(), model(rows).numpy())
    config = loaded.get_layer("seq").get_config()
    assert (config["num_heads"], config["num_blocks"], config["dropout"]) == (
        2,
        2,
        0.1,
    )
    assert "combiner" not in config and "recency_decay" not in config


def trained_model(synthetic):
    """A retrieval model whose query is an AttentionHistory, trained 3 epochs."""
    data, catalogue = synthetic(n=600)
    from ctxfeatures.history import add_history

    data = add_history(data, item="item", max_length=5)
    item = cf.IdEmbedding(8)
    model = cf.build_retrieval_model(
        {"history": cf.AttentionHistory(item_embedding=item, window=5)},
        {"item": item},
        catalogue,
        candidate_id="item",
        adapt_data=data,
        head_units=(8,),
    )
    model.compile(tf.keras.optimizers.Adam(0.01))
    history = model.fit(model.prepare(data.batch(64)), epochs=3, verbose=0)
    return model, data, history.history["loss"]


def test_trains_inside_a_retrieval_model(synthetic):
    _, _, loss = trained_model(synthetic)
    assert loss[-1] < loss[0]


def test_exported_recommender_serves_it(synthetic, tmp_path):
    model, data, _ = trained_model(synthetic)
    model.export_recommender(str(tmp_path / "rec"), k=3, exclude="history")
    served = tf.saved_model.load(str(tmp_path / "rec")).signatures["serving_default"]
    batch = next(iter(data.batch(4)))
    out = served(history=batch["history"])
    expected = model.query_tower(batch)
    ids, vectors = model.candidate_embeddings()
    scores = tf.linalg.matmul(expected, vectors, transpose_b=True).numpy()
    for row, seen in zip(range(4), batch["history"].numpy()):
        top = out["ids"][row].numpy().tolist()
        assert not set(top) & set(seen.tolist())
        # The served scores are the model's own for those ids.
        names = ids.numpy().tolist()
        got = out["scores"][row].numpy()
        np.testing.assert_allclose(
            got, scores[row][[names.index(x) for x in top]], rtol=1e-4, atol=1e-5
        )


ERRORS = [
    ("window", {"window": 0}, ValueError, "window"),
    ("heads", {"num_heads": 0}, ValueError, "num_heads"),
    ("blocks", {"num_blocks": -1}, ValueError, "num_blocks"),
    ("dropout", {"dropout": 1.0}, ValueError, "dropout"),
    ("dropout-type", {"dropout": "x"}, TypeError, "dropout"),
    ("combiner", {"combiner": "sum"}, ValueError, "does not take `combiner`"),
    ("decay", {"recency_decay": 0.5}, ValueError, "does not take `recency_decay`"),
]


@pytest.mark.parametrize(
    "kwargs, error, match", [pytest.param(*c[1:], id=c[0]) for c in ERRORS]
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        layer(**kwargs)
