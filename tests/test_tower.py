from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

DATA = {
    "user_id": np.array(["a", "b", "c", "a"]),
    "timestamp": np.array([10, 20, 30, 40], np.int64),
    "extra": np.array([1.0, 2.0, 3.0, 4.0], np.float32),
}


def make_tower(**kwargs) -> cf.Tower:
    return cf.Tower(
        {
            "user_id": cf.IdEmbedding(4),
            "timestamp": [
                cf.TimestampBuckets(3, num_buckets=4),
                cf.NormalizedTimestamp(),
            ],
        },
        **kwargs,
    )


def test_concat_head_and_ignored_keys():
    tower = make_tower(head_units=(8, 5), name="query")
    tower.adapt(tf.data.Dataset.from_tensor_slices(DATA).batch(3))
    assert tower.feature_names == ["user_id", "timestamp"]
    out = tower({k: tf.constant(v) for k, v in DATA.items()})
    assert out.shape == (4, 5) and tower.output_dim == 5
    assert [d.units for d in tower.head] == [8, 5]
    assert tower.head[0].activation.__name__ == "relu"
    assert tower.head[-1].activation.__name__ == "linear"
    assert tower.head[0].kernel.shape == (4 + 3 + 1, 8)


def test_no_head_and_l2_normalisation():
    raw = make_tower(head_units=())
    raw.adapt(tf.data.Dataset.from_tensor_slices(DATA))
    assert raw({k: tf.constant(v) for k, v in DATA.items()}).shape == (4, 8)
    unit = make_tower(l2_normalize=True)
    unit.adapt(tf.data.Dataset.from_tensor_slices(DATA))
    out = unit({k: tf.constant(v) for k, v in DATA.items()}).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_adapt_reads_the_data_exactly_once():
    reads = []

    def generate():
        reads.append(1)
        for i in range(4):
            yield {key: values[i] for key, values in DATA.items()}

    signature = {
        "user_id": tf.TensorSpec((), tf.string),
        "timestamp": tf.TensorSpec((), tf.int64),
        "extra": tf.TensorSpec((), tf.float32),
    }
    tower = make_tower()
    tower.adapt(tf.data.Dataset.from_generator(generate, output_signature=signature))
    assert len(reads) == 1
    assert all(layer.is_adapted for layer in tower.feature_layers)
    assert tower.feature_layers[0].get_vocabulary() == ["a", "b", "c"]


def test_keras_round_trip_gives_identical_outputs(tmp_path, keras_roundtrip):
    tower = make_tower(head_units=(6, 3), activation="tanh", l2_normalize=True)
    tower.adapt(tf.data.Dataset.from_tensor_slices(DATA))
    inputs = {k: tf.constant(v) for k, v in DATA.items()}
    before = tower(inputs).numpy()
    restored = keras_roundtrip(tower, tmp_path / "tower.keras")
    assert isinstance(restored, cf.Tower)
    np.testing.assert_array_equal(restored(inputs).numpy(), before)
    assert restored.get_config()["head_units"] == [6, 3]


def adapted_tower():
    tower = make_tower(name="query")
    tower.adapt(tf.data.Dataset.from_tensor_slices(DATA))
    return tower


TOWER_ERRORS = [
    pytest.param(
        lambda: make_tower(name="query").adapt(
            tf.data.Dataset.from_tensor_slices({"user_id": ["a"]})
        ),
        ValueError,
        "feature 'timestamp' is missing",
        id="adapt-missing-feature",
    ),
    pytest.param(
        lambda: adapted_tower()({"user_id": tf.constant(["a"])}),
        ValueError,
        "Tower 'query': feature 'timestamp' is missing",
        id="call-missing-feature",
    ),
    pytest.param(
        lambda: adapted_tower()(
            {"user_id": tf.constant(["a"]), "timestamp": tf.constant(["x"])}
        ),
        TypeError,
        "(?s)Tower 'query', feature 'timestamp'.*dtype string",
        id="wrong-dtype",
    ),
    pytest.param(lambda: cf.Tower({}), ValueError, "non-empty mapping", id="empty"),
    pytest.param(
        lambda: make_tower(head_units=(0,)),
        ValueError,
        "`head_units\\[i\\]` must be >= 1",
        id="head-units",
    ),
    pytest.param(
        lambda: cf.Tower({"x": "not a layer"}),
        TypeError,
        "must map to Keras layers",
        id="not-a-layer",
    ),
]


@pytest.mark.parametrize("call, error, match", TOWER_ERRORS)
def test_errors_name_the_tower_and_feature(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_preprocess_and_embed_errors_name_the_tower(synthetic, build_model):
    data, catalogue = synthetic(n=400)
    model = build_model(data, catalogue)
    batch = next(iter(data.batch(64)))
    with pytest.raises(ValueError, match="feature 'timestamp' is missing"):
        model.query_tower.preprocess({"user_id": batch["user_id"]})
    with pytest.raises(ValueError, match="prepared input .* is missing"):
        model.query_tower.embed({})


def test_features_of_different_batch_sizes_are_named_in_both_modes():
    tower = adapted_tower()
    batch = {
        "user_id": tf.constant(["a", "b"]),
        "timestamp": tf.constant([880_000_000], tf.int64),
    }
    with pytest.raises(ValueError, match="'user_id' and 'timestamp' have different"):
        tower(batch)

    @tf.function(
        input_signature=[{k: tf.TensorSpec([None], v.dtype) for k, v in batch.items()}]
    )
    def served(features):
        return tower(features)

    with pytest.raises(tf.errors.InvalidArgumentError, match="different batch sizes"):
        served(batch)
