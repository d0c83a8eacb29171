"""The next-item recipe (ctxfeatures.recipe, python -m ctxfeatures.recipe)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


class _Script:
    """The recipe's pieces under the names the tests use."""

    from ctxfeatures.recipe import Recipe, run_recipe
    from ctxfeatures.recipe.__main__ import main, parse_args
    from ctxfeatures.recipe._io import USER, as_seconds, read_csv
    from ctxfeatures.recipe._train import (
        MEMBER_SEED_STEP,
        eval_batch_size,
        longest_history,
    )


@pytest.fixture(scope="module")
def script():
    return _Script


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def taste_log(tmp_path: Path, users: int = 120, per_user: int = 25):
    """Each user picks items from one of 8 groups of 25: the history tells
    the group, while popularity is flat and cannot."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(users):
        group = user % 8
        start = rng.integers(1_600_000_000, 1_700_000_000)
        items = rng.choice(25, per_user, replace=False) + 25 * group
        for step, item in enumerate(items):
            rows.append([f"u{user}", f"i{item}", int(start + 3600 * step)])
    events = write_csv(tmp_path / "events.csv", ["who", "what", "when"], rows)
    # Titles share a word per group; each item has one or two tags.
    items = [
        [f"i{i}", f"Film {i} of kind{i // 25}", f"tag{i // 25}|tag{i % 3}"]
        for i in range(200)
    ]
    catalogue = write_csv(tmp_path / "items.csv", ["what", "name", "tags"], items)
    return events, catalogue


def test_the_recipe_is_the_studys_chosen_default(script):
    study = load_script("movielens_context")
    chosen = study.CHOSEN_DEFAULT
    recipe = script.Recipe()
    trained = chosen.model().recipe
    assert (recipe.dim, recipe.temperature, recipe.learning_rate) == (
        chosen.dim,
        chosen.temperature,
        chosen.learning_rate,
    )
    assert (chosen.negatives, chosen.history, chosen.user_id) == (
        "in-batch",
        "recent",
        False,
    )
    assert recipe.batch_size == trained.batch_size and trained.logq
    assert recipe.members == study.MEMBERS
    assert script.MEMBER_SEED_STEP == study.MEMBER_SEED_STEP
    # The study's "recent" history is the last 20 items, decay 0.8.
    history = chosen.query(study.cf.IdEmbedding(4), frozenset())["history"]
    assert (history.window, history.recency_decay) == (
        recipe.window,
        recipe.recency_decay,
    )


@pytest.mark.slow  # trains the recipe 3 times: in the main suite only
def test_end_to_end_beats_popularity_and_serves(script, tmp_path):
    events, catalogue = taste_log(tmp_path)
    export = tmp_path / "recommender"
    report = script.main(
        [
            str(events),
            "--items",
            str(catalogue),
            "--user",
            "who",
            "--item",
            "what",
            "--time",
            "when",
            "--text",
            "name",
            "--multi",
            "tags",
            "--batch-size",
            "64",
            "--max-epochs",
            "8",
            "--learning-rate",
            "0.01",
            "--test-fraction",
            "0.2",
            "--members",  # two: an ensemble, in less time than the default
            "2",
            "--export",
            str(export),
            "--output",
            str(tmp_path / "report.json"),
        ]
    )
    test = report["test"]
    assert set(test) == {"recipe", "recipe, one model", "most popular", "EASE"}
    # Blind to the history, the query would rank alike for every request:
    # one list of 10 of the 200 items, which holds few of any group's 25.
    assert test["recipe"]["hit@10"] > 0.5 > test["most popular"]["hit@10"]
    assert test["recipe"]["hit@100"] > 0.8 * test["EASE"]["hit@100"]
    assert 1 <= report["epochs"] <= 8
    assert report["recipe"]["members"] == 2
    assert json.loads((tmp_path / "report.json").read_text())["test"] == test
    served = tf.saved_model.load(str(export)).signatures["serving_default"]
    history = tf.constant([["i50", "i51", "i52"]])  # three items of group 2
    ids = served(history=history, seconds_since_last=tf.constant([60], tf.int64))
    top = [i.decode() for i in ids["ids"][0, :10].numpy()]
    assert not {"i50", "i51", "i52"} & set(top)  # seen items are excluded
    assert sum(50 <= int(i[1:]) < 75 for i in top) >= 8, top


def test_a_byte_order_mark_does_not_hide_the_first_column(script, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("\ufeffuser_id,item_id\nu,i1\n", encoding="utf-8")
    assert script.read_csv(str(path), ["user_id"], ",")["user_id"].tolist() == ["u"]


def test_evaluation_batches_shrink_with_the_longest_history(script):
    # A step holds batch x longest-history ids: 2^20 at most, 256 requests
    # at most, one at least.
    def log(longest: int) -> dict:
        return {script.USER: np.array(["heavy"] * longest + ["light"])}

    assert script.eval_batch_size(script.longest_history(log(100))) == 256
    assert script.eval_batch_size(script.longest_history(log(2**14))) == 64
    assert script.eval_batch_size(script.longest_history(log(2**21))) == 1


def test_iso_times_are_unix_seconds(script):
    times = np.array(["2024-05-01T12:30:00", "1970-01-01T00:01:00"])
    assert script.as_seconds(times, "when").tolist() == [1714566600, 60]
    assert script.as_seconds(np.array(["60", "-5"]), "when").tolist() == [60, -5]


@pytest.mark.parametrize(
    "rows, flags, message",
    [
        ([["u", "i1", "10"]], ["--item", "item"], "no column 'item'"),
        ([["u", "i1", "noon"]], [], "Received: 'noon'"),
        ([["u", "i9", "10"]], ["--items", "ITEMS"], "not in .*items.csv.*'i9'"),
        ([["u", "i1", "10"]], ["--text", "name"], "--text and --multi"),
        ([["u", "i1", "10"]], ["--items", "ITEMS", "--text", "history"], "rename"),
        ([["u", "i1", "10"], ["v", "", "20"]], [], "line 3: column 'item_id'"),
    ],
)
def test_bad_input_names_the_column_and_the_fix(script, tmp_path, rows, flags, message):
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "t"], rows)
    items = write_csv(tmp_path / "items.csv", ["item_id", "name"], [["i1", "A"]])
    flags = [str(items) if flag == "ITEMS" else flag for flag in flags]
    with pytest.raises(SystemExit, match=message):
        script.main([str(events), "--time", "t", *flags])


def test_members_below_one_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["events.csv", "--members", "0"])
    assert "--members must be >= 1; got 0" in capsys.readouterr().err


def test_leave_last_out_holds_out_each_users_last_event():
    from ctxfeatures.recipe._protocols import test_events, validation_events

    users = np.array(["a", "b", "a", "a", "b", "c", "d", "d", "d"])
    times = np.array([5, 1, 9, 7, 1, 3, 2, 4, 4])
    test = test_events("leave-last-out", users, times, 0.1)
    # a: time 9; b: the later row of a tie; c: one event stays in training;
    # d: the later of two events at time 4.
    assert np.flatnonzero(test).tolist() == [2, 4, 8]
    validation = validation_events("leave-last-out", users, times, ~test)
    assert np.flatnonzero(validation).tolist() == [3, 7]
    assert not (validation & test).any()


def test_random_protocol_draws_a_seeded_share_and_validation_apart():
    from ctxfeatures.recipe._protocols import test_events, validation_events

    users = np.repeat(np.arange(100), 10).astype(str)
    times = np.arange(1000)
    test = test_events("random", users, times, 0.2, seed=1)
    assert test.sum() == 200
    # Drawn, not the latest: test events all through the log.
    assert np.flatnonzero(test).min() < 100 and np.flatnonzero(test).max() > 900
    assert (test_events("random", users, times, 0.2, seed=1) == test).all()
    assert (test_events("random", users, times, 0.2, seed=2) != test).any()
    validation = validation_events("random", users, times, ~test, seed=1)
    assert validation.sum() == 80 and not (validation & test).any()
    # Its own draw: not the test's rows shifted, nor the latest training rows.
    assert np.flatnonzero(validation).min() < 100


def _small_run():
    """40 users x 8 events over 20 items, and a one-epoch one-model recipe."""
    from ctxfeatures.recipe import Recipe

    rng = np.random.default_rng(0)
    events = {
        "user_id": np.repeat([f"u{u}" for u in range(40)], 8),
        "item_id": np.array([f"i{i}" for i in rng.integers(20, size=320)]),
        "timestamp": 1_000_000 + np.arange(320),
    }
    return events, Recipe(dim=8, batch_size=32, max_epochs=1, members=1)


def test_recipe_with_the_random_protocol():
    from ctxfeatures.recipe import run_recipe

    events, recipe = _small_run()
    report = run_recipe(
        events, protocol="random", test_fraction=0.2, recipe=recipe, verbose=False
    )
    assert report["protocol"] == "random"
    assert report["events"]["test"] == 64 and report["events"]["validation"] == 26
    assert set(report["test"]) == {"recipe", "most popular", "EASE"}


def test_no_ease_matrix_is_alive_while_models_train(monkeypatch):
    import gc

    import ctxfeatures.recipe as recipe_module
    from ctxfeatures.recipe import run_recipe

    # EASE's matrix (0.63 GB at 18,000 items, packed) must be gone before the
    # first model is built, not held beside the models' memory.
    fits, seen = [], {}
    choose, fit = recipe_module.choose, cf.baselines.EASE._fit

    def counted_fit(self, *args, **kwargs):
        fits.append(self.l2)
        return fit(self, *args, **kwargs)

    def checked_choose(*args, **kwargs):
        gc.collect()
        seen["fits"] = len(fits)
        seen["alive"] = [
            o for o in gc.get_objects() if isinstance(o, cf.baselines.EASE)
        ]
        return choose(*args, **kwargs)

    monkeypatch.setattr(cf.baselines.EASE, "_fit", counted_fit)
    monkeypatch.setattr(recipe_module, "choose", checked_choose)
    events, recipe = _small_run()
    report = run_recipe(events, recipe=recipe, verbose=False)
    assert "EASE" in report["test"]
    # Three l2s on validation and the chosen one on the test events, all
    # fitted before the models' validation runs, and none left alive.
    assert seen == {"fits": 4, "alive": []}


def test_ease_l2_is_the_best_on_validation(monkeypatch):
    from ctxfeatures.recipe import _report
    from ctxfeatures.recipe._protocols import test_events, validation_events
    from ctxfeatures.recipe._train import with_histories

    rng = np.random.default_rng(0)
    users = np.repeat([f"u{u}" for u in range(200)], 8)
    times = np.tile(1_200_000_000 + 86_400 * np.arange(8), 200)
    groups = np.repeat(np.arange(200) % 4, 8)
    popular = rng.random(users.size) < 0.3
    items = np.array(
        [
            f"p{rng.integers(3)}" if p else f"i{g * 10 + rng.integers(10)}"
            for g, p in zip(groups, popular)
        ]
    )
    log = {"user": users, "item": items, "timestamp": times}
    train = ~test_events("leave-last-out", users, times, 0.1)
    held = validation_events("leave-last-out", users, times, train)
    _, held_out = with_histories(log, train & ~held, held, 8)
    fit = {key: value[train & ~held] for key, value in log.items()}
    catalogue = {"item": np.unique(items)}
    monkeypatch.setattr(_report, "EASE_L2", (0.01, 100.0, 1e6))
    lines = []
    l2, scores = _report.choose_ease_l2(fit, catalogue, held_out, 64, lines.append)
    # Each l2 is fitted and scored; the best one is chosen, not the first or
    # the middle one (small l2 over-fits these noisy groups).
    assert list(scores) == ["0.01", "100", "1e+06"]
    assert scores["100"] > scores["0.01"] and l2 == 100.0
    assert "l2=100 chosen" in lines[0]
    # Too large a catalogue for EASE: no choice, no EASE row.
    monkeypatch.setattr(_report.baselines.EASE, "__init__", _tiny_ease_init)
    assert _report.choose_ease_l2(fit, catalogue, held_out, 64, print) == (None, {})


def _tiny_ease_init(self, l2=250.0, **kwargs):
    self.max_items = 5


# Keras 3 warned at each epoch's end while the data's cardinality was unknown.
@pytest.mark.filterwarnings("error:Your input ran out of data")
def test_recipe_from_python_with_leave_last_out(tmp_path, capsys):
    from ctxfeatures.recipe import Recipe, run_recipe

    rng = np.random.default_rng(0)
    users = np.repeat([f"u{u}" for u in range(40)], 8)
    # Per-user clocks that all start at the same second, as in Amazon logs.
    times = np.tile(1_200_000_000 + 86_400 * np.arange(8), 40)
    groups = np.repeat(np.arange(40) % 4, 8)
    items = np.array([f"i{g * 10 + rng.integers(10)}" for g in groups])
    report = run_recipe(
        {"who": users, "what": items, "when": times},
        user="who",
        item="what",
        time_column="when",
        protocol="leave-last-out",
        recipe=Recipe(dim=8, batch_size=32, max_epochs=2, members=1),
        export=tmp_path / "rec",
    )
    assert report["events"]["test"] == report["events"]["validation"] == 40
    assert set(report["test"]) == {"recipe", "most popular", "EASE"}
    # EASE's l2: the best of the three on validation.
    scores = report["ease_validation_hit@10"]
    assert list(scores) == ["50", "250", "1000"]
    assert report["ease_l2"] == float(max(scores, key=scores.get))
    assert 1 <= report["epochs"] <= 2
    out = capsys.readouterr().out
    assert "[1/6] reading the events" in out and "[6/6] exporting" in out
    # The baselines run (and free EASE's C x C matrix) before any model.
    baselines_stage = out.index("[2/6] most-popular and EASE")
    assert baselines_stage < out.index("[3/6] choosing the number of epochs")
    assert "model 1/1 epoch 1/" in out and "| EASE |" in out
    takes = "it takes history (item ids, most recent last) and seconds_since_last;"
    assert takes in out
    served = cf.serving.load_recommender(tmp_path / "rec")
    ids = served(history=[["i1", "i2"]], seconds_since_last=[60])["ids"]
    assert ids.shape == (1, np.unique(items).size)
    assert not {b"i1", b"i2"} & set(ids.numpy()[0].tolist())  # seen: excluded


def test_the_recipe_runs_from_the_installed_package(tmp_path):
    import subprocess

    # From another folder: the installed package, not the repository's files.
    result = subprocess.run(
        [sys.executable, "-m", "ctxfeatures.recipe", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--protocol {chronological,leave-last-out,random}" in result.stdout
