"""evaluate_top_k: hit rate, NDCG, MRR and exclusion against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures import evaluation


class FixedScorer:
    """A Scorer whose scores are a fixed matrix, one row per query id."""

    def __init__(self, scores: np.ndarray, ids: list[str]) -> None:
        self.table = tf.constant(scores, tf.float32)
        self.candidate_ids = tf.constant(ids)
        self.candidate_id = "item"
        self.feature_names = ["query"]

    def score(self, features):
        return tf.gather(self.table, features["query"])


def reference(scores, positives, excluded, ks):
    """Plain numpy: rank = 1 + #non-excluded scores strictly above the positive."""
    hits = {k: [] for k in ks}
    ndcg = {k: [] for k in ks}
    rr = []
    for row, positive, seen in zip(scores, positives, excluded):
        if positive < 0 or positive in seen:
            rank = np.inf
        else:
            mask = np.ones(row.size, bool)
            mask[list(seen)] = False
            rank = 1 + np.sum(row[mask] > row[positive])
        for k in ks:
            hits[k].append(rank <= k)
            ndcg[k].append(1 / np.log2(rank + 1) if rank <= k else 0.0)
        rr.append(0.0 if np.isinf(rank) else 1 / rank)
    out = {f"top_{k}": np.mean(hits[k]) for k in ks}
    out.update({f"ndcg_{k}": np.mean(ndcg[k]) for k in ks})
    out["mrr"] = np.mean(rr)
    return out


def test_hand_computed_ranks():
    ids = ["a", "b", "c", "d"]
    scorer = FixedScorer(np.array([[4.0, 3.0, 2.0, 1.0]]), ids)
    data = tf.data.Dataset.from_tensor_slices(
        {"query": [0, 0], "item": ["c", "zz"], "history": [["a", ""], ["", ""]]}
    )
    plain = evaluation.evaluate_top_k(scorer, data, ks=[1, 3])
    # "c" ranks 3rd; "zz" is not in the catalogue: a miss.
    assert plain["top_1"] == 0.0 and plain["top_3"] == 0.5
    assert plain["ndcg_3"] == pytest.approx(0.5 * 1 / np.log2(4))
    assert plain["mrr"] == pytest.approx(0.5 * 1 / 3)
    seen = evaluation.evaluate_top_k(scorer, data, ks=[1, 3], exclude="history")
    # Without "a", "c" ranks 2nd.
    assert seen["top_3"] == 0.5 and seen["mrr"] == pytest.approx(0.5 * 1 / 2)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 12),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.booleans(),
    st.integers(1, 14),
)
def test_matches_numpy_reference(size, queries, seed, ragged, chunk_size):
    rng = np.random.default_rng(seed)
    # Integer scores make ties common: ties count for the positive (TFRS).
    scores = rng.integers(0, 4, (queries, size)).astype(np.float32)
    ids = [f"i{j}" for j in range(size)]
    positives = rng.integers(-1, size, queries)
    seen = [set(rng.choice(size, rng.integers(0, size), replace=False)) for _ in scores]
    history = [[ids[j] for j in sorted(s)] for s in seen]
    if ragged:
        exclude = tf.ragged.constant(history, dtype=tf.string)
    else:
        width = max(1, max(len(h) for h in history))
        exclude = tf.constant([[""] * (width - len(h)) + h for h in history])
    item = [ids[p] if p >= 0 else "unknown" for p in positives]
    ks = sorted({1, min(3, size), size})
    data = tf.data.Dataset.from_tensors(
        {"query": tf.range(queries), "item": tf.constant(item), "history": exclude}
    )
    # Any chunk size, below, at or above the catalogue size: the same result.
    got = evaluation.evaluate_top_k(
        FixedScorer(scores, ids), data, ks=ks, exclude="history", chunk_size=chunk_size
    )
    want = reference(scores, positives, seen, ks)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_duplicate_catalogue_ids_are_all_excluded(chunk_size):
    # The two "a" fall in different chunks of size 1 and 2.
    scorer = FixedScorer(np.array([[5.0, 3.0, 4.0, 1.0]]), ["a", "c", "a", "b"])
    data = tf.data.Dataset.from_tensor_slices(
        {"query": [0, 0], "item": ["b", "a"], "history": [["a", "a"], ["c", ""]]}
    )
    result = evaluation.evaluate_top_k(
        scorer, data, ks=[1], exclude="history", chunk_size=chunk_size
    )
    # "b" is first once both "a" are gone and "c" (3 > 1) stays: rank 2.
    # "a" (its first copy scores 5) is first once "c" is gone.
    assert result == {"top_1": 0.5, "ndcg_1": 0.5, "mrr": 0.75}


