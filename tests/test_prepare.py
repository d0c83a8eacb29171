"""The two-stage path: preprocess/embed, RetrievalModel.prepare, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from test_retrieval import build, synthetic

import ctxfeatures as cf
from ctxfeatures.retrieval import InBatchSoftmax


def adapted_layers():
    ids = np.array(["a", "b", "b", "c", "d"])
    times = np.array([880_000_000, 880_003_600, 885_000_000, 889_999_999], np.int64)
    layers = {
        "id": (cf.IdEmbedding(4, num_oov_indices=2), ids),
        "hashed": (cf.IdEmbedding(3, num_hash_bins=7), ids),
        "int_id": (cf.IdEmbedding(3, id_dtype="int64"), np.array([3, 5, 5, 9])),
        "multi": (cf.MultiIdEmbedding(4, combiner="sqrtn"), np.array(["a|b", "c"])),
        "text": (cf.TextEmbedding(5), np.array(["red fox", "the lazy dog", "fox"])),
        "buckets": (cf.TimestampBuckets(3, num_buckets=5), times),
        "normalized": (cf.NormalizedTimestamp(), times),
        "cyclical": (cf.CyclicalTime(), times),
    }
    for layer, data in layers.values():
        layer.adapt(data)
    return layers


RAW = {
    "id": tf.constant(["a", "zzz", "c"]),
    "hashed": tf.constant(["a", "zzz", "c"]),
    "int_id": tf.constant([5, 1, 9], tf.int64),
    "multi": tf.constant(["a|c", "", "zzz|b|a"]),
    "text": tf.constant(["fox dog", "", "unknown words here"]),
    "buckets": tf.constant([879_000_000, 884_000_000, 895_000_000], tf.int64),
    "normalized": tf.constant([879_000_000, 884_000_000, 895_000_000], tf.int64),
    "cyclical": tf.constant([0, 43_200, 1_700_000_000], tf.int64),
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_embed_of_preprocess_equals_call(name):
    layer, _ = adapted_layers()[name]
    direct = layer(RAW[name]).numpy()
    staged = layer.embed(layer.preprocess(RAW[name])).numpy()
    np.testing.assert_allclose(staged, direct, rtol=1e-6, atol=1e-7)
    assert direct.shape == (3, layer.output_dim)


@pytest.mark.parametrize("name", sorted(RAW))
def test_preprocess_runs_in_tf_data(name):
    layer, _ = adapted_layers()[name]
    data = tf.data.Dataset.from_tensor_slices(RAW[name]).batch(2)
    prepared = data.map(layer.preprocess)
    outputs = np.concatenate([layer.embed(batch).numpy() for batch in prepared])
    np.testing.assert_allclose(outputs, layer(RAW[name]).numpy(), rtol=1e-6)


def test_preprocess_errors_name_layer_and_fix():
    with pytest.raises(ValueError, match=r"IdEmbedding 'user' is not adapted.*adapt"):
        cf.IdEmbedding(4, name="user").preprocess(tf.constant(["a"]))
    layer, _ = adapted_layers()["id"]
    with pytest.raises(TypeError, match="float32"):
        layer.preprocess(tf.constant([1.5]))


def test_text_embed_accepts_padded_token_ids():
    layer, _ = adapted_layers()["text"]
    ragged = layer.preprocess(tf.constant(["fox dog", "", "red"]))
    padded = ragged.to_tensor(default_value=0, shape=[3, 6])
    np.testing.assert_allclose(layer.embed(padded), layer.embed(ragged), rtol=1e-6)
    # An empty text pools to zeros, as through call().
    np.testing.assert_array_equal(layer.embed(padded).numpy()[1], 0.0)


def test_tower_embed_of_preprocess_equals_call():
    data, catalogue = synthetic(n=400)
    model = build(data, catalogue)
    batch = next(iter(data.batch(64)))
    for tower in (model.query_tower, model.candidate_tower):
        np.testing.assert_allclose(
            tower.embed(tower.preprocess(batch)), tower(batch), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(ValueError, match="feature 'timestamp' is missing"):
        model.query_tower.preprocess({"user_id": batch["user_id"]})
    with pytest.raises(ValueError, match="prepared input .* is missing"):
        model.query_tower.embed({})


def fitted_loss(model, data):
    model.compile(tf.keras.optimizers.Adagrad(0.5))
    history = model.fit(data, epochs=2, verbose=0).history["loss"]
    return np.asarray(history)


def test_fit_and_evaluate_on_prepared_data_match_raw():
    data, catalogue = synthetic(n=2000)
    batches = data.batch(128)
    tf.keras.utils.set_random_seed(3)
    raw_model = build(data, catalogue)
    tf.keras.utils.set_random_seed(3)
    prepared_model = build(data, catalogue)
    raw_loss = fitted_loss(raw_model, batches)
    prepared = prepared_model.prepare(batches).cache()
    prepared_loss = fitted_loss(prepared_model, prepared)
    np.testing.assert_allclose(prepared_loss, raw_loss, rtol=1e-4)
    assert prepared_loss[1] < prepared_loss[0]
    raw_eval = raw_model.evaluate_top_k(data, ks=(1, 10))
    assert prepared_model.evaluate_top_k(prepared, ks=(1, 10)) == pytest.approx(
        raw_eval, abs=1e-3
    )
    # Unbatched raw data still works, batched internally.
    assert prepared_model.evaluate_top_k(data, ks=(1, 10)) == pytest.approx(
        prepared_model.evaluate_top_k(prepared, ks=(1, 10)), abs=1e-9
    )


def test_prepare_keeps_weight_probability_and_ids():
    data, catalogue = synthetic(n=600)
    data = cf.with_sampling_probability(data, "item")
    data = data.map(lambda x: {**x, "weight": tf.constant(2.0)})
    model = build(
        data,
        catalogue,
        sample_weight="weight",
        candidate_sampling_probability="candidate_sampling_probability",
        remove_accidental_hits=True,
    )
    prepared = model.prepare(data.batch(100))
    spec = prepared.element_spec
    assert {"weight", "candidate_sampling_probability", "item"} == set(spec.context)
    raw_batch = next(iter(data.batch(100)))
    prepared_batch = next(iter(prepared))
    assert float(model.compute_loss(raw_batch)) == pytest.approx(
        float(model.compute_loss(prepared_batch)), rel=1e-5
    )


def test_prepare_errors():
    data, catalogue = synthetic(n=300)
    model = build(data, catalogue, sample_weight="weight")
    with pytest.raises(ValueError, match=r"needs batched data.*\.batch"):
        model.prepare(data)
    with pytest.raises(ValueError, match="feature 'weight' is missing"):
        model.prepare(data.batch(10))
    model = build(data, catalogue)
    prepared = model.prepare(data.batch(10))
    with pytest.raises(ValueError, match="already prepared"):
        model.prepare(prepared)
    with pytest.raises(TypeError, match="Dataset of feature dicts"):
        model.prepare({"user_id": np.array(["a"])})
    with pytest.raises(TypeError, match="evaluate_top_k.*Dataset"):
        model.evaluate_top_k({"user_id": np.array(["a"])})


def test_evaluate_top_k_does_not_retrace():
    data, catalogue = synthetic(n=500)
    model = build(data, catalogue)

    def evaluate_twice():
        model.evaluate_top_k(data.batch(128), ks=(1, 5))
        model.evaluate_top_k(data.batch(128), ks=(10,))

    evaluate_twice()
    from ctxfeatures import evaluation

    hits = evaluation._RANKERS[model].step
    traces = hits.experimental_get_tracing_count()
    for _ in range(3):
        evaluate_twice()
    assert hits.experimental_get_tracing_count() == traces <= 3


def tfrs_default_loss(scores, weights):
    labels = tf.eye(tf.shape(scores)[0], tf.shape(scores)[1])
    loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum")
    return loss(labels, scores, sample_weight=weights)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # TFRS loss on 1 x 1
@settings(max_examples=25, deadline=None)
@given(
    queries=st.integers(1, 12),
    extra=st.integers(0, 5),
    scale=st.floats(0.1, 60.0),
    seed=st.integers(0, 10_000),
)
def test_in_batch_softmax_equals_tfrs_loss_and_gradient(queries, extra, scale, seed):
    rng = np.random.default_rng(seed)
    scores = tf.constant(
        rng.normal(size=(queries, queries + extra)) * scale, tf.float32
    )
    weights = tf.constant(rng.uniform(0.0, 2.0, queries), tf.float32)
    results = []
    for loss_fn in (InBatchSoftmax(), tfrs_default_loss):
        with tf.GradientTape() as tape:
            tape.watch(scores)
            if isinstance(loss_fn, InBatchSoftmax):
                value = loss_fn(tf.eye(queries, queries + extra), scores, weights)
            else:
                value = loss_fn(scores, weights)
        results.append((float(value), tape.gradient(value, scores).numpy()))
    (ours, our_grad), (theirs, their_grad) = results
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-3)
    np.testing.assert_allclose(our_grad, their_grad, rtol=1e-4, atol=1e-5)


def test_in_batch_softmax_hand_computed():
    # Two queries, two candidates: loss_i = log(e^a + e^b) - diagonal.
    scores = tf.constant([[1.0, 0.0], [2.0, 2.0]])
    expected = (np.log(np.e + 1.0) - 1.0) + (np.log(2 * np.e**2) - 2.0)
    assert float(InBatchSoftmax()(tf.eye(2), scores)) == pytest.approx(expected)


@tf.keras.utils.register_keras_serializable(package="ctxfeatures_tests")
class Doubled(cf.OneStageFeatureLayer):
    """A one-stage subclass: overrides `call` only, through the adapter."""

    output_dim = 1
    is_adapted = True
    needs_adapt = False

    def call(self, inputs):
        return 2.0 * tf.cast(tf.reshape(inputs, [-1, 1]), tf.float32)


def test_one_stage_subclass_runs_whole_in_embed():
    layer = Doubled()
    values = tf.constant([1, 2, 3])
    assert layer.preprocess(values) is values
    np.testing.assert_array_equal(layer.embed(values).numpy()[:, 0], [2.0, 4.0, 6.0])
    tower = cf.Tower({"x": [Doubled(), cf.CyclicalTime()]}, head_units=())
    batch = {"x": tf.constant([0, 3600], tf.int64)}
    np.testing.assert_allclose(tower.embed(tower.preprocess(batch)), tower(batch))
