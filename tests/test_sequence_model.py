"""SequenceRetrievalModel: the per-event model's queries and loss, at once."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures import history, sequences

ITEMS = [f"i{i}" for i in range(30)]
USERS = [f"u{i}" for i in range(12)]


def random_log(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "user_id": rng.choice(USERS, n),
        "item": rng.choice(ITEMS, n),
        # Few distinct seconds: many events share one, as in real logs.
        "timestamp": rng.integers(0, 40, n).astype(np.int64),
        "row": np.arange(n),
    }


def towers(window=4, decay=0.7, combiner="mean", dim=8):
    items = cf.IdEmbedding(dim, vocabulary=ITEMS)
    query = cf.Tower(
        {
            "user_id": cf.IdEmbedding(4, vocabulary=USERS),
            "history": cf.HistoryEmbedding(
                item_embedding=items,
                window=window,
                recency_decay=decay,
                combiner=combiner,
            ),
            "seconds_since_last": cf.DurationBuckets(4, num_buckets=6),
        },
        head_units=(dim,),
    )
    query.adapt({"user_id": USERS})
    return query, cf.Tower({"item": items}, head_units=(dim,))


def models(**options):
    query, candidate = towers(**options)
    catalogue = {"item": ITEMS}
    kwargs = dict(remove_accidental_hits=True)
    return (
        cf.SequenceRetrievalModel(query, candidate, catalogue, "item", **kwargs),
        cf.RetrievalModel(query, candidate, catalogue, "item", **kwargs),
    )


def both_batches(log, window, length=5, context=None):
    """A batch of rows, and its targets' events per event, in the same order."""
    context = window if context is None else context
    rows = sequences.to_sequences(log, item="item", length=length, context=context)
    per_event = history.add_history(log, item="item", max_length=window)
    order = rows["row"][rows["is_target"]]
    events = {key: tf.constant(value[order]) for key, value in per_event.items()}
    return {key: tf.constant(value) for key, value in rows.items()}, events


@pytest.mark.parametrize(
    "window, decay, combiner",
    [(4, 0.7, "mean"), (3, None, "sum"), (6, 0.5, "sqrtn"), (1, None, "mean")],
)
def test_queries_and_loss_equal_the_per_event_model(window, decay, combiner):
    sequence, per_event = models(window=window, decay=decay, combiner=combiner)
    rows, events = both_batches(random_log(), window)
    query, candidate = sequence.embed_batch(rows)
    want_query, want_candidate = per_event.embed_batch(events)
    np.testing.assert_allclose(query, want_query, atol=1e-5)
    np.testing.assert_allclose(candidate, want_candidate, atol=1e-6)
    np.testing.assert_allclose(
        float(sequence.compute_loss(rows)),
        float(per_event.compute_loss(events)),
        rtol=1e-5,
    )


def test_a_short_context_changes_the_early_targets_history():
    # The effect of `context`: without it a run's first targets see less.
    sequence, per_event = models(window=4)
    rows, events = both_batches(random_log(), 4, context=0)
    query, _ = sequence.embed_batch(rows)
    assert np.abs(query - per_event.embed_batch(events)[0]).max() > 1e-3


def test_trains_recommends_and_exports_as_the_per_event_model(tmp_path):
    # Users walk the catalogue in order: the next item follows the last one.
    rng = np.random.default_rng(1)
    starts = rng.integers(30, size=40)
    log = {
        "user_id": np.repeat(USERS * 4, 8)[: 40 * 8][:320],
        "item": np.asarray(
            [ITEMS[(s + step) % 30] for s in starts for step in range(8)]
        ),
        "timestamp": np.tile(np.arange(8, dtype=np.int64), 40),
    }
    log["user_id"] = np.repeat([f"w{i}" for i in range(40)], 8)
    query, candidate = towers(window=2, decay=None, combiner="mean", dim=16)
    model = cf.SequenceRetrievalModel(
        cf.Tower({"history": query.features["history"][0]}, head_units=(16,)),
        candidate,
        {"item": ITEMS},
        "item",
        remove_accidental_hits=True,
    )
    model.compile(tf.keras.optimizers.Adam(0.05))
    rows = sequences.to_sequences(log, item="item", length=8, context=0)
    train = model.prepare(rows, batch_size=8, shuffle=True, seed=0).cache()
    losses = model.fit(train, epochs=30, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    request = {"history": [["i3", "i4"], ["i27", "i28"]]}
    ids, _ = model.recommend(request, k=1)
    assert ids[:, 0].tolist() == ["i5", "i29"]
    model.export_recommender(str(tmp_path / "rec"), k=1)
    served = cf.serving.load_recommender(str(tmp_path / "rec"))(request)
    assert np.asarray(served["ids"]).astype(str)[:, 0].tolist() == ["i5", "i29"]


def test_per_event_batches_train_as_in_the_per_event_model():
    sequence, per_event = models()
    events = history.add_history(random_log(20), item="item", max_length=4)
    batch = {key: tf.constant(value) for key, value in events.items()}
    assert float(sequence.compute_loss(batch)) == float(per_event.compute_loss(batch))


def test_rows_without_times_and_other_history_layers_are_refused():
    sequence, _ = models()
    rows, _ = both_batches(random_log(), 4)
    del rows["timestamp"]
    with pytest.raises(ValueError, match="rows lack column 'timestamp'"):
        sequence.compute_loss(rows)
    items = cf.IdEmbedding(8, vocabulary=ITEMS)
    attention = cf.Tower(
        {"history": cf.AttentionHistory(item_embedding=items)}, head_units=(8,)
    )
    with pytest.raises(ValueError, match="AttentionHistory, which has no sequence"):
        cf.SequenceRetrievalModel(
            attention,
            cf.Tower({"item": items}, head_units=(8,)),
            {"item": ITEMS},
            "item",
        )


@pytest.mark.parametrize("context, equal", [(5, True), (2, False)])
def test_causal_attention_equals_per_event_with_its_receptive_field(context, equal):
    # window 3, 2 blocks: the encoding reads the last 5 items; rows whose
    # context holds them give the per-event queries and loss exactly.
    items = cf.IdEmbedding(8, vocabulary=ITEMS)
    attention = cf.CausalAttentionHistory(
        item_embedding=items, window=3, num_blocks=2, num_heads=2
    )
    attention.build(None)
    attention.distance_bias.assign(tf.random.normal(attention.distance_bias.shape))
    query = cf.Tower(
        {"user_id": cf.IdEmbedding(4, vocabulary=USERS), "history": attention},
        head_units=(8,),
    )
    candidate = cf.Tower({"item": items}, head_units=(8,))
    options = dict(remove_accidental_hits=True)
    sequence = cf.SequenceRetrievalModel(
        query, candidate, {"item": ITEMS}, "item", **options
    )
    per_event = cf.RetrievalModel(query, candidate, {"item": ITEMS}, "item", **options)
    rows, events = both_batches(random_log(), 40, length=6, context=context)
    difference = np.abs(
        sequence.embed_batch(rows)[0] - per_event.embed_batch(events)[0]
    )
    if equal:
        assert difference.max() < 1e-5
        np.testing.assert_allclose(
            float(sequence.compute_loss(rows)),
            float(per_event.compute_loss(events)),
            rtol=1e-5,
        )
    else:
        assert difference.max() > 1e-3
