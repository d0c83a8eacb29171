from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import ctxfeatures as cf

IDS = np.array(["a", "b", "b", "c", "c", "c"])


def test_adapt_orders_by_frequency_and_maps_oov_to_zero():
    layer = cf.IdEmbedding(4)
    assert not layer.is_adapted
    layer.adapt(IDS)
    assert layer.is_adapted
    assert layer.get_vocabulary() == ["c", "b", "a"]
    assert layer.lookup(tf.constant(["c", "b", "a", "zz"])).numpy().tolist() == [
        1,
        2,
        3,
        0,
    ]
    assert layer.vocabulary_size == 4
    assert layer(tf.constant(["a", "zz"])).shape == (2, 4)


def test_adapt_accepts_numpy_tensor_and_datasets_alike():
    vocabularies = []
    for data in (
        IDS,
        list(IDS),
        tf.constant(IDS),
        tf.data.Dataset.from_tensor_slices(IDS),
        tf.data.Dataset.from_tensor_slices(IDS).batch(4),
    ):
        layer = cf.IdEmbedding(2)
        layer.adapt(data)
        vocabularies.append(layer.get_vocabulary())
    assert all(v == ["c", "b", "a"] for v in vocabularies)


def test_min_frequency_and_max_tokens():
    layer = cf.IdEmbedding(2, min_frequency=2)
    layer.adapt(IDS)
    assert layer.get_vocabulary() == ["c", "b"]
    layer = cf.IdEmbedding(2, max_tokens=3, num_oov_indices=2)
    layer.adapt(IDS)
    assert layer.get_vocabulary() == ["c"]
    assert layer.vocabulary_size == 3


def test_given_vocabulary_needs_no_adapt_and_int_ids():
    layer = cf.IdEmbedding(3, vocabulary=[10, 20], id_dtype="int64")
    assert layer.is_adapted
    assert layer.lookup(tf.constant([20, 10, 99], tf.int64)).numpy().tolist() == [
        2,
        1,
        0,
    ]
    assert layer(tf.constant([[10], [99]], tf.int32)).shape == (2, 3)


def test_hashing_mode_is_deterministic_and_bounded():
    layer = cf.IdEmbedding(3, num_hash_bins=16)
    assert layer.is_adapted and layer.vocabulary_size == 16
    rows = layer.lookup(tf.constant(["x", "y", "x"])).numpy()
    assert rows[0] == rows[2] and (0 <= rows).all() and (rows < 16).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=30))
def test_unseen_ids_map_to_an_oov_row(unseen):
    layer = cf.IdEmbedding(2, vocabulary=["known-1", "known-2"], num_oov_indices=3)
    unseen = [u for u in unseen if not u.startswith("known-")] or ["other"]
    rows = layer.lookup(tf.constant(unseen)).numpy()
    assert (rows < 3).all()
    assert layer.lookup(tf.constant(["known-2"])).numpy().tolist() == [4]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"embedding_dim": 0}, ValueError, "`embedding_dim` must be >= 1"),
        ({"embedding_dim": 4, "vocabulary": ["a", "a"]}, ValueError, "duplicates"),
        ({"embedding_dim": 4, "vocabulary": []}, ValueError, "empty"),
        ({"embedding_dim": 4, "id_dtype": "float"}, ValueError, "id_dtype"),
        ({"embedding_dim": 4, "vocabulary": [1, 2]}, TypeError, "id_dtype='int64'"),
        ({"embedding_dim": 4, "num_oov_indices": 0}, ValueError, "num_oov_indices"),
        (
            {"embedding_dim": 4, "vocabulary": ["a"], "num_hash_bins": 4},
            ValueError,
            "not both",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        cf.IdEmbedding(**kwargs)


def adapted_user():
    layer = cf.IdEmbedding(2, name="user_id")
    layer.adapt(IDS)
    return layer


ID_ERRORS = [
    (
        "not-adapted",
        lambda: cf.IdEmbedding(2, name="user_id")(tf.constant(["a"])),
        ValueError,
        "'user_id' is not adapted.*adapt",
    ),
    (
        "empty-adapt",
        lambda: cf.IdEmbedding(2).adapt(np.array([], dtype=str)),
        ValueError,
        "received no data",
    ),
    (
        "float-ids",
        lambda: adapted_user()(tf.constant([1.0])),
        TypeError,
        "float32.*Cast float ids",
    ),
    (
        "int-ids",
        lambda: adapted_user()(tf.constant([1], tf.int64)),
        TypeError,
        "id_dtype='int64'",
    ),
    (
        "rank-2",
        lambda: adapted_user()(tf.constant([["a", "b"]])),
        ValueError,
        r"\(batch,\) or \(batch, 1\)",
    ),
    (
        "scalar",
        lambda: adapted_user()(tf.constant("a")),
        ValueError,
        "Wrap a single value",
    ),
    (
        "dict-adapt",
        lambda: cf.IdEmbedding(2).adapt({"user_id": IDS}),
        TypeError,
        "not a dict",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*case[1:], id=case[0]) for case in ID_ERRORS]
)
def test_bad_inputs_name_the_layer_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "ids, dtype",
    [
        pytest.param(["[UNK]", "[UNK]", "a", "[UNK]"], "string", id="string-unk"),
        pytest.param([-1, -1, 7, -1], "int64", id="int-minus-one"),
    ],
)
def test_reserved_looking_ids_get_their_own_row(ids, dtype):
    layer = cf.IdEmbedding(2, id_dtype=dtype)
    layer.adapt(np.array(ids))
    vocabulary = layer.get_vocabulary()
    assert vocabulary == [ids[0], ids[2]]
    rows = layer.lookup(tf.constant(vocabulary)).numpy().tolist()
    # Row i + num_oov_indices holds get_vocabulary()[i]; OOV stays row 0.
    assert rows == [1, 2]
    unseen = "zzz" if dtype == "string" else 123
    assert layer.lookup(tf.constant([unseen])).numpy().tolist() == [0]


def test_missing_values_are_rejected_or_dropped_on_request():
    data = np.array(["a", None, "b", float("nan")], dtype=object)
    with pytest.raises(ValueError, match="2 missing values.*position 1.*drop_missing"):
        cf.IdEmbedding(2).adapt(data)
    layer = cf.IdEmbedding(2)
    layer.adapt(data, drop_missing=True)
    assert layer.get_vocabulary() == ["a", "b"]


def test_non_utf8_ids_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match="IdEmbedding 'title'.*not valid UTF-8.*latin"):
        cf.IdEmbedding(2, name="title").adapt(np.array([b"caf\xe9"]))


def test_a_shared_layer_adapts_on_every_feature_it_serves():
    shared = cf.IdEmbedding(2)
    tower = cf.Tower({"home": shared, "away": shared}, head_units=())
    data = tf.data.Dataset.from_tensor_slices({"home": ["a", "b"], "away": ["c", "a"]})
    tower.adapt(data)
    assert shared.get_vocabulary() == ["a", "b", "c"]