def test_a_model_ranks_the_same_in_any_chunk_size(synthetic, build_model):
    data, catalogue = synthetic(n=300, items=40)
    model = build_model(data, catalogue)
    items = np.array([f"item {i} kind{i % 5}" for i in range(40)] + [""])
    history = np.random.default_rng(1).choice(items, size=(300, 6))
    data = tf.data.Dataset.zip((data, tf.data.Dataset.from_tensor_slices(history))).map(
        lambda x, h: {**x, "history": h}
    )
    results = [
        evaluation.evaluate_top_k(
            model, data.batch(64), exclude="history", chunk_size=chunk_size
        )
        for chunk_size in (None, 1, 7, 40, 1000)
    ]
    assert results[0]["top_10"] > 0.2  # a trained-enough model, not all misses
    for result in results[1:]:
        assert result == pytest.approx(results[0], abs=1e-12)


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, True])
def test_chunk_size_errors(chunk_size):
    scorer = FixedScorer(np.array([[1.0, 2.0]]), ["x", "y"])
    data = tf.data.Dataset.from_tensor_slices({"query": [0], "item": ["x"]})
    with pytest.raises(ValueError, match="`chunk_size` must be an integer >= 1"):
        evaluation.evaluate_top_k(scorer, data, ks=[1], chunk_size=chunk_size)


_LARGE_CATALOGUE = """
import numpy as np, tensorflow as tf, ctxfeatures as cf
from benchmarks.harness import status_mib
from ctxfeatures import evaluation
items = np.arange({items}, dtype=np.int64)
catalogue = tf.data.Dataset.from_tensor_slices({{"item": items}})
events = tf.data.Dataset.from_tensor_slices(
    {{"user": np.arange(4096, dtype=np.int64) % 50, "item": items[:4096],
      "history": np.stack([items[4096:8192], items[8192:12288]], 1)}})
model = cf.build_retrieval_model(
    {{"user": cf.IdEmbedding(8, id_dtype="int64")}},
    {{"item": cf.IdEmbedding(8, id_dtype="int64")}},
    catalogue, candidate_id="item", adapt_data=events, head_units=())
model.candidate_embeddings()  # the catalogue's own vectors, before measuring
# VmHWM, not ru_maxrss (Linux carries ru_maxrss over exec from the
# parent), reset first so that it holds this evaluation's peak only.
open("/proc/self/clear_refs", "w").write("5")
before = status_mib("VmRSS")
result = evaluation.evaluate_top_k(model, events.batch(4096), exclude="history")
print("growth_gib", (status_mib("VmHWM") - before) / 1024, result["top_100"])
"""


