"""The exported recommender with history: TensorFlow only, exclusion, edge cases."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures.history import add_history

ITEMS = [f"item {i}" for i in range(12)]
# The exported model must serve with TensorFlow alone.
UNIMPORTABLE = ("ctxfeatures", "tensorflow_recommenders")


@pytest.fixture(scope="module")
def history_model():
    tf.keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    n = 1500
    users = rng.integers(0, 30, n)
    # Each user walks through the catalogue: the next item follows the last.
    steps = np.zeros(30, int)
    walk = []
    for u in users:
        walk.append(ITEMS[(u + steps[u]) % 12])
        steps[u] += 1
    log = {
        "user_id": np.array([f"u{u}" for u in users]),
        "item": np.array(walk),
        "timestamp": np.arange(n, dtype=np.int64) * 60,
    }
    events = add_history(
        tf.data.Dataset.from_tensor_slices(log), item="item", max_length=8
    )
    catalogue = tf.data.Dataset.from_tensor_slices({"item": ITEMS})
    item = cf.IdEmbedding(8)
    model = cf.build_retrieval_model(
        {
            "user_id": cf.IdEmbedding(8),
            "history": cf.HistoryEmbedding(item_embedding=item, window=3),
            "seconds_since_last": cf.DurationBuckets(4),
        },
        {"item": item},
        catalogue,
        candidate_id="item",
        adapt_data=events,
        head_units=(8,),
    )
    model.compile(tf.keras.optimizers.Adam(0.01))
    model.fit(model.prepare(events.batch(128)).cache(), epochs=3, verbose=0)
    return model, events


def test_history_model_evaluates_with_exclusion(history_model):
    model, events = history_model
    plain = model.evaluate_top_k(events.batch(256), ks=(1, 12))
    seen = model.evaluate_top_k(events.batch(256), ks=(1, 12), exclude="history")
    assert set(plain) == set(seen) == {"top_1", "top_12", "ndcg_1", "ndcg_12", "mrr"}
    # The model learned the walk: far better than chance (1/12).
    assert plain["top_1"] > 0.5
    prepared = model.prepare(events.batch(256))
    assert model.evaluate_top_k(prepared, ks=(1, 12)) == pytest.approx(plain)


@pytest.mark.parametrize("index", ["exact", "ivf"])
def test_export_excludes_history_and_serves_without_ctxfeatures(
    run_python, history_model, tmp_path, index
):
    model, _ = history_model
    path = str(tmp_path / "recommender")
    # Probing every partition, the index must give exactly the exact answer.
    ivf = cf.index.IVFIndex(num_partitions=3, probes=3) if index == "ivf" else None
    model.export_recommender(path, k=4, exclude="history", index=ivf)
    requests = {
        "user_id": ["u1", "never-seen", "u2", "u3"],
        "history": [
            [""] * 7 + ["item 1", "item 2", "item 3"],
            [""] * 10,  # an unseen user with an empty history
            ["item 0", "item 5", "unknown item"] + [""] * 7,
            ITEMS[:10],  # only two candidates left for k=4
        ],
        "seconds_since_last": [60, -1, 3600, 10**9],
    }
    code = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        served = tf.saved_model.load({path!r}).signatures["serving_default"]
        out = served(user_id=tf.constant({requests["user_id"]!r}),
                     history=tf.constant({requests["history"]!r}),
                     seconds_since_last=tf.constant(
                         {requests["seconds_since_last"]!r}, tf.int64))
        print(json.dumps({{"ids": out["ids"].numpy().astype(str).tolist(),
                           "scores": out["scores"].numpy().tolist()}}))
        """
    )
    result = run_python(code, unimportable=UNIMPORTABLE)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    for ids, history in zip(served["ids"], requests["history"]):
        assert not set(ids) & set(history) - {""}
    assert len(set(served["ids"][1])) == 4
    # Two candidates remain for the last request: the rest is padding.
    assert sorted(served["ids"][3][:2]) == ["item 10", "item 11"]
    assert served["ids"][3][2:] == ["", ""]
    assert served["scores"][3][2:] == [-np.inf, -np.inf]
    # The same ranking as the model itself, for the unseen user.
    query = {key: tf.constant(value[1:2]) for key, value in requests.items()}
    _, vectors = model.candidate_embeddings()
    scores = tf.matmul(model.query_tower(query), vectors, transpose_b=True)[0]
    expected = [ITEMS[i] for i in np.argsort(-scores.numpy())[:4]]
    assert served["ids"][1] == expected


