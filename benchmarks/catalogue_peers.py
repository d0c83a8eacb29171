"""The peers of the catalogue benchmark, measured on the same vectors and
query tower as the exported recommenders: TFRS' ``BruteForce``, faiss'
``IndexIVFFlat`` and ``IndexHNSWFlat``, TFRS' ``ScaNN``; and the settings
and recall the benchmark and its peers share."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from benchmarks.catalogue_serve import latency
from ctxfeatures.index import IVFIndex, recall

USERS = 1000
RECALL_USERS = 300
K = 100
BATCH = 256
PROBES = (8, 32)
# Exact scores of one batch at once: 256 x 10^7 would be 10 GB.
EXACT_BATCH_CELLS = 2**29


def batch_for(size: int) -> int:
    return max(1, min(BATCH, EXACT_BATCH_CELLS // size))


def tfrs_brute_force(tower, ids, vectors, truth) -> dict:
    import tensorflow_recommenders as tfrs

    start = time.perf_counter()
    layer = tfrs.layers.factorized_top_k.BruteForce(tower, k=K)
    layer.index(tf.constant(vectors), tf.constant(ids))
    built = time.perf_counter() - start
    call = tf.function(lambda users: layer({"user_id": users}))
    found = np.concatenate(
        [
            call(tf.constant(np.arange(i, min(i + 16, RECALL_USERS))))[1].numpy()
            for i in range(0, RECALL_USERS, 16)
        ]
    )
    one = tf.constant([7], tf.int64)
    many = tf.constant(np.arange(batch_for(len(ids))) % USERS)
    row = latency(call, one, many)
    row.update(build_s=built, **recalls(found, truth))
    return row


def faiss_rows(vectors: np.ndarray, users: np.ndarray, truth: np.ndarray) -> dict:
    try:
        import faiss
    except ImportError:
        return {"faiss": {"skipped": "faiss-cpu is not installed"}}
    size, dim = vectors.shape
    index = IVFIndex()
    partitions = index.partitions_for(size)
    rows = {}
    start = time.perf_counter()
    ivf = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(dim), dim, partitions, faiss.METRIC_INNER_PRODUCT
    )
    rng = np.random.default_rng(0)
    sample = min(size, 40 * partitions)
    ivf.train(vectors[np.sort(rng.choice(size, sample, replace=False))])
    ivf.add(vectors)
    built = time.perf_counter() - start
    for probes in PROBES:
        ivf.nprobe = min(probes, partitions)
        row = faiss_measure(ivf, users, truth, built)
        rows[f"faiss_ivf-{probes}"] = {
            **row,
            "partitions": partitions,
            "probes": ivf.nprobe,
        }
    del ivf
    if size <= 10**6:
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(vectors)
        hnsw.hnsw.efSearch = 128
        rows["faiss_hnsw"] = faiss_measure(
            hnsw, users, truth, time.perf_counter() - start
        )
    else:
        rows["faiss_hnsw"] = {"skipped": "build > 20 min on 2 cores at this size"}
    return rows


def faiss_measure(index, users: np.ndarray, truth: np.ndarray, built: float) -> dict:
    _, found = index.search(users[:RECALL_USERS], K)
    row = latency(
        lambda q: index.search(q, K), users[7:8], users[np.arange(BATCH) % USERS]
    )
    row.update(build_s=built, **recalls(found, truth))
    return row


def scann_row() -> dict:
    try:
        import scann  # noqa: F401
    except ImportError:
        # Checked from the wheel's metadata: its TF ops are built for one minor.
        return {
            "skipped": "scann is not installed: its newest release (1.4.2) "
            f"requires tensorflow~=2.20.0; this is {tf.__version__}"
        }
    return {"skipped": "scann is installed but not measured here"}


def recalls(found: np.ndarray, truth: np.ndarray) -> dict:
    return {
        "recall_10": recall(found[:, :10], truth[:, :10]),
        "recall_100": recall(found, truth),
    }
