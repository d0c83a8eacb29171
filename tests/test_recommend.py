"""recommend() in process, mappings of columns everywhere, the loaded recommender."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

EVENTS = {
    "user_id": ["a", "b", "a", "c", "b", "c", "a", "b"],
    "item": ["x", "y", "y", "z", "x", "w", "w", "z"],
    "timestamp": [10, 20, 30, 40, 50, 60, 70, 80],
}
ITEMS = {"item": ["x", "y", "z", "w", "v"]}


def small_model(seed: int = 0, **kwargs) -> cf.RetrievalModel:
    tf.keras.utils.set_random_seed(seed)
    model = cf.build_retrieval_model(
        {"user_id": cf.IdEmbedding(8), "timestamp": cf.NormalizedTimestamp()},
        {"item": cf.IdEmbedding(8)},
        ITEMS,
        candidate_id="item",
        adapt_data=EVENTS,
        head_units=(8,),
        **kwargs,
    )
    model.compile(tf.keras.optimizers.Adam(0.05))
    model.fit(
        model.prepare(EVENTS, batch_size=4, shuffle=True, seed=seed),
        epochs=3,
        verbose=0,
    )
    return model


REQUESTS = {
    "user_id": ["a", "b", "zz"],
    "timestamp": [90, 95, 99],
    "history": [["x", "y", "w"], ["y"], []],
}


@pytest.fixture(scope="module")
def model() -> cf.RetrievalModel:
    return small_model()


def test_recommend_equals_the_exported_recommender(model, tmp_path):
    ids, scores = model.recommend(REQUESTS, k=3, exclude="history")
    model.export_recommender(str(tmp_path / "rec"), k=3, exclude="history")
    served = tf.saved_model.load(str(tmp_path / "rec")).signatures["serving_default"]
    padded = cf.serving.load_recommender(tmp_path / "rec").signature
    assert set(padded) == {"user_id", "timestamp", "history"}
    exported = served(
        user_id=tf.constant(REQUESTS["user_id"]),
        timestamp=tf.constant(REQUESTS["timestamp"], tf.int64),
        history=tf.constant([["x", "y", "w"], ["y", "", ""], ["", "", ""]]),
    )
    np.testing.assert_array_equal(ids, exported["ids"].numpy().astype(str))
    np.testing.assert_allclose(scores, exported["scores"].numpy(), rtol=1e-5)
    # Seen items never come back; user "a" has two unseen items left.
    assert not {"x", "y", "w"} & set(ids[0][:2])
    assert ids[0][2] == "" and scores[0][2] == -np.inf
    assert ids.shape == scores.shape == (3, 3) and ids.dtype.kind == "U"


def test_recommend_without_exclusion_ranks_the_whole_catalogue(model):
    ids, scores = model.recommend({"user_id": "a", "timestamp": 90}, k=5)
    assert sorted(ids[0]) == sorted(ITEMS["item"])
    assert np.all(np.diff(scores[0]) <= 0)
    # The scores are the query . candidate products.
    query = model.query_tower(
        {"user_id": tf.constant(["a"]), "timestamp": tf.constant([90], tf.int64)}
    )
    cand_ids, vectors = model.candidate_embeddings()
    expected = tf.linalg.matmul(query, vectors, transpose_b=True).numpy()[0]
    order = [list(cand_ids.numpy().astype(str)).index(i) for i in ids[0]]
    np.testing.assert_allclose(scores[0], expected[order], rtol=1e-5)


def test_recommend_takes_a_batched_dataset_and_mappings_alike(model):
    data = tf.data.Dataset.from_tensor_slices(
        {"user_id": ["a", "b", "c"], "timestamp": [90, 91, 92]}
    ).batch(2)
    from_data = model.recommend(data, k=2)
    from_mapping = model.recommend(
        {
            "user_id": np.array(["a", "b", "c"]),
            "timestamp": np.array([90, 91, 92], np.int32),
        },
        k=2,
    )
    np.testing.assert_array_equal(from_data[0], from_mapping[0])
    with pytest.raises(ValueError, match="batch"):
        model.recommend(data.unbatch(), k=2)


def test_ensemble_recommend_equals_its_export(tmp_path):
    ensemble = cf.Ensemble([small_model(1), small_model(2)])
    ids, scores = ensemble.recommend(REQUESTS, k=2, exclude="history")
    ensemble.export_recommender(str(tmp_path / "ens"), k=2, exclude="history")
    served = cf.serving.load_recommender(tmp_path / "ens")(REQUESTS)
    np.testing.assert_array_equal(ids, served["ids"].numpy().astype(str))
    np.testing.assert_allclose(scores, served["scores"].numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "request_, error, match",
    [
        (
            {"user_id": [1], "timestamp": [1]},
            TypeError,
            "'user_id' must be string of shape \\(batch,\\). Received int",
        ),
        (
            {"user_id": ["a"], "timestamp": [1.5]},
            TypeError,
            "'timestamp' must be int64.*Received float64",
        ),
        ({"user_id": ["a"]}, ValueError, "'timestamp' is missing"),
        ({"user_id": ["a", "b"], "timestamp": [1]}, ValueError, "one row per"),
        ({"user_id": [["a"]], "timestamp": [[[1]]]}, ValueError, "rank 1 or 2"),
    ],
)
def test_bad_requests_name_the_feature(model, request_, error, match):
    with pytest.raises(error, match=match):
        model.recommend(request_, k=2)


def test_recommend_checks_k_and_exclude(model):
    with pytest.raises(ValueError, match="between 1 and the catalogue size \\(5\\)"):
        model.recommend({"user_id": ["a"], "timestamp": [1]}, k=6)
    with pytest.raises(ValueError, match="'history' is missing"):
        model.recommend({"user_id": ["a"], "timestamp": [1]}, k=2, exclude="history")


def test_loaded_recommender_accepts_what_a_user_means(model, tmp_path):
    model.export_recommender(str(tmp_path / "rec"), k=2)
    served = cf.serving.load_recommender(tmp_path / "rec")
    reference = served(user_id=tf.constant(["a"]), timestamp=tf.constant([9], tf.int64))
    variants = [
        {"user_id": "a", "timestamp": 9},  # single values
        {"user_id": ["a"], "timestamp": tf.constant([9])},  # int32
        {"user_id": np.array([["a"]]), "timestamp": np.array([[9]])},  # (1, 1)
    ]
    for variant in variants:
        np.testing.assert_array_equal(
            served(variant)["ids"].numpy(), reference["ids"].numpy()
        )
    with pytest.raises(TypeError, match="'timestamp' must be int64.*Received string"):
        served(user_id=["a"], timestamp=["9"])
    with pytest.raises(FileNotFoundError, match="export_recommender"):
        cf.serving.load_recommender(tmp_path / "missing")


def test_predict_and_call_name_recommend(model):
    with pytest.raises(NotImplementedError, match="model.recommend"):
        model.predict(EVENTS)
    with pytest.raises(NotImplementedError, match="model.recommend"):
        model(EVENTS)


def test_mappings_and_datasets_give_the_same_numbers(model):
    data = tf.data.Dataset.from_tensor_slices(EVENTS)
    assert model.evaluate_top_k(EVENTS, ks=(1, 3)) == model.evaluate_top_k(
        data, ks=(1, 3)
    )
    check = cf.TopKValidation(EVENTS, ks=(3,))
    assert isinstance(check.data, tf.data.Dataset)
    tower = cf.Tower({"user_id": cf.IdEmbedding(4)}, name="q")
    cf.adapt_towers({"user_id": np.array(["p", "q", "p"])}, tower)
    assert {"p", "q"} <= set(tower.features["user_id"][0].get_vocabulary())
    tower.adapt({"user_id": ["r", "r"]})
    assert tower.features["user_id"][0].get_vocabulary() == ["r"]
    with pytest.raises(TypeError, match=r"Tower.adapt\(\): `data` must be a mapping"):
        tower.adapt(["r"])


def test_ragged_lists_of_ids_are_padded(model):
    ids, _ = model.recommend(
        {"user_id": ["a", "b"], "timestamp": [1, 2], "seen": [["x"], ["x", "y", "z"]]},
        k=5,
        exclude="seen",
    )
    assert list(ids[1][-3:]) == ["", "", ""] and "x" not in ids[0]


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: cf.build_retrieval_model(
                {"user_id": cf.IdEmbedding(4)},
                {"item": cf.IdEmbedding(4)},
                ITEMS,
                candidate_id="item",
                adapt_data=[("a", "x")],
            ),
            "build_retrieval_model\\(\\): `adapt_data` must be a mapping",
        ),
        (
            lambda: cf.build_retrieval_model(
                {"user_id": cf.IdEmbedding(4)},
                {"item": cf.IdEmbedding(4)},
                ITEMS,
                candidate_id="item",
                adapt_data={"user_id": ["a"], "item": ["x", "y"]},
            ),
            "one length",
        ),
        (
            lambda: cf.build_retrieval_model(
                {"user_id": cf.IdEmbedding(4)},
                {"item": cf.IdEmbedding(4)},
                ITEMS,
                candidate_id="item",
                adapt_data={"user_id": ["a", None]},
            ),
            "missing values",
        ),
    ],
)
def test_wrong_data_names_the_call_and_the_fix(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_prepare_needs_a_batch_size_for_unbatched_data(model):
    with pytest.raises(ValueError, match="pass `batch_size=1024`"):
        model.prepare(EVENTS)
    batched = tf.data.Dataset.from_tensor_slices(EVENTS).batch(2)
    with pytest.raises(ValueError, match="already batched"):
        model.prepare(batched, batch_size=2)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        model.prepare(EVENTS, batch_size=0)
    # Shuffling with a seed is repeatable and keeps every example.
    first = [
        b.context for b in model.prepare(EVENTS, batch_size=8, shuffle=True, seed=3)
    ]
    assert len(first) == 1
