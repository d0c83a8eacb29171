"""Next-item recommendations for your own event log, with the study's recipe.

    python examples/next_item.py ratings.csv --items movies.csv \\
        --user userId --item movieId --time timestamp --text title --multi genres

Reads a CSV of events (one row per interaction: a user, an item and an integer
Unix-seconds or ISO-8601 time) and, optionally, a CSV of item features: text
columns (``--text``, e.g. titles) and multi-valued columns (``--multi``, e.g.
``"Action|Comedy"``). Then, never reading the test events to choose anything:

1. the latest ``--test-fraction`` of the events in time are the test;
2. every event gets its user's earlier items (``add_history`` on the whole
   log: never the event itself, nor anything at the same second or later);
3. the number of epochs is chosen on a validation slice, the latest 10% in
   time of the training events (early stopping on validation hit@100);
4. the recipe trains on all training events for that many epochs, three
   times from different seeds, and the three models are ensembled (their
   scores summed, ``ctxfeatures.Ensemble``);
5. test hit@10, hit@100 and NDCG@10 of the ensemble and of its first model
   are printed beside most-popular and EASE, items the user has already seen
   excluded for all;
6. with ``--export DIR`` the ensemble is saved as one recommender that
   takes a request's history and returns the top 100 unseen items.

The recipe is the MovieLens study's ``CHOSEN_DEFAULT`` (docs/study.rst), the
setting its validation search chose most often across data sets: the last 20
items (recency decay 0.8) in the candidates' own item table and the time since
the previous event on the query side; item id, text and multi-valued features
on the candidate side; cosine similarity / 0.2, 64-d, in-batch negatives with
the logQ correction, Adam 1.5e-3, batches of 1024; three models, as the
study's "ensembled" rows. It is where to start on a new data set; the study's
search (examples/movielens_context.py) tunes it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys

import numpy as np
import tensorflow as tf

import ctxfeatures as cf  # sets up Keras 2 before TensorFlow is used
from ctxfeatures import baselines, evaluation, splits
from ctxfeatures.history import add_history

KS = (10, 100)
# Training events carry their last TRAIN_HISTORY items (the recipe reads 20);
# test requests carry every earlier item, so that all seen items are excluded.
TRAIN_HISTORY = 50
# Test requests per evaluation step, fewer when histories are long: a step
# holds batch x longest-history ids, and one user with 10^5 events would make
# 256 requests 2.5 x 10^7 ids wide.
EVAL_BATCH, EVAL_CELLS = 256, 2**20
USER, ITEM, TIME = "user", "item", "timestamp"
MEMBER_SEED_STEP = 100


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The study's ``CHOSEN_DEFAULT``; a test keeps the two equal."""

    dim: int = 64
    window: int = 20
    recency_decay: float = 0.8
    temperature: float = 0.2
    learning_rate: float = 1.5e-3
    batch_size: int = 1024
    max_epochs: int = 10  # early stopping on the validation slice picks fewer
    members: int = 3  # models trained from different seeds, ensembled


# ----------------------------------------------------------------- reading
def read_csv(path: str, columns: list[str], delimiter: str) -> dict[str, np.ndarray]:
    """The named ``columns`` of a CSV file with a header row, as strings."""
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header row.")
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(
                f"{path} has no column {missing[0]!r}; its columns are {header}. "
                "Name the right ones with --user, --item, --time, --text, --multi."
            )
        where = [header.index(c) for c in columns]
        rows = [[row[i] for i in where] for row in reader if row]
    if not rows:
        raise ValueError(f"{path} has a header but no rows.")
    return dict(zip(columns, (np.asarray(v, dtype=str) for v in zip(*rows))))


def as_seconds(values: np.ndarray, name: str) -> np.ndarray:
    """Integer Unix seconds, or ISO-8601 times converted to them."""
    try:
        return values.astype(np.int64)
    except ValueError:
        pass
    try:
        return values.astype("datetime64[s]").astype(np.int64)
    except ValueError:
        bad = next((v for v in values.tolist() if not _is_time(v)), values[0])
        raise ValueError(
            f"Column {name!r} must hold integer Unix seconds or ISO-8601 times "
            f"such as 2024-05-01T12:30:00, one kind per file. Received: {bad!r}"
        ) from None