@pytest.mark.slow  # a child process: once, in the main suite
def test_evaluation_memory_does_not_grow_with_the_catalogue(run_python):
    # 4,096 queries x 300,000 items: 4.9 GB of scores and 1.2 GB of masks at
    # once without chunks; 64 MB of scores per chunk with them.
    done = run_python(_LARGE_CATALOGUE.format(items=300_000), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    growth = float(done.stdout.split()[-2])
    assert growth < 1.0, done.stdout


def test_integer_ids():
    scorer = FixedScorer(np.array([[1.0, 2.0]]), ["x", "y"])
    scorer.candidate_ids = tf.constant([7, 8], tf.int64)
    data = tf.data.Dataset.from_tensor_slices(
        {"query": [0], "item": np.array([7], np.int32), "history": [[8, -1]]}
    )
    assert (
        evaluation.evaluate_top_k(scorer, data, ks=[1], exclude="history")["top_1"]
        == 1.0
    )


@pytest.mark.parametrize(
    "exclude, ks, error, match",
    [
        ("seen", [1], ValueError, "names feature 'seen', which the data lacks"),
        ("query", [1], TypeError, "holds int32 but the catalogue ids are string"),
        (None, [0], ValueError, "between 1 and the catalogue size \\(2\\)"),
        (None, [3], ValueError, "between 1 and the catalogue size \\(2\\)"),
        (None, [1.5], TypeError, "must be an integer"),
    ],
)
def test_errors(exclude, ks, error, match):
    scorer = FixedScorer(np.array([[1.0, 2.0]]), ["x", "y"])
    data = tf.data.Dataset.from_tensor_slices({"query": [0], "item": ["x"]})
    with pytest.raises(error, match=match):
        evaluation.evaluate_top_k(scorer, data, ks=ks, exclude=exclude)


def test_rejects_other_objects_and_empty_data():
    with pytest.raises(TypeError, match="takes a RetrievalModel or a Scorer"):
        evaluation.evaluate_top_k(
            object(), tf.data.Dataset.from_tensor_slices({"query": [0]})
        )
    scorer = FixedScorer(np.array([[1.0, 2.0]]), ["x", "y"])
    empty = tf.data.Dataset.from_tensor_slices({"query": [0], "item": ["x"]}).take(0)
    with pytest.raises(ValueError, match="empty dataset"):
        evaluation.evaluate_top_k(scorer, empty, ks=[1])


def test_evaluating_keeps_no_recommender_alive():
    import gc
    import weakref

    scorer = FixedScorer(np.array([[1.0, 2.0]]), ["x", "y"])
    data = tf.data.Dataset.from_tensor_slices({"query": [0], "item": ["x"]})
    evaluation.evaluate_top_k(scorer, data, ks=[1])
    alive = weakref.ref(scorer)
    del scorer
    gc.collect()
    assert alive() is None


def test_a_true_item_outside_the_catalogue_is_a_miss_for_a_model_too(
    synthetic, build_model
):
    data, _ = synthetic(n=400, items=40)
    # The model knows only the first 20 items; its candidate tower can still
    # embed the others (text, OOV row), so without the rule they could hit.
    known = tf.data.Dataset.from_tensor_slices(
        {"item": [f"item {i} kind{i % 5}" for i in range(20)]}
    )
    model = build_model(data, known)
    outside = data.filter(
        lambda x: tf.strings.to_number(tf.strings.split(x["item"])[1]) >= 20
    )
    assert model.evaluate_top_k(outside.batch(64), ks=[20])["top_20"] == 0.0
    inside = data.filter(
        lambda x: tf.strings.to_number(tf.strings.split(x["item"])[1]) < 20
    )
    assert model.evaluate_top_k(inside.batch(64), ks=[20])["top_20"] == 1.0
    # Prepared batches follow the same rule (they keep the id column).
    prepared = model.prepare(outside.batch(64))
    assert model.evaluate_top_k(prepared, ks=[20])["top_20"] == 0.0


def test_prepared_batches_without_the_id_column_are_refused(synthetic, build_model):
    data, catalogue = synthetic(n=100)
    model = build_model(data, catalogue)
    stripped = model.prepare(data.batch(16)).map(lambda b: b._replace(context={}))
    with pytest.raises(ValueError, match="lack the true item's id 'item'"):
        model.evaluate_top_k(stripped, ks=[1])


_EMBED = """
import numpy as np, tensorflow as tf, ctxfeatures as cf
from benchmarks.harness import status_mib
size = 2**21
catalogue = tf.data.Dataset.from_tensor_slices({"item": np.arange(size)})
tower = cf.Tower(
    {"item": cf.IdEmbedding(64, id_dtype="int64", num_hash_bins=4096)},
    head_units=())
model = cf.RetrievalModel(tower, tower, catalogue, candidate_id="item")
model.catalogue.index  # the id table, built before measuring
open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here
before = status_mib("VmRSS")
ids, vectors = model.candidate_embeddings()
growth = status_mib("VmHWM") - before
probe = tower({"item": tf.constant([0, 5, size - 1])})
same = bool(tf.reduce_all(tf.gather(vectors, [0, 5, size - 1]) == probe))
print(growth, size * 64 * 4 / 2**20, same, int(ids[-1]))
"""


@pytest.mark.slow  # a child process: once, in the main suite
def test_the_catalogue_is_embedded_into_one_buffer(run_python):
    # 2**21 x 64 float32 = 512 MiB: a list of batches then a concatenation
    # would hold it twice.
    done = run_python(_EMBED, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    growth, vectors, same, last = done.stdout.split()[-4:]
    assert same == "True" and int(last) == 2**21 - 1
    assert float(growth) < 1.3 * float(vectors), done.stdout
