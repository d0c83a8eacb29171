"""FeatureLayer: the two stages in tf.data, errors, the one-stage adapter."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf


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


def test_layers_and_towers_need_no_tensorflow_recommenders(run_python, tmp_path):
    code = f"""
import numpy as np, tensorflow as tf
import ctxfeatures as cf
tower = cf.Tower({{"user": cf.IdEmbedding(4), "title": cf.TextEmbedding(4),
                  "time": cf.TimestampBuckets(4, num_buckets=3)}}, head_units=(2,))
data = tf.data.Dataset.from_tensor_slices({{"user": ["a", "b"], "title": ["x y", "z"],
                                            "time": [1, 9]}})
tower.adapt(data)
batch = next(iter(data.batch(2)))
tower.save({str(tmp_path / "t.keras")!r})
loaded = tf.keras.models.load_model({str(tmp_path / "t.keras")!r}, safe_mode=True)
np.testing.assert_allclose(loaded(batch), tower(batch))
try:
    cf.RetrievalModel
except ImportError:
    print("retrieval needs TFRS")
else:
    print("retrieval without TFRS")
"""
    result = run_python(code, unimportable=("tensorflow_recommenders",))
    assert result.returncode == 0, result.stderr[-3000:]
    # The child uses this run's Keras: only Keras 2's model is TFRS'.
    expected = "needs" if cf.keras_version == 2 else "without"
    assert result.stdout.strip().splitlines()[-1] == f"retrieval {expected} TFRS"