def _is_time(value: str) -> bool:
    if value.lstrip("-").isdigit():
        return True
    try:
        np.datetime64(value, "s")
    except ValueError:
        return False
    return True


def load(args: argparse.Namespace) -> tuple[dict, dict, list[str], list[str]]:
    """(events, catalogue, text columns, multi-valued columns)."""
    raw = read_csv(args.events, [args.user, args.item, args.time], args.delimiter)
    for name in (args.user, args.item):
        # An empty id would read as a history's padding.
        empty = np.flatnonzero(raw[name] == "")
        if empty.size:
            raise ValueError(
                f"{args.events} line {empty[0] + 2}: column {name!r} is empty; "
                "drop or fill such rows."
            )
    events = {
        USER: raw[args.user],
        ITEM: raw[args.item],
        TIME: as_seconds(raw[args.time], args.time),
    }
    features = [*args.text, *args.multi]
    taken = {USER, ITEM, TIME, "history", "seconds_since_last", "probability"}
    if taken & set(features):
        raise ValueError(
            f"Item feature names {sorted(taken & set(features))} are used by the "
            "recipe itself: rename those columns in the items file."
        )
    if not args.items:
        if features:
            raise ValueError("--text and --multi name columns of --items: pass it.")
        return events, {ITEM: np.unique(events[ITEM])}, [], []
    table = read_csv(args.items, [args.item, *features], args.delimiter)
    ids = table.pop(args.item)
    position = {item: row for row, item in enumerate(ids.tolist())}
    if len(position) != ids.size:
        raise ValueError(f"{args.items} lists an item twice in {args.item!r}.")
    unknown = [i for i in np.unique(events[ITEM]).tolist() if i not in position]
    if unknown:
        raise ValueError(
            f"{len(unknown)} items of {args.events} are not in {args.items}, "
            f"e.g. {unknown[0]!r}: every item needs a row of features."
        )
    rows = np.asarray([position[i] for i in events[ITEM].tolist()])
    # Training examples carry their item's features, as the catalogue does.
    events.update({name: column[rows] for name, column in table.items()})
    return events, {ITEM: ids, **table}, list(args.text), list(args.multi)


