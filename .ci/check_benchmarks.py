"""CI: each benchmark smoke run wrote a complete table of finite numbers.

No timing thresholds (the machine is noisy): only that every row is there and
every measurement is a finite number. Usage: ``python .ci/check_benchmarks.py
NAME [NAME ...]`` with names from ``CHECKS``, reading ``benchmarks/out``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

OUT = Path("benchmarks/out")


def load(name: str) -> dict:
    return json.loads((OUT / name).read_text())


def finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def run() -> str:
    results = load("results.json")
    assert len(results["rows"]) == 11 and len(results["scale"]) == 2, results
    for row in results["rows"]:
        for side in ("ctxfeatures", "reference"):
            assert finite_positive(row[side]), row
    return f"benchmark table complete: {len(results['rows'])} rows"


def history() -> str:
    results = load("history.json")
    assert len(results["prepare"]) == 2, results
    for prepared in results["prepare"]:
        assert prepared["events"] == 2 * 10**5, prepared
        assert prepared["prepare_seconds"] > 0, prepared
    assert math.isfinite(results["train"]["examples_per_second"]), results
    recipes = [(r["recipe"], r["negatives"]) for r in results["recipes"]]
    chosen = results["recipes"][3]["negatives"]
    expected = [("best", "in-batch"), ("best", "catalogue"), ("best", "mixed")]
    assert recipes == [*expected, ("chosen", chosen)], recipes
    for recipe in results["recipes"]:
        assert finite_positive(recipe["examples_per_second"]), recipe
    ceiling = results["ceiling"]
    assert finite_positive(ceiling["ceiling_examples_per_second"]), ceiling
    return f"history benchmark complete: {len(recipes)} training recipes"


def catalogue() -> str:
    results = load("catalogue.json")
    methods = ["exact", "ivf-8", "ivf-32", "tfrs_brute_force", "faiss_ivf-8"]
    methods += ["faiss_ivf-32", "faiss_hnsw", "tfrs_scann"]
    rows = results["serving"]
    assert [r["method"] for r in rows] == methods * 2, [r["method"] for r in rows]
    for row in rows:
        if "skipped" in row:  # ScaNN has no release for every TensorFlow
            assert row["method"] == "tfrs_scann", row
            continue
        assert 0.0 <= row["recall_100"] <= 1.0 and math.isfinite(row["p50_ms"]), row
        if row["method"] in ("exact", "tfrs_brute_force"):
            assert row["recall_10"] == row["recall_100"] == 1.0, row
    evaluation = results["evaluation"]
    assert len(evaluation) == 2 and evaluation[0]["equal_to_one_chunk"] is True
    return f"catalogue benchmark complete: {len(rows)} serving rows"


def distributed() -> str:
    runs = load("distributed.json")["runs"]
    strategies = ["multi-worker"] * 2 + ["parameter servers"] * 3
    assert [r["strategy"] for r in runs] == strategies, runs
    for run in runs:
        assert finite_positive(run["examples_per_second"]), run
    for run in runs[3:]:
        assert run["user_table_rows"] == 2**20, run
        assert len(run["user_table_parts"]) == 2, run
    return f"distributed benchmark complete: {len(runs)} runs"


def pipeline() -> str:
    results = load("pipeline.json")
    events = results["log"]["events"]
    assert events == results["epoch"]["examples"] == 200_000, results
    assert results["history"]["files"] >= 1, results["history"]
    assert results["history"]["seconds"] > 0, results["history"]
    assert results["adapt"]["vocabularies"]["item_ids"] > 0, results["adapt"]
    assert [run["mode"] for run in results["train"]] == ["parquet", "memory"]
    for run in [results["epoch"], *results["train"]]:
        assert math.isfinite(run["examples_per_second"]), run
        assert math.isfinite(run["loss"]), run
    return f"pipeline benchmark complete: {len(results['train']) + 1} training runs"


def keras() -> str:
    results = load("keras.json")
    assert sorted(row["keras"] for row in results["rows"]) == [2, 3], results
    for row in results["rows"]:
        for key in ("hit@10", "hit@100", "examples_per_s"):
            assert finite_positive(row[key]), row
    assert sorted(row["keras"] for row in results["tutorial_rows"]) == [2, 3]
    for row in results["tutorial_rows"]:
        for key in ("top_100", "examples_per_s"):
            assert finite_positive(row[key]), row
    return "Keras 2 / Keras 3 benchmark complete: 2 recipe and 2 tutorial runs"


def peers() -> str:
    results = load("peers-ml-100k-chrono.json")
    rows = results["rows"]
    names = sorted(rows)
    recipe = ["recipe, per event", "recipe, sequence"]
    expected = ["SASRec+", "chosen on validation", "most popular", *recipe]
    assert names[0].startswith("EASE") and names[1:] == expected, names
    for runs in rows.values():
        for run in runs:
            for key in ("hit@10", "hit@100", "ndcg@10"):
                assert finite_positive(run[key]), run
    chosen = rows["chosen on validation"][0]
    assert chosen["chosen"] in recipe, chosen
    scores = {name: rows[name][0]["validation ndcg@10"] for name in recipe}
    # The per-event model unless the sequence one leads by more than noise.
    best = max(scores, key=scores.get)
    lead = scores[best] - scores[recipe[0]]
    assert chosen["chosen"] == best or lead < 0.01, (chosen, scores)
    return f"one model beside SASRec+, most-popular and EASE complete: {len(rows)} rows"


def sequence() -> str:
    results = load("sequence.json")
    assert len(results["rows"]) == 4, results
    for row in results["rows"].values():
        for key in ("hit@10", "hit@100", "targets_per_s"):
            assert finite_positive(row[key]), row
    assert finite_positive(results["matmul_ceiling_targets_per_s"]), results
    return "sequence / per-event training benchmark complete: 4 rows"


CHECKS: dict[str, Callable[[], str]] = {
    "run": run,
    "history": history,
    "catalogue": catalogue,
    "distributed": distributed,
    "pipeline": pipeline,
    "keras": keras,
    "peers": peers,
    "sequence": sequence,
}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(CHECKS[name]())
