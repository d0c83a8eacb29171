"""Ensemble: the members' logits summed, evaluated and served as one model."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures import evaluation
from ctxfeatures.history import add_history

ITEMS = [f"item {i}" for i in range(12)]
UNIMPORTABLE = ("ctxfeatures", "tensorflow_recommenders")
REQUESTS = {
    "user_id": ["u1", "never-seen", "u2"],
    "history": [
        ["", "item 1", "item 2", "item 3"],
        ["", "", "", ""],
        ["item 0", "item 5", "unknown item", ""],
    ],
    "seconds_since_last": [60, -1, 3600],
}


@pytest.fixture(scope="module")
def events() -> tf.data.Dataset:
    rng = np.random.default_rng(7)
    users = rng.integers(0, 20, 800)
    steps = np.zeros(20, int)
    walk = []
    for u in users:  # each user walks through the catalogue
        walk.append(ITEMS[(u + steps[u]) % 12])
        steps[u] += 1
    log = {
        "user_id": np.array([f"u{u}" for u in users]),
        "item": np.array(walk),
        "timestamp": np.arange(users.size, dtype=np.int64) * 60,
    }
    data = tf.data.Dataset.from_tensor_slices(log)
    return add_history(data, item="item", max_length=4).cache()


def member(events, seed: int, query: str, temperature: float | None):
    """Members with different query features, temperatures and seeds."""
    tf.keras.utils.set_random_seed(seed)
    item = cf.IdEmbedding(8)
    features = {"history": cf.HistoryEmbedding(item_embedding=item, window=3)}
    if query == "user":
        features["user_id"] = cf.IdEmbedding(8)
    else:
        features["seconds_since_last"] = cf.DurationBuckets(4)
    model = cf.build_retrieval_model(
        features,
        {"item": item},
        tf.data.Dataset.from_tensor_slices({"item": ITEMS}),
        candidate_id="item",
        adapt_data=events,
        head_units=(8,),
        l2_normalize=temperature is not None,
        temperature=temperature,
    )
    model.compile(tf.keras.optimizers.Adam(0.02))
    model.fit(model.prepare(events.batch(128)), epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def members(events):
    return [member(events, 1, "user", 0.5), member(events, 2, "gap", None)]


def summed_logits(models, weights, features) -> np.ndarray:
    """By hand: sum over members of weight * query . candidates / temperature."""
    total = 0.0
    for model, weight in zip(models, weights):
        query = model.query_tower(features).numpy()
        vectors = model.candidate_embeddings()[1].numpy()
        total = total + weight / (model.temperature or 1.0) * query @ vectors.T
    return total


def requests() -> dict[str, tf.Tensor]:
    return {
        "user_id": tf.constant(REQUESTS["user_id"]),
        "history": tf.constant(REQUESTS["history"]),
        "seconds_since_last": tf.constant(REQUESTS["seconds_since_last"], tf.int64),
    }


def test_scores_are_the_weighted_sum_of_the_members_logits(members):
    ensemble = cf.Ensemble(members, weights=[1.0, 3.0])
    query = ensemble.query_tower(requests())
    ids, vectors = ensemble.candidate_embeddings()
    assert vectors.shape == (12, 16)  # two 8-d members side by side
    assert ids.numpy().astype(str).tolist() == ITEMS
    expected = summed_logits(members, [1.0, 3.0], requests())
    np.testing.assert_allclose(query.numpy() @ vectors.numpy().T, expected, atol=1e-5)
    # Each member counts: without the second, the scores are not the same.
    alone = summed_logits(members[:1], [1.0], requests())
    assert np.abs(alone - expected).max() > 0.1


class SummedScorer:
    """A Scorer (the baselines' path) ranking by the summed logits."""

    candidate_id = "item"
    feature_names = ["user_id", "history", "seconds_since_last"]

    def __init__(self, models):
        self.models = models
        self.candidate_ids = tf.constant(ITEMS)
        self.vectors = [m.candidate_embeddings()[1] for m in models]

    def score(self, features):
        return tf.add_n(
            [
                tf.matmul(
                    m.query_tower(features) / (m.temperature or 1.0),
                    vectors,
                    transpose_b=True,
                )
                for m, vectors in zip(self.models, self.vectors)
            ]
        )


def test_evaluation_ranks_by_the_summed_scores(members, events):
    ensemble = cf.Ensemble(members)
    for exclude in (None, "history"):
        got = ensemble.evaluate_top_k(events, ks=(1, 3), exclude=exclude)
        expected = evaluation.evaluate_top_k(
            SummedScorer(members), events, ks=(1, 3), exclude=exclude
        )
        assert got == pytest.approx(expected, abs=1e-6)
    # The walk is learned, so the numbers are not chance's.
    assert got["top_3"] > 0.5


def test_one_member_ranks_as_the_member_itself(members, events):
    # A positive scale (weight / temperature) changes no rank.
    ensemble = cf.Ensemble(members[:1], weights=[5.0])
    expected = members[0].evaluate_top_k(events, ks=(1, 3), exclude="history")
    got = ensemble.evaluate_top_k(events, ks=(1, 3), exclude="history")
    assert got == pytest.approx(expected, abs=1e-6)


def test_export_serves_the_summed_scores_without_ctxfeatures(
    members, run_python, tmp_path
):
    ensemble = cf.Ensemble(members, weights=[2.0, 1.0])
    path = str(tmp_path / "ensemble")
    ensemble.export_recommender(path, k=3, exclude="history")
    code = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        served = tf.saved_model.load({path!r}).signatures["serving_default"]
        out = served(user_id=tf.constant({REQUESTS["user_id"]!r}),
                     history=tf.constant({REQUESTS["history"]!r}),
                     seconds_since_last=tf.constant(
                         {REQUESTS["seconds_since_last"]!r}, tf.int64))
        print(json.dumps({{"ids": out["ids"].numpy().astype(str).tolist(),
                           "scores": out["scores"].numpy().tolist()}}))
        """
    )
    result = run_python(code, unimportable=UNIMPORTABLE)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    expected = summed_logits(members, [2.0, 1.0], requests())
    for row, (ids, scores, history) in enumerate(
        zip(served["ids"], served["scores"], REQUESTS["history"])
    ):
        allowed = [i for i, item in enumerate(ITEMS) if item not in history]
        best = sorted(allowed, key=lambda i: -expected[row, i])[:3]
        assert ids == [ITEMS[i] for i in best]
        np.testing.assert_allclose(scores, expected[row, best], atol=1e-4)


def test_members_over_other_catalogues_are_refused(members, events):
    other = cf.build_retrieval_model(
        {"user_id": cf.IdEmbedding(8)},
        {"item": cf.IdEmbedding(8)},
        tf.data.Dataset.from_tensor_slices({"item": ITEMS[::-1]}),
        candidate_id="item",
        adapt_data=events,
        head_units=(8,),
    )
    with pytest.raises(ValueError, match="member 1 ranks another catalogue"):
        cf.Ensemble([members[0], other])


@pytest.mark.parametrize(
    "models, weights, error, match",
    [
        ([], None, ValueError, "at least one RetrievalModel"),
        (["not a model"], None, TypeError, "member 0 must be a RetrievalModel"),
        (None, [1.0], ValueError, "2 positive finite numbers"),
        (None, [1.0, 0.0], ValueError, "2 positive finite numbers"),
        (None, [1.0, float("nan")], ValueError, "2 positive finite numbers"),
        (None, [True, 1.0], ValueError, "2 positive finite numbers"),
    ],
)
def test_bad_members_and_weights_are_refused(members, models, weights, error, match):
    with pytest.raises(error, match=match):
        cf.Ensemble(members if models is None else models, weights=weights)


def test_one_members_prepared_batches_are_refused(members, events):
    prepared = members[0].prepare(events.batch(64))
    with pytest.raises(ValueError, match="raw feature batches"):
        cf.Ensemble(members).evaluate_top_k(prepared, ks=(1,))


def test_a_shared_feature_read_two_ways_is_refused(members, events):
    tf.keras.utils.set_random_seed(3)
    ints = events.map(
        lambda x: {**x, "history": tf.strings.to_hash_bucket(x["history"], 10)}
    )
    odd = cf.build_retrieval_model(
        {"history": cf.MultiIdEmbedding(8, id_dtype="int64")},
        {"item": cf.IdEmbedding(8)},
        tf.data.Dataset.from_tensor_slices({"item": ITEMS}),
        candidate_id="item",
        adapt_data=ints,
        head_units=(8,),
    )
    with pytest.raises(ValueError, match="read feature 'history' differently"):
        cf.Ensemble([members[0], odd])