# ----------------------------------------------------------------- splits
def latest(times: np.ndarray, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Which of ``rows`` fall in the latest ``fraction`` of them in time."""
    index = tf.data.Dataset.from_tensor_slices({"row": rows, TIME: times[rows]})
    _, later = splits.chronological_split(index, 1.0 - fraction)
    chosen = np.fromiter(later.map(lambda x: x["row"]).as_numpy_iterator(), np.int64)
    return np.isin(rows, chosen)


def longest_history(events: dict[str, np.ndarray]) -> int:
    """Events of the most active user: the width of a test request's history."""
    return int(np.unique(events[USER], return_counts=True)[1].max())


def eval_batch_size(longest: int) -> int:
    return max(1, min(EVAL_BATCH, EVAL_CELLS // longest))


def with_histories(
    events: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, longest: int
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Training and test events, each with the user's earlier items."""
    # Test events first, so that each part is a cheap take() / skip().
    order = np.concatenate([np.flatnonzero(test), np.flatnonzero(train)])
    log = tf.data.Dataset.from_tensor_slices({k: v[order] for k, v in events.items()})
    histories = dict(user=USER, item=ITEM, time=TIME)
    count = int(test.sum())
    return (
        add_history(log, **histories, max_length=TRAIN_HISTORY).skip(count),
        add_history(log, **histories, max_length=longest).take(count),
    )


# ----------------------------------------------------------------- the model
def build(
    recipe: Recipe,
    train: tf.data.Dataset,
    catalogue: dict[str, np.ndarray],
    text: list[str],
    multi: list[str],
    separator: str,
) -> cf.RetrievalModel:
    item = cf.IdEmbedding(recipe.dim)
    query = {
        "history": cf.HistoryEmbedding(
            item_embedding=item,
            window=recipe.window,
            recency_decay=recipe.recency_decay,
        ),
        "seconds_since_last": cf.DurationBuckets(8),
    }
    candidate = {
        ITEM: item,
        **{name: cf.TextEmbedding(recipe.dim) for name in text},
        **{name: cf.MultiIdEmbedding(16, separator=separator) for name in multi},
    }
    model = cf.build_retrieval_model(
        query,
        candidate,
        tf.data.Dataset.from_tensor_slices(catalogue),
        candidate_id=ITEM,
        adapt_data=train,
        head_units=(recipe.dim,),
        l2_normalize=True,
        temperature=recipe.temperature,
        candidate_sampling_probability="probability",
    )
    model.compile(tf.keras.optimizers.Adam(recipe.learning_rate))
    return model


def fit(
    model: cf.RetrievalModel,
    recipe: Recipe,
    train: tf.data.Dataset,
    epochs: int,
    seed: int,
    callbacks: list | None = None,
) -> dict:
    """Trains with in-batch negatives and the logQ correction."""
    data = cf.with_sampling_probability(train, ITEM, "probability")
    batches = data.shuffle(100_000, seed=seed).batch(recipe.batch_size)
    prepared = model.prepare(batches).cache()  # lookups and tokenising once
    return model.fit(prepared, epochs=epochs, verbose=0, callbacks=callbacks).history


def choose_epochs(
    recipe: Recipe,
    events: dict[str, np.ndarray],
    train: np.ndarray,
    parts: tuple,
    seed: int,
    longest: int,
) -> tuple[int, list[float]]:
    """Epochs at the best validation hit@100 (the test events are not read)."""
    inner_rows = np.flatnonzero(train)
    validation = np.zeros_like(train)
    validation[inner_rows] = latest(events[TIME], inner_rows, 0.1)
    inner = train & ~validation
    fitted, held_out = with_histories(events, inner, validation, longest)
    tf.keras.utils.set_random_seed(seed)
    model = build(recipe, fitted, *parts)
    check = cf.TopKValidation(
        held_out, ks=(100,), exclude="history", batch_size=eval_batch_size(longest)
    )
    stop = tf.keras.callbacks.EarlyStopping("val_top_100", mode="max", patience=2)
    history = fit(model, recipe, fitted, recipe.max_epochs, seed, [check, stop])
    curve = [float(v) for v in history["val_top_100"]]
    return int(np.argmax(curve)) + 1, curve


def metrics(result: dict) -> dict[str, float]:
    return {
        "hit@10": result["top_10"],
        "hit@100": result["top_100"],
        "ndcg@10": result["ndcg_10"],
    }


def train_members(
    recipe: Recipe, train: tf.data.Dataset, parts: tuple, epochs: int, seed: int
) -> list[cf.RetrievalModel]:
    """The recipe from ``recipe.members`` seeds: seed, seed + 100, ..."""
    models = []
    for member in range(recipe.members):
        # 100 apart: runs with --seed 42, 43 and 44 share no member.
        member_seed = seed + MEMBER_SEED_STEP * member
        tf.keras.utils.set_random_seed(member_seed)
        model = build(recipe, train, *parts)
        fit(model, recipe, train, epochs, member_seed)
        models.append(model)
    return models


def compare(
    ensemble: cf.Ensemble,
    train_columns: dict[str, np.ndarray],
    catalogue: dict[str, np.ndarray],
    test: tf.data.Dataset,
    batch: int,
) -> dict[str, dict]:
    """Test metrics of the recipe, most-popular and EASE, by one evaluator."""
    rankers = {"recipe": ensemble}
    if len(ensemble.models) > 1:
        rankers["recipe, one model"] = ensemble.models[0]
    results = {
        name: metrics(
            ranker.evaluate_top_k(test.batch(batch), ks=KS, exclude="history")
        )
        for name, ranker in rankers.items()
    }
    scorers = {"most popular": baselines.MostPopular(), "EASE": baselines.EASE(250.0)}
    for name, scorer in scorers.items():
        if name == "EASE" and catalogue[ITEM].size > scorer.max_items:
            print(f"EASE skipped: {catalogue[ITEM].size:,} items > max_items.")
            continue
        scorer.fit(train_columns, user=USER, item=ITEM, candidates=catalogue[ITEM])
        results[name] = metrics(
            evaluation.evaluate_top_k(
                scorer, test, ks=KS, exclude="history", batch_size=batch
            )
        )
    return results


def table(results: dict[str, dict]) -> str:
    reference = results.get("EASE")
    lines = [
        "| model | hit@10 | hit@100 | NDCG@10 | hit@10 / EASE | hit@100 / EASE |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        ratios = [
            f"{row[k] / reference[k]:.2f}x" if reference and reference[k] else "n/a"
            for k in ("hit@10", "hit@100")
        ]
        lines.append(
            f"| {name} | {row['hit@10']:.3f} | {row['hit@100']:.3f} "
            f"| {row['ndcg@10']:.3f} | {' | '.join(ratios)} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    recipe = Recipe(
        **{
            field.name: getattr(args, field.name)
            for field in dataclasses.fields(Recipe)
            if getattr(args, field.name, None) is not None
        }
    )
    events, catalogue, text, multi = load(args)
    rows = np.arange(events[TIME].size)
    test = latest(events[TIME], rows, args.test_fraction)
    train = ~test
    parts = (catalogue, text, multi, args.separator)
    longest = longest_history(events)  # one pass over the log, used thrice
    epochs, curve = choose_epochs(recipe, events, train, parts, args.seed, longest)
    train_data, test_data = with_histories(events, train, test, longest)
    models = train_members(recipe, train_data, parts, epochs, args.seed)
    ensemble = cf.Ensemble(models)  # evaluated, then exported
    train_columns = {k: v[train] for k, v in events.items()}
    batch = eval_batch_size(longest)
    results = compare(ensemble, train_columns, catalogue, test_data, batch)
    print(
        f"{int(train.sum()):,} training and {int(test.sum()):,} test events, "
        f"{catalogue[ITEM].size:,} items; {epochs} epochs chosen on validation "
        f"(hit@100 by epoch: {', '.join(f'{v:.3f}' for v in curve)}); "
        f"{recipe.members} models ensembled\n"
    )
    print(table(results))
    if args.export:
        ensemble.export_recommender(args.export, k=100, exclude="history")
        print(
            f"\nRecommender saved to {args.export}: serving_default takes "
            "history (item ids, most recent last) and seconds_since_last."
        )
    report = {
        "recipe": dataclasses.asdict(recipe),
        "epochs": epochs,
        "validation_hit@100": curve,
        "test": results,
    }
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("events", help="CSV of events, with a header row")
    parser.add_argument("--items", help="CSV of item features, with a header row")
    parser.add_argument("--user", default="user_id", help="user column")
    parser.add_argument("--item", default="item_id", help="item column (both files)")
    parser.add_argument("--time", default="timestamp", help="time column")
    parser.add_argument("--text", nargs="*", default=[], help="text item columns")
    parser.add_argument("--multi", nargs="*", default=[], help="multi-valued columns")
    parser.add_argument("--separator", default="|", help="of multi-valued columns")
    parser.add_argument("--delimiter", default=",", help="of the CSV files")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--export", help="folder to save the recommender to")
    parser.add_argument("--output", help="JSON file for the results")
    parser.add_argument("--seed", type=int, default=42)
    for field in dataclasses.fields(Recipe):
        parser.add_argument(
            "--" + field.name.replace("_", "-"), type=type(field.default)
        )
    args = parser.parse_args(argv)
    if args.members is not None and args.members < 1:
        parser.error(f"--members must be >= 1; got {args.members}")
    if not 0.0 < args.test_fraction < 1.0:
        parser.error(f"--test-fraction must be in (0, 1); got {args.test_fraction}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
