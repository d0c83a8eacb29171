"""Large catalogues: exact and approximate top-k serving, and streamed evaluation.

    python -m benchmarks catalogue                 # 10^5, 10^6, 10^7 items, d 32, 64
    python -m benchmarks catalogue --quick         # 10^4 and 10^5 items, d 32

Synthetic catalogues of clustered vectors (one cluster per 1,000 items,
Gaussian around random centres) and 1,000 users whose vectors lie near those
centres. For every size and dimension, side by side in one run:

* the exported recommender with exact top-k (today's default) and with the
  inverted-file index (``index=IVFIndex()``), each a SavedModel that a child
  process loads and serves with TensorFlow only (ctxfeatures and TFRS cannot
  be imported there);
* TFRS' ``BruteForce`` layer on the same vectors and query tower;
* faiss' ``IndexIVFFlat`` (same partitions and probes) and ``IndexHNSWFlat``
  directly, as the reference (when faiss-cpu is installed; HNSW up to 10^6);
* TFRS' ``ScaNN`` where a ScaNN build exists for the installed TensorFlow.

Each row: recall@10 and recall@100 against exact top-k over 300 users, p50 and
p99 of one query, queries/s at batch 256, build time and SavedModel size.
Part 2 runs ``evaluate_top_k`` on 4,096 queries with 50-item histories
excluded at each size, in a child process: its peak RSS beyond the
catalogue's own vectors, queries/s, and the same result with the catalogue in
one chunk (today's code) at the smallest size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

import ctxfeatures as cf  # noqa: I001  (Keras 2: benchmarks/__init__ sets it)
from benchmarks.catalogue_peers import (
    EXACT_BATCH_CELLS,
    PROBES,
    RECALL_USERS,
    USERS,
    K,
    batch_for,
    faiss_rows,
    recalls,
    scann_row,
    tfrs_brute_force,
)
from benchmarks.harness import ROOT, run_child, run_python, status_mib, write_results
from ctxfeatures.index import ExactSearch, IVFIndex
from ctxfeatures.serving import export_recommender


def clustered(size: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(catalogue vectors, user vectors)``, generated in blocks (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(16, size // 1000), dim)).astype(np.float32)
    vectors = np.empty((size, dim), np.float32)
    for start in range(0, size, 2**20):
        stop = min(size, start + 2**20)
        vectors[start:stop] = centres[rng.integers(0, len(centres), stop - start)]
        vectors[start:stop] += 0.4 * rng.standard_normal(
            (stop - start, dim), np.float32
        )
    users = centres[rng.integers(0, len(centres), USERS)]
    users += 0.4 * rng.standard_normal(users.shape, np.float32)
    return vectors, users


def query_tower(users: np.ndarray) -> cf.Tower:
    """User id -> the user's vector (an IdEmbedding set to ``users``)."""
    layer = cf.IdEmbedding(
        users.shape[1], vocabulary=list(range(USERS)), id_dtype="int64"
    )
    tower = cf.Tower({"user_id": layer}, head_units=())
    tower({"user_id": tf.constant([0], tf.int64)})
    (table,) = [w for w in tower.weights if w.shape[0] == USERS + 1]
    table.assign(np.concatenate([np.zeros_like(users[:1]), users]))
    return tower


