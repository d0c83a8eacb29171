"""The recipe's sequence model (ctxfeatures.recipe.SequenceRecipe)."""

import json

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures.recipe import SequenceRecipe, run_recipe
from ctxfeatures.recipe._io import ITEM
from ctxfeatures.recipe._sequence import (
    PROBABILITY,
    build_sequence_model,
    item_frequency,
)
from ctxfeatures.recipe._train import Parts

# SASRec+'s loss (the catalogue softmax) on this tiny catalogue; the in-batch
# default has its own test below.
SMALL = dict(
    dim=16,
    window=4,
    num_blocks=1,
    length=8,
    batch_targets=64,
    negatives="catalogue",
    l2_normalize=False,
    temperature=0.1,
)


def walks(users: int = 60, steps: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Each user walks a ring of 30 items forward from a random start: the
    next item follows from the last one, but every item is about as popular
    and co-occurs with its neighbours on both sides, so an item-item model
    without order cannot tell the next item (after the user's run) from the
    one before it."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(30, size=users)
    items = (starts[:, None] + np.arange(steps)[None, :]) % 30
    return {
        "user_id": np.repeat([f"u{u}" for u in range(users)], steps),
        "item_id": np.array([f"i{i}" for i in items.ravel()]),
        "timestamp": np.tile(1_000_000 + 60 * np.arange(steps), users),
    }


def test_learns_the_order_that_the_baselines_cannot_see(tmp_path):
    report = run_recipe(
        walks(),
        protocol="leave-last-out",
        recipe=SequenceRecipe(**SMALL, max_epochs=20),
        export=tmp_path / "rec",
        output=tmp_path / "report.json",
        verbose=False,
    )
    test = report["test"]
    # The answer and the item before the run are EASE's two best guesses:
    # NDCG@10 tells whether the answer came first.
    assert test["recipe"]["ndcg@10"] > 0.9
    assert test["recipe"]["ndcg@10"] > test["EASE"]["ndcg@10"] + 0.1
    assert report["recipe"]["kind"] == "SequenceRecipe"
    assert report["epochs"] == int(np.argmax(report["validation_ndcg@10"])) + 1
    assert json.loads((tmp_path / "report.json").read_text())["epochs"] >= 1
    served = cf.serving.load_recommender(tmp_path / "rec")
    # A history i1, i2, i3 (seen, so excluded) is followed by i4.
    ids = served(history=[["i1", "i2", "i3"]], seconds_since_last=[60])["ids"]
    assert ids.numpy()[0][0] == b"i4"


def test_sasrec_towers_serve_from_the_history_alone(tmp_path, capsys):
    # SASRec's towers (heads=False) read no time: the export's signature, the
    # served ranking and the closing message all say the history alone.
    recipe = SequenceRecipe(
        **{**SMALL, "temperature": 1.0},
        block="sasrec",
        heads=False,
        dropout=0.2,
        max_epochs=20,
    )
    report = run_recipe(
        walks(), protocol="leave-last-out", recipe=recipe, export=tmp_path / "rec"
    )
    assert report["test"]["recipe"]["ndcg@10"] > 0.8
    out = capsys.readouterr().out
    assert "it takes history (item ids, most recent last); load it" in out
    served = cf.serving.load_recommender(tmp_path / "rec")
    assert list(served.signature) == ["history"]
    ids = served(history=[["i1", "i2", "i3"]])["ids"].numpy()
    assert ids[0][0] == b"i4"
    # A request that carries the time too is served the same.
    timed = served(history=[["i1", "i2", "i3"]], seconds_since_last=[60])
    np.testing.assert_array_equal(timed["ids"].numpy(), ids)


def test_order_is_what_it_learns():
    """The same walks in reverse time order: the answer is the item before."""
    events = walks()
    events["timestamp"] = events["timestamp"][::-1].copy()
    report = run_recipe(
        events,
        protocol="leave-last-out",
        recipe=SequenceRecipe(**SMALL, max_epochs=20),
        verbose=False,
    )
    assert report["test"]["recipe"]["ndcg@10"] > 0.9


def test_stops_early_on_validation():
    report = run_recipe(
        walks(users=30),
        protocol="leave-last-out",
        recipe=SequenceRecipe(**SMALL, learning_rate=1e-9, max_epochs=20, patience=1),
        verbose=False,
    )
    # A model that cannot move cannot get better: stopped after patience.
    assert len(report["validation_ndcg@10"]) < 20
    assert report["epochs"] == int(np.argmax(report["validation_ndcg@10"])) + 1


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(window=0), "`window` must be an integer >= 1. Received: window=0"),
        (dict(dim=2.5), "`dim` must be an integer >= 1. Received: dim=2.5"),
        (dict(dropout=1.0), "`dropout` must be in [0, 1). Received: dropout=1.0"),
        (dict(temperature=0), "`temperature` must be > 0. Received: temperature=0"),
        (dict(l2_normalize="yes"), "`l2_normalize` must be True or False."),
        (dict(block="post"), "`block` must be one of ['pre-norm', 'sasrec']."),
        (dict(heads=0), "`heads` must be True or False. Received: heads=0"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(ValueError) as error:
        SequenceRecipe(**settings)
    assert message in str(error.value)


def test_the_command_line_takes_the_sequence_model(tmp_path, capsys):
    from ctxfeatures.recipe.__main__ import main

    events = walks(users=30)
    path = tmp_path / "events.csv"
    lines = ["user_id,item_id,timestamp"] + [
        f"{u},{i},{t}" for u, i, t in zip(*events.values())
    ]
    path.write_text("\n".join(lines) + "\n")
    report = main(
        [
            str(path),
            "--protocol",
            "leave-last-out",
            "--model",
            "sequence",
            "--dim",
            "8",
            "--window",
            "3",
            "--num-blocks",
            "1",
            "--length",
            "6",
            "--max-epochs",
            "2",
            "--l2-normalize",
            "--block",
            "sasrec",
            "--quiet",
        ]
    )
    assert report["recipe"]["kind"] == "SequenceRecipe"
    assert report["recipe"]["num_blocks"] == 1 and report["recipe"]["dim"] == 8
    assert report["recipe"]["l2_normalize"] is True
    assert report["recipe"]["block"] == "sasrec"
    assert "| recipe |" in capsys.readouterr().out


def test_a_setting_of_the_other_model_is_refused(capsys):
    from ctxfeatures.recipe.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["events.csv", "--model", "sequence", "--members", "3"])
    assert "--members is not a setting of --model sequence" in (capsys.readouterr().err)


@pytest.mark.filterwarnings("error:Your input ran out of data")
def test_offered_both_it_trains_the_better_on_validation(tmp_path):
    from ctxfeatures.recipe import Recipe

    report = run_recipe(
        walks(),
        protocol="leave-last-out",
        recipe=[
            Recipe(dim=8, batch_size=64, max_epochs=2, members=1),
            SequenceRecipe(**SMALL, max_epochs=20),
        ],
        export=tmp_path / "rec",
        verbose=False,
    )
    offered = {row["kind"]: row for row in report["offered"]}
    assert set(offered) == {"Recipe", "SequenceRecipe"}
    best = max(offered.values(), key=lambda row: row["ndcg@10"])
    assert report["recipe"]["kind"] == best["kind"]
    assert report["epochs"] == best["epochs"]
    # The sequence model learns the walks' order; two epochs of a small
    # per-event model do not.
    assert best["kind"] == "SequenceRecipe"
    assert report["validation_ndcg@10"][best["epochs"] - 1] == best["ndcg@10"]


def test_search_candidates_vary_temperature_recency_encoder_and_negatives():
    from ctxfeatures.recipe import Recipe, search_candidates

    offered = search_candidates(members=1, dim=32)
    per_event = [r for r in offered if isinstance(r, Recipe)]
    assert [(r.temperature, r.recency_decay, r.encoder) for r in per_event] == [
        (0.2, 0.8, "mean"),  # the default first: it wins ties
        (0.2, 0.5, "mean"),
        (0.1, 0.8, "mean"),
        (0.1, 0.5, "mean"),
        (0.2, 0.8, "attention"),
    ]
    assert all(r.members == 1 and r.dim == 32 for r in per_event)
    sasrec_plus = SequenceRecipe(
        dim=32,
        negatives="catalogue",
        l2_normalize=False,
        temperature=1.0,
        block="sasrec",
        heads=False,
        dropout=0.5,
        patience=5,
    )
    assert offered[-2:] == [SequenceRecipe(dim=32), sasrec_plus]
    # A SASRec+ setting given is fixed in its candidate too.
    assert search_candidates(dropout=0.2)[-1].dropout == 0.2
    # A searched setting given is fixed: the grid shrinks to the rest.
    fixed = search_candidates(temperature=0.3)
    assert [r.temperature for r in fixed] == [0.3] * 5
    assert [(r.encoder, r.recency_decay) for r in fixed[:3]] == [
        ("mean", 0.8),
        ("mean", 0.5),
        ("attention", 0.8),
    ]
    # Attention reads no recency decay: only temperatures are searched.
    attention = search_candidates(encoder="attention", negatives="catalogue")
    assert [(r.encoder, r.temperature) for r in attention[:-1]] == [
        ("attention", 0.2),
        ("attention", 0.1),
    ]
    assert attention[-1] == SequenceRecipe(negatives="catalogue")
    with pytest.raises(ValueError, match=r"Unknown settings \['dimension'\]"):
        search_candidates(dimension=8)
    with pytest.raises(ValueError, match="`encoder` must be one of"):
        Recipe(encoder="lstm")


def test_the_attention_encoder_reads_the_history(monkeypatch):
    import ctxfeatures.recipe._train as train_module
    from ctxfeatures.recipe import Recipe

    calls = []

    class Spy(cf.AttentionHistory):
        def embed(self, prepared, training=None):
            calls.append(1)  # at tracing: once per traced function
            return super().embed(prepared, training=training)

    monkeypatch.setattr(train_module, "AttentionHistory", Spy)
    report = run_recipe(
        walks(users=20),
        protocol="leave-last-out",
        recipe=Recipe(
            dim=8, batch_size=32, max_epochs=1, members=1, encoder="attention"
        ),
        verbose=False,
    )
    assert report["recipe"]["encoder"] == "attention"
    # The query tower encoded histories with it (a mean would not call it).
    assert calls


def test_the_command_line_searches_and_reports_each_candidate(tmp_path):
    from ctxfeatures.recipe.__main__ import main

    events = walks(users=30)
    path = tmp_path / "events.csv"
    lines = ["user_id,item_id,timestamp"] + [
        f"{u},{i},{t}" for u, i, t in zip(*events.values())
    ]
    path.write_text("\n".join(lines) + "\n")
    flags = ["--dim", "8", "--max-epochs", "1", "--members", "1", "--quiet"]
    report = main(
        [str(path), "--protocol", "leave-last-out", "--model", "search"]
        + flags
        + ["--length", "6", "--num-blocks", "1"]
    )
    offered = report["offered"]
    assert [row["changed"] for row in offered[:4]] == [
        {"dim": 8, "max_epochs": 1, "members": 1},
        {"dim": 8, "recency_decay": 0.5, "max_epochs": 1, "members": 1},
        {"dim": 8, "temperature": 0.1, "max_epochs": 1, "members": 1},
        {
            "dim": 8,
            "recency_decay": 0.5,
            "temperature": 0.1,
            "max_epochs": 1,
            "members": 1,
        },
    ]
    assert offered[4]["changed"]["encoder"] == "attention"
    assert [row["kind"] for row in offered[5:]] == ["SequenceRecipe"] * 2
    assert offered[6]["changed"]["negatives"] == "catalogue"
    assert offered[6]["changed"]["block"] == "sasrec"
    assert offered[6]["changed"]["heads"] is False
    best = max(offered, key=lambda row: row["ndcg@10"])
    first, count = offered[0]["ndcg@10"], report["events"]["validation"]
    if best["ndcg@10"] <= first + np.sqrt(first / count):
        best = offered[0]  # a lead within noise keeps the default
    assert report["recipe"]["kind"] == best["kind"]
    chosen = {k: v for k, v in report["recipe"].items() if k != "kind"}
    assert best["changed"].items() <= chosen.items()


def test_a_lead_within_noise_keeps_the_first_offered():
    from ctxfeatures.recipe._choose import margin, pick

    # NDCG@10 0.04 over 10,000 events: standard error at most sqrt(0.04/1e4).
    assert margin(0.04, 10_000) == pytest.approx(0.002)
    assert margin(0.04, -2) == 0.0  # an unknown count: no margin
    assert pick([0.040, 0.041, 0.0415], 0.002) == 0  # leads of 0.001, 0.0015
    assert pick([0.040, 0.041, 0.043], 0.002) == 2  # a lead of 0.003
    assert pick([0.050, 0.040], 0.0) == 0
    assert pick([0.040, 0.041], 0.0) == 1


@pytest.mark.parametrize("recipe", [[], "sequence", [SequenceRecipe(), 3]])
def test_a_recipe_that_is_not_one_is_refused(recipe):
    with pytest.raises(ValueError, match="`recipe` must be a Recipe, a Sequence"):
        run_recipe(walks(users=3), protocol="leave-last-out", recipe=recipe)


def test_item_frequency_is_each_events_items_share():
    shares = item_frequency(np.array(["a", "b", "a", "c"]))
    np.testing.assert_allclose(shares, [0.5, 0.25, 0.5, 0.25])


def test_in_batch_negatives_with_logq_learn_the_order_too():
    report = run_recipe(
        walks(),
        protocol="leave-last-out",
        recipe=SequenceRecipe(
            **{
                **SMALL,
                "length": 4,
                "negatives": "in-batch",
                "l2_normalize": True,
                "temperature": 0.2,
            },
            max_epochs=20,
        ),
        verbose=False,
    )
    assert report["recipe"]["negatives"] == "in-batch"
    assert report["test"]["recipe"]["ndcg@10"] > report["test"]["EASE"]["ndcg@10"]
    parts = Parts({ITEM: np.array(["i0", "i1"])}, [], [], "|")
    model = build_sequence_model(SequenceRecipe(), parts)  # the default
    assert model.sampling_probability_key == PROBABILITY
    assert model.remove_accidental_hits
    wired = build_sequence_model(SequenceRecipe(block="sasrec", dim=8), parts)
    encoders = [layer for _, _, layer in wired.query_tower._slots()]
    assert [e.block for e in encoders if hasattr(e, "block")] == ["sasrec"]


def test_without_heads_the_towers_are_sasrecs():
    # The query is the encoder alone and items score by the table it reads;
    # item features keep the candidate's head (their only way in).
    bare = Parts({ITEM: np.array(["i0", "i1", "i2"])}, [], [], "|")
    recipe = SequenceRecipe(heads=False, dim=8, l2_normalize=False)
    model = build_sequence_model(recipe, bare)
    query = [feature for _, feature, _ in model.query_tower._slots()]
    assert query == ["history"]
    assert list(model.query_tower.head_units) == []
    assert list(model.candidate_tower.head_units) == []
    encoder = [layer for _, _, layer in model.query_tower._slots()][0]
    vectors = model.candidate_tower({ITEM: tf.constant(["i1", "i2"])})
    table = encoder._table()(encoder.lookup_ids(tf.constant(["i1", "i2"])))
    np.testing.assert_allclose(vectors.numpy(), table.numpy())
    titled = Parts(
        {ITEM: np.array(["i0", "i1"]), "title": np.array(["a b", "c"])},
        ["title"],
        [],
        "|",
    )
    model = build_sequence_model(SequenceRecipe(heads=False, dim=8), titled)
    assert list(model.candidate_tower.head_units) == [8]
    assert list(model.query_tower.head_units) == []