EXPORT_ERRORS = [
    (
        "exclude-not-a-list",
        dict(exclude="seconds_since_last"),
        ValueError,
        "`exclude`='seconds_since_last'",
    ),
    (
        "k-too-large",
        dict(k=np.int64(13)),
        ValueError,
        "between 1 and the catalogue size",
    ),
    ("k-zero", dict(k=0), ValueError, "between 1 and the catalogue size"),
    ("k-float", dict(k=2.5), ValueError, "Received: k=2.5"),
    ("exclude-not-a-name", dict(exclude=3), TypeError, "feature name or None"),
    ("index-a-name", dict(index="ivf"), TypeError, "`index` must be None"),
    (
        "index-of-another-catalogue",
        dict(index=cf.index.IVFIndex(1).build(["a", "b"], np.eye(2, 8, dtype="f4"))),
        ValueError,
        "holds 2 candidates but the catalogue has 12",
    ),
]


@pytest.mark.parametrize(
    "options, error, match", [pytest.param(*c[1:], id=c[0]) for c in EXPORT_ERRORS]
)
def test_export_errors(history_model, tmp_path, options, error, match):
    model, _ = history_model
    with pytest.raises(error, match=match):
        model.export_recommender(str(tmp_path / "x"), **options)
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_export_to_an_unwritable_path_says_so(history_model, tmp_path):
    model, _ = history_model
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="cannot write to .*Choose a writable"):
        model.export_recommender(str(blocker / "recommender"))


def test_numpy_k_is_accepted(history_model, tmp_path):
    model, _ = history_model
    model.export_recommender(str(tmp_path / "ok"), k=np.int64(3))
    assert (tmp_path / "ok" / "saved_model.pb").exists()


def test_integer_multi_valued_feature_is_served_without_pooling_padding(tmp_path):
    # Query: a user's favourite genre ids, an int64 list (padded with -1 when
    # served); the padding must never be looked up or pooled as an id.
    rng = np.random.default_rng(1)
    n = 400
    genres = [list(rng.choice(6, rng.integers(1, 4), replace=False)) for _ in range(n)]
    events = {
        "genres": tf.ragged.constant(genres, tf.int64),
        "item": np.array([ITEMS[g[0]] for g in genres]),
    }
    data = tf.data.Dataset.from_tensor_slices(events)
    catalogue = tf.data.Dataset.from_tensor_slices({"item": ITEMS})
    model = cf.build_retrieval_model(
        {"genres": cf.MultiIdEmbedding(4, id_dtype="int64", combiner="sum")},
        {"item": cf.IdEmbedding(4)},
        catalogue,
        candidate_id="item",
        adapt_data=data,
        head_units=(4,),
    )
    model.compile(tf.keras.optimizers.Adam(0.05))
    model.fit(data.batch(64), epochs=2, verbose=0)
    path = str(tmp_path / "recommender")
    model.export_recommender(path, k=3)
    served = tf.saved_model.load(path).signatures["serving_default"]
    padded = tf.constant([[2, 5, -1, -1], [4, -1, -1, -1]], tf.int64)
    out = served(genres=padded)
    ragged = tf.ragged.constant([[2, 5], [4]], tf.int64)
    _, vectors = model.candidate_embeddings()
    scores = tf.matmul(model.query_tower({"genres": ragged}), vectors, transpose_b=True)
    np.testing.assert_allclose(
        out["scores"].numpy(), tf.math.top_k(scores, 3).values.numpy(), rtol=1e-5
    )


def test_recommend_takes_int32_and_column_shaped_inputs(history_model, tmp_path):
    model, _ = history_model
    path = str(tmp_path / "recommender")
    model.export_recommender(path, k=3, exclude="history")
    loaded = tf.saved_model.load(path)
    strict = loaded.signatures["serving_default"](
        user_id=tf.constant(["u1", "u2"]),
        history=tf.constant([["item 1", ""], ["", ""]]),
        seconds_since_last=tf.constant([60, -1], tf.int64),
    )
    for user_id, seconds in [
        (tf.constant(["u1", "u2"]), tf.constant([60, -1], tf.int32)),
        (tf.constant([["u1"], ["u2"]]), tf.constant([[60], [-1]], tf.int64)),
        (tf.constant([["u1"], ["u2"]]), tf.constant([[60], [-1]], tf.int32)),
    ]:
        out = loaded.recommend(
            user_id=user_id,
            history=tf.constant([["item 1", ""], ["", ""]]),
            seconds_since_last=seconds,
        )
        np.testing.assert_array_equal(out["ids"].numpy(), strict["ids"].numpy())