def exact_top(search: ExactSearch, queries: np.ndarray) -> np.ndarray:
    block = max(1, EXACT_BATCH_CELLS // search.size)
    parts = [
        search.search(tf.constant(queries[i : i + block]), K)[0].numpy()
        for i in range(0, len(queries), block)
    ]
    return np.concatenate(parts)


def build_child(size: int, dim: int, folder: str) -> None:
    """Exports exact and IVF recommenders, measures TFRS and faiss; JSON."""
    vectors, users = clustered(size, dim)
    ids = np.arange(size, dtype=np.int64)
    tower = query_tower(users)
    recall_users = np.arange(RECALL_USERS)
    truth = exact_top(ExactSearch(ids, vectors), users[recall_users])
    np.save(os.path.join(folder, "truth.npy"), truth)
    rows = {}
    start = time.perf_counter()
    export_recommender(tower, tf.constant(ids), vectors, f"{folder}/exact", k=K)
    rows["exact"] = {"build_s": time.perf_counter() - start}
    index = IVFIndex()
    search = index.build(ids, vectors)
    for probes in PROBES:
        # One build, exported with each probe count.
        search.probes = min(probes, index.partitions_for(size))
        start = time.perf_counter()
        path = f"{folder}/ivf-{probes}"
        export_recommender(tower, tf.constant(ids), vectors, path, k=K, index=search)
        rows[f"ivf-{probes}"] = {
            "build_s": index.build_seconds + time.perf_counter() - start,
            "partitions": index.partitions_for(size),
            "probes": search.probes,
        }
    del search
    gc.collect()
    rows["tfrs_brute_force"] = tfrs_brute_force(tower, ids, vectors, truth)
    rows.update(faiss_rows(vectors, users, truth))
    rows["tfrs_scann"] = scann_row()
    print(json.dumps(rows))


def serve(folder: str, size: int) -> dict:
    """Serving figures from a child with TensorFlow only; recall computed here."""
    script = str(ROOT / "benchmarks" / "catalogue_serve.py")
    names = ["exact"] + [f"ivf-{probes}" for probes in PROBES]
    rows = run_python(script, folder, str(batch_for(size)), *names)
    truth = np.load(os.path.join(folder, "truth.npy"))
    for name, row in rows.items():
        row.update(recalls(np.load(os.path.join(folder, f"{name}-found.npy")), truth))
    return rows


def evaluate_child(size: int, dim: int, queries: int, compare: bool) -> None:
    """evaluate_top_k over ``size`` candidates: peak RSS and queries/s; JSON."""
    rng = np.random.default_rng(1)
    catalogue = tf.data.Dataset.from_tensor_slices(
        {"item": np.arange(size, dtype=np.int64)}
    )
    events = tf.data.Dataset.from_tensor_slices(
        {
            "user": rng.integers(0, USERS, queries),
            "item": rng.integers(0, size, queries),
            "history": rng.integers(0, size, (queries, 50)),
        }
    ).batch(4096)
    # Hashed ids: the towers stay small, so memory is the evaluation's own.
    model = cf.RetrievalModel(
        cf.Tower(
            {"user": cf.IdEmbedding(dim, id_dtype="int64", num_hash_bins=1024)},
            head_units=(),
        ),
        cf.Tower(
            {"item": cf.IdEmbedding(dim, id_dtype="int64", num_hash_bins=2**16)},
            head_units=(),
        ),
        catalogue,
        candidate_id="item",
    )
    model.catalogue.index  # noqa: B018  (the id table, built once, before)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM from here: this evaluation's peak only
    before = status_mib("VmRSS")
    start = time.perf_counter()
    result = cf.evaluation.evaluate_top_k(model, events, exclude="history")
    seconds = time.perf_counter() - start
    vectors_mib = size * dim * 4 / 2**20
    row = {
        "size": size,
        "dim": dim,
        "queries": queries,
        "seconds": seconds,
        "qps": queries / seconds,
        "vectors_mib": vectors_mib,
        "peak_beyond_vectors_mib": status_mib("VmHWM") - before - vectors_mib,
        "top_100": result["top_100"],
    }
    if compare:
        # Today's code ranked the whole catalogue at once: one chunk.
        whole = cf.evaluation.evaluate_top_k(
            model, events, exclude="history", chunk_size=size
        )
        row["equal_to_one_chunk"] = whole == result
    print(json.dumps(row))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*")
    parser.add_argument("--dims", type=int, nargs="*")
    parser.add_argument("--output", default="benchmarks/out")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10**4, 10**5] if args.quick else [10**5, 10**6, 10**7])
    dims = args.dims or ([32] if args.quick else [32, 64])
    serving = []
    for size in sizes:
        for dim in dims:
            folder = tempfile.mkdtemp(prefix="catalogue-")
            try:
                built = run_child("catalogue", "build_child", size, dim, folder)
                served = serve(folder, size)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            for name, row in built.items():
                serving.append(
                    {
                        "size": size,
                        "dim": dim,
                        "method": name,
                        **row,
                        **served.get(name, {}),
                    }
                )
            print(json.dumps(serving[-len(built) :]), flush=True)
    evaluation = [
        run_child("catalogue", "evaluate_child", size, 64, 4096, size == sizes[0])
        for size in sizes
    ]
    results = {"serving": serving, "evaluation": evaluation}
    write_results(args.output, "catalogue", results, markdown(results))
    with open(os.path.join(args.output, "catalogue.rst"), "w", encoding="utf-8") as f:
        f.write(restructured_text(results))


def tables(results: dict) -> list[tuple[str, list[list[str]]]]:
    """``(title, rows of cells)`` of the serving and evaluation tables."""
    serving = [
        [
            "items",
            "dim",
            "method",
            "recall@10",
            "recall@100",
            "p50 ms",
            "p99 ms",
            "queries/s (batch)",
            "build s",
            "SavedModel MiB",
        ]
    ]
    for row in results["serving"]:
        head = [f"{row['size']:,}", str(row["dim"]), row["method"]]
        if "skipped" in row:
            serving.append(head + [row["skipped"]] + [""] * 6)
            continue
        if "probes" in row:
            head[2] += f" ({row['partitions']:,} partitions, {row['probes']} probes)"
        size_mib = row.get("saved_model_mib")
        serving.append(
            head
            + [
                f"{row['recall_10']:.3f}",
                f"{row['recall_100']:.3f}",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                f"{row['qps']:,.0f} ({row['batch']})",
                f"{row['build_s']:.1f}",
                f"{size_mib:,.0f}" if size_mib is not None else "in process",
            ]
        )
    evaluation = [
        [
            "items",
            "dim",
            "queries",
            "seconds",
            "queries/s",
            "catalogue vectors MiB",
            "peak RSS beyond them MiB",
            "same as one chunk",
        ]
    ]
    for row in results["evaluation"]:
        evaluation.append(
            [
                f"{row['size']:,}",
                str(row["dim"]),
                f"{row['queries']:,}",
                f"{row['seconds']:.1f}",
                f"{row['qps']:,.0f}",
                f"{row['vectors_mib']:,.0f}",
                f"{row['peak_beyond_vectors_mib']:,.0f}",
                str(row.get("equal_to_one_chunk", "")),
            ]
        )
    return [
        ("Top-k serving", serving),
        ("evaluate_top_k, 4,096 queries, 50-item histories excluded", evaluation),
    ]


def markdown(results: dict) -> str:
    lines = []
    for title, cells in tables(results):
        lines += [f"**{title}**", "", "| " + " | ".join(cells[0]) + " |"]
        lines.append("|" + "---|" * len(cells[0]))
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        lines.append("")
    return "\n".join(lines)


def restructured_text(results: dict) -> str:
    """The tables as reStructuredText list-tables, for the docs."""
    lines = []
    for title, cells in tables(results):
        lines += [f".. list-table:: {title}", "   :header-rows: 1", ""]
        for row in cells:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {value}" for value in row[1:]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
