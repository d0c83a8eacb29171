"""Exact and inverted-file top-k search: equality, recall, exclusion, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxfeatures.index import ExactSearch, IVFIndex, recall


def clustered(size: int, dim: int, clusters: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype("float32")
    vectors = centres[rng.integers(0, clusters, size)]
    vectors += 0.3 * rng.normal(size=vectors.shape).astype("float32")
    queries = centres[rng.integers(0, clusters, 300)]
    queries += 0.3 * rng.normal(size=queries.shape).astype("float32")
    return vectors, tf.constant(queries)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(3, 60),
    st.integers(1, 6),
    st.integers(0, 10_000),
    st.booleans(),
    st.data(),
)
def test_probing_every_partition_is_exact(size, dim, seed, strings, data):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(size, dim)).astype("float32")
    ids = [f"i{j}" for j in range(size)] if strings else np.arange(size) * 7
    partitions = data.draw(st.integers(1, size))
    k = data.draw(st.integers(1, size))
    queries = tf.constant(rng.normal(size=(5, dim)).astype("float32"))
    picks = rng.integers(0, size, (5, 4))
    history = tf.constant(np.asarray(ids)[picks])  # duplicates included
    exact = ExactSearch(ids, vectors).search(queries, k, history)
    ivf = IVFIndex(partitions, probes=partitions, seed=seed).build(ids, vectors)
    approximate = ivf.search(queries, k, history)
    np.testing.assert_allclose(approximate[1], exact[1], rtol=1e-5, atol=1e-5)
    for got, want, seen in zip(approximate[0].numpy(), exact[0].numpy(), picks):
        assert set(got) == set(want)
        assert not set(got) & set(np.asarray(ids)[seen])


def test_recall_is_measured_and_grows_with_probes():
    vectors, queries = clustered(20_000, 16, 200)
    ids = np.arange(20_000)
    exact, _ = ExactSearch(ids, vectors).search(queries, 10)
    index = IVFIndex()
    search = index.build(ids, vectors)
    assert int(search.centroids.shape[0]) == round(4 * np.sqrt(20_000))
    assert index.build_seconds > 0
    found, _ = search.search(queries, 10)
    one_probe, _ = IVFIndex(probes=1).build(ids, vectors).search(queries, 10)
    assert recall(found, exact) >= 0.95
    assert recall(one_probe, exact) < recall(found, exact) - 0.05


def test_exclusion_and_padding_with_few_probed_candidates():
    # One item per partition and two probes: two candidates per query.
    vectors = np.eye(4, dtype="float32") * [4, 3, 2, 1]
    search = IVFIndex(num_partitions=4, probes=2).build(["a", "b", "c", "d"], vectors)
    query = tf.constant([[1.0, 1.0, 0.0, 0.0]])
    ids, scores = search.search(query, 3, tf.constant([["a", "zz", ""]]))
    assert ids.numpy().astype(str).tolist() == [["b", "", ""]]
    assert scores.numpy().tolist() == [[3.0, -np.inf, -np.inf]]


def test_every_copy_of_a_duplicated_id_is_excluded():
    vectors = np.array([[3.0], [2.0], [1.0]], "float32")
    search = IVFIndex(num_partitions=2, probes=2).build(["a", "b", "a"], vectors)
    ids, _ = search.search(tf.constant([[1.0]]), 2, tf.constant([["a"]]))
    assert ids.numpy().astype(str).tolist() == [["b", ""]]


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(probes=0), "`probes` must be an integer >= 1"),
        (dict(num_partitions=0), "`num_partitions` must be an integer >= 1"),
        (dict(sample_size=1.5), "`sample_size` must be an integer >= 1"),
        (dict(iterations=True), "`iterations` must be an integer >= 1"),
    ],
)
def test_index_errors(options, match):
    with pytest.raises(ValueError, match=match):
        IVFIndex(**options)


def test_build_and_recall_errors():
    with pytest.raises(ValueError, match="same length. Received: 2 ids and 3"):
        IVFIndex().build([1, 2], np.zeros((3, 2), "float32"))
    with pytest.raises(ValueError, match="same shape"):
        recall(np.zeros((2, 3)), np.zeros((2, 4)))


def test_more_partitions_than_items_and_the_default_count():
    assert IVFIndex(num_partitions=50).partitions_for(10) == 10
    assert IVFIndex().partitions_for(10**6) == 4000
    assert IVFIndex().partitions_for(1) == 1
