"""TopKValidation: validation top-k in the logs, usable by EarlyStopping."""

from __future__ import annotations

import pytest
import tensorflow as tf

import ctxfeatures as cf


def test_logs_hold_the_validation_metrics_of_each_epoch(synthetic, build_model):
    data, catalogue = synthetic(n=600)
    model = build_model(data, catalogue)
    model.compile(tf.keras.optimizers.Adam(0.05))
    validation = data.take(200)
    history = model.fit(
        model.prepare(data.batch(128)),
        epochs=3,
        verbose=0,
        callbacks=[cf.TopKValidation(validation, ks=(1, 5))],
    )
    for key in ("val_top_1", "val_top_5", "val_ndcg_5", "val_mrr"):
        assert len(history.history[key]) == 3
    # The last epoch's numbers are the model's own, after training.
    final = model.evaluate_top_k(validation, ks=(1, 5))
    assert history.history["val_top_5"][-1] == pytest.approx(final["top_5"])
    assert history.history["val_top_5"][-1] > history.history["val_top_5"][0]


def test_early_stopping_after_it_monitors_the_validation_hit_rate(
    synthetic, build_model
):
    data, catalogue = synthetic(n=300)
    model = build_model(data, catalogue)
    # A frozen model: the validation hit rate never improves, so
    # EarlyStopping(patience=0) stops after the second epoch. Without the
    # metric in the logs it would only warn and run all ten.
    model.compile(tf.keras.optimizers.SGD(0.0))
    history = model.fit(
        model.prepare(data.batch(128)),
        epochs=10,
        verbose=0,
        callbacks=[
            cf.TopKValidation(data, ks=(5,)),
            tf.keras.callbacks.EarlyStopping("val_top_5", mode="max", patience=0),
        ],
    )
    assert len(history.history["loss"]) == 2


def test_every_skips_epochs_but_not_the_last(synthetic, build_model):
    data, catalogue = synthetic(n=300)
    model = build_model(data, catalogue)
    model.compile(tf.keras.optimizers.Adam(0.01))
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append("val_top_5" in logs)

    model.fit(
        model.prepare(data.batch(128)),
        epochs=5,
        verbose=0,
        callbacks=[cf.TopKValidation(data, ks=(5,), every=2), Record()],
    )
    assert seen == [False, True, False, True, True]


def test_errors(synthetic):
    data, _ = synthetic(n=50)
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        cf.TopKValidation([1, 2])
    with pytest.raises(ValueError, match="every"):
        cf.TopKValidation(data, every=0)
    with pytest.raises(ValueError, match="at least one"):
        cf.TopKValidation(data, ks=())
    plain = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    plain.compile("sgd", "mse")
    with pytest.raises(TypeError, match="RetrievalModel"):
        plain.fit(
            tf.zeros((4, 1)), tf.zeros((4, 1)), verbose=0,
            callbacks=[cf.TopKValidation(data)],
        )  # fmt: skip


def test_restore_best_weights_and_set_weights_keep_adapted_state(
    synthetic, build_model
):
    data, catalogue = synthetic(n=400)
    model = build_model(data, catalogue)
    model.compile(tf.keras.optimizers.Adam(0.05))
    # Keras' set_weights calls every layer's finalize_state(): it must take
    # the restored state, not start an empty adapt.
    stop = tf.keras.callbacks.EarlyStopping(
        "val_top_5", mode="max", patience=1, restore_best_weights=True
    )
    model.fit(
        model.prepare(data.batch(128)),
        epochs=4,
        verbose=0,
        callbacks=[cf.TopKValidation(data, ks=(5,)), stop],
    )
    # Another model's weights, statistics included, make it the same model:
    # a twin adapted on shifted times (same vocabularies, other time
    # statistics) takes them with set_weights.
    shifted = data.map(lambda x: {**x, "timestamp": x["timestamp"] + 10**7})
    twin = build_model(shifted, catalogue)
    twin.set_weights(model.get_weights())
    batch = next(iter(data.batch(32)))
    for mine, theirs in zip(model.embed_batch(batch), twin.embed_batch(batch)):
        tf.debugging.assert_near(mine, theirs, atol=1e-6)
