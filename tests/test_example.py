"""The MovieLens study end to end, and the tutorial reproduction."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "movielens_context.py"


def load_study():
    """The study script as a module (dataclasses resolve it by name)."""
    spec = importlib.util.spec_from_file_location("movielens_context", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["movielens_context"] = module
    spec.loader.exec_module(module)
    return module


def run_study(data_dirs, tmp_path, *args):
    folders = data_dirs if isinstance(data_dirs, list) else [data_dirs]
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data-dir",
            *map(str, folders),
            "--output",
            str(tmp_path),
            "--verbose",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        # Generous: beside other jobs on 2 cores the quick study took 13 min.
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((tmp_path / "results.json").read_text()), result.stdout


def test_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--quick" in result.stdout


def test_the_validation_slice_is_the_latest_tenth_of_training_in_time():
    # Rows out of time order, as in ml-latest-small's file (sorted by user):
    # the slice must be the latest training events, not the last rows.
    study = load_study()
    rng = np.random.default_rng(0)
    times = rng.permutation(1000).astype(np.int64) * 60
    train = np.ones(1000, bool)
    train[rng.choice(1000, 200, replace=False)] = False
    inner, validation = study.validation_masks({"timestamp": times}, train)
    assert not (inner & validation).any() and ((inner | validation) == train).all()
    assert validation.sum() == 80
    assert times[inner].max() < times[validation].min()
    # ... and no test (non-training) event is read.
    assert not validation[~train].any()


def test_each_setup_keeps_its_own_chosen_recipe():
    # A search per setup: the table must not label every setup's chosen row
    # with the last setup's recipe.
    study = load_study()
    run = {"hit@10": 0.1, "hit@100": 0.5, "ndcg@10": 0.05}
    setups = [s.name for s in study.SETUPS[:2]]
    runs = {(setup, "next-event", study.CHOSEN): [run] for setup in setups}
    kinds = {(setup, study.CHOSEN): ("model", f"recipe of {setup}") for setup in setups}
    rows = study.table_data(runs, kinds)
    assert [row["description"] for row in rows] == [
        f"recipe of {setup}" for setup in setups
    ]


def write_log(folder, users: int = 30, steps: int = 6):
    """An events.csv of per-user clocks: user u walks items u, u+1, ..."""
    folder.mkdir()
    lines = ["user_id,item_id,timestamp"]
    for user in range(users):
        for step in range(steps):
            item = (user + step) % 12
            lines.append(f"u{user},i{item},{1_200_000_000 + 86_400 * step}")
    (folder / "events.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_one_model_part_runs_on_every_event_log_folder(tmp_path):
    load_study()
    import study_next_item as part

    log = write_log(tmp_path / "shop-log")
    found = part.setups(["ml-100k"], ["chronological"], [str(tmp_path), str(log)])
    assert [s.name for s in found] == [
        "ml-100k, chronological 80%",
        "shop-log, leave-last-out",
    ]
    # Without an event-log folder, MovieLens only (the part says so).
    assert [s.protocol for s in part.setups(["ml-latest-small"], ["random"], [])] == []


def test_the_one_model_seed_chooses_on_validation_and_ranks_beside_ease(tmp_path):
    load_study()
    import study_next_item as part

    log = write_log(tmp_path / "shop-log")
    setup = part.NextSetup(str(log), "leave-last-out")
    run = part.run_seed(setup, [], seed=42, quick=True)
    assert set(run["rows"]) == {"most popular", "EASE", "one model"}
    offered = run["offered"]
    assert [o["kind"] for o in offered] == ["Recipe"] * 5 + ["SequenceRecipe"] * 2
    # The label names the chosen candidate (the choice itself is the
    # recipe's, tested in test_sequence_recipe.py).
    labels = {
        "sequence, in-batch",
        "sequence, catalogue",
        "per event, attention, t=0.2",
    }
    labels |= {f"per event, t={t:g}, d={d:g}" for t in (0.1, 0.2) for d in (0.5, 0.8)}
    assert run["chosen"] in labels
    # A width the search was told to use is named (search_candidates(dim=128)).
    wide = {"kind": "Recipe", "temperature": 0.1, "recency_decay": 0.5, "dim": 128}
    assert part.label(wide) == "per event, t=0.1, d=0.5, 128-d"
    assert run["ease_l2"] in (50.0, 250.0, 1000.0)
    # 30 users, each with its last event held out.
    text = part.markdown(
        {"setups": [{"setup": setup.name, "runs": [run]}], "skipped": None}
    )
    assert "| shop-log, leave-last-out | one model, chosen on validation |" in text


def test_the_one_model_table_gives_means_and_ratios_to_ease():
    load_study()
    import study_next_item as part

    def run(ease, model, chosen):
        rows = {
            "most popular": {"hit@10": 0.1, "hit@100": 0.2, "ndcg@10": 0.05},
            "EASE": {"hit@10": ease, "hit@100": 0.4, "ndcg@10": 0.1},
            "one model": {"hit@10": model, "hit@100": 0.6, "ndcg@10": 0.2},
        }
        return {"rows": rows, "chosen": chosen, "peak_rss_gb": 1.25}

    result = {
        "setups": [
            {
                "setup": "s",
                "runs": [
                    run(0.2, 0.3, "sequence"),
                    run(0.2, 0.5, "per event, t=0.1, d=0.5"),
                ],
            }
        ],
        "skipped": "no folder",
    }
    cells = part.table_cells(result)
    model = cells[3]
    # mean 0.4 over seeds 0.3 and 0.5; sd 0.141; 0.4 / 0.2 = 2.00x; 0.6 / 0.4.
    assert model[2:7] == [
        "0.400 ± 0.141",
        "0.600 ± 0.000",
        "0.200 ± 0.000",
        "2.00x",
        "1.50x",
    ]
    assert model[7:] == ["sequence (1); per event, t=0.1, d=0.5 (1)", "1.25 GB"]
    assert "Skipped: no folder." in part.markdown(result)
    assert ".. list-table:: one model" in part.restructured_text(result)


@pytest.mark.slow
def test_quick_mode_end_to_end(ml100k, tmp_path):
    chosen = "chosen by validation"
    results, stdout = run_study(
        ml100k,
        tmp_path,
        "--quick",
        "--datasets",
        "ml-100k",
        "--splits",
        "chronological",
        # "best" runs in test_quick_mode_on_latest_small: one fixed model here.
        "--models",
        "tutorial",
        chosen,
    )
    rows = {(r["protocol"], r["model"]): r for r in results["rows"]}
    baselines = ["most popular", "recently popular (30 days)", "EASE (l2=250)"]
    assert set(rows) == {
        ("tutorial", "most popular"),
        ("tutorial", "recently popular (30 days)"),
        ("tutorial", "tutorial"),
        *(("next-event", name) for name in [*baselines, "tutorial", chosen]),
        ("next-event", f"{chosen}, 3 seeds ensembled"),
    }
    for row in rows.values():
        assert row["setup"] == "ml-100k, chronological 80%"
        for metric in ("hit@10", "hit@100", "ndcg@10"):
            assert 0.0 < row[metric]["mean"] < 1.0, row
    # EASE is the reference number on this split (seed-free).
    ease = rows[("next-event", "EASE (l2=250)")]["hit@100"]["mean"]
    assert ease == pytest.approx(0.564, abs=0.005)
    # The chosen recipe came from two trials on the validation slice, each
    # scored against EASE fitted on the same (training) events.
    search = results["search"]["ml-100k, chronological 80%"]
    assert len(search["trials"]) == 2 and search["validation_events"] > 7000
    assert 0 < search["validation_ease"]["hit@100"] < 1
    # Each trial ran in a process of its own, which reports its peak RSS.
    assert all(0.1 < t["peak_rss_gb"] < 4 for t in search["trials"])
    assert rows[("next-event", chosen)]["description"].startswith(
        search["chosen"]["history"]
    )
    assert results["meta"]["peak_rss_gb"] > 0.1
    table = (tmp_path / "results.md").read_text()
    assert "**next-event protocol**" in table and "hit@100 / EASE" in table
    rst = (tmp_path / "results.rst").read_text()
    assert ".. list-table:: next-event protocol" in rst and "   * - setup" in rst
    # The chart needs the "examples" extra (matplotlib), which tests lack.
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (tmp_path / "results.png").exists() == has_matplotlib
    assert "hit@100" in stdout


@pytest.mark.slow
def test_quick_mode_on_latest_small(ml100k, ml_latest_small, tmp_path):
    results, _ = run_study(
        [ml100k, ml_latest_small],
        tmp_path,
        "--quick",
        "--datasets",
        "ml-latest-small",
        "--models",
        "best",
    )
    rows = {r["model"]: r for r in results["rows"] if r["protocol"] == "next-event"}
    assert {r["setup"] for r in results["rows"]} == {
        "ml-latest-small, chronological 90%"
    }
    # The reference numbers for this protocol (seed-free baselines).
    assert rows["EASE (l2=250)"]["hit@100"]["mean"] == pytest.approx(0.257, abs=0.005)
    assert rows["most popular"]["hit@100"]["mean"] == pytest.approx(0.150, abs=0.005)
    assert 0.0 < rows["best"]["hit@10"]["mean"] < 1.0


@pytest.mark.slow
def test_reproduces_the_tutorial_table(ml100k, tmp_path):
    results, _ = run_study(
        ml100k,
        tmp_path,
        "--seeds",
        "1",
        "--splits",
        "random",
        "--no-baselines",
        "--models",
        "tutorial",
        "tutorial+time",
    )
    rows = {
        r["model"]: r["hit@100"]["mean"]
        for r in results["rows"]
        if r["protocol"] == "tutorial"
    }
    assert rows["tutorial"] == pytest.approx(0.21, abs=0.03)
    assert rows["tutorial+time"] == pytest.approx(0.25, abs=0.03)
