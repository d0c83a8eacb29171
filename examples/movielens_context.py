"""The TFRS "Using context features" study on MovieLens, and beyond.

Three setups: MovieLens 100K on a random and a chronological 80/20 split,
and MovieLens latest-small (1996-2018) on a chronological 90/10 split. Two
protocols:

* tutorial: the TFRS tutorial's own (a test event's query is its user id and
  timestamp; nothing is excluded). Reproduces its 0.21 / 0.25 test top-100.
* next-event: each test event is a request at that moment, with the user's
  history known then (``ctxfeatures.history.add_history`` on the whole log),
  and the items the user has already seen excluded from the ranking.

Every model is reported beside most-popular, recently-popular and EASE,
measured by the same ``ctxfeatures.evaluation.evaluate_top_k`` on the same
test events. The "chosen" model's recipe is picked per setup by an Optuna
search on a validation slice (the last 10% in time of the training events),
never by the test set, and is also reported as an ensemble of three models
of that recipe trained from different seeds (``ctxfeatures.Ensemble``).
Run ``python examples/movielens_context.py --help`` for the options;
results go to ``--output`` as results.json, results.md, results.rst and
(with matplotlib) results.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# The study's published numbers were measured under Keras 2 (TFRS' task);
# TF_USE_LEGACY_KERAS=0 runs it under Keras 3. Set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ctxfeatures as cf  # noqa: E402
from ctxfeatures import baselines, evaluation, splits
from ctxfeatures.datasets import movielens
from ctxfeatures.history import add_history
from ctxfeatures.negatives import MixedNegatives

DIM = 32
# Items are integer movie ids: histories are int64, not padded titles.
ITEM = "movie_id"
KS = (10, 100)
# Training examples carry the last TRAIN_HISTORY items, more than any model
# below looks at; test requests carry every earlier item of their user.
TRAIN_HISTORY = 50
RECENT_DAYS = 30
# Test requests per evaluation step: a latest-small request carries up to
# 2,698 history items, and each step's exclusion keys grow with batch x that.
EVAL_BATCH = 256
# The validation search trains each trial for at most this many epochs.
MAX_EPOCHS = 15
# Optuna's TPE samples the first 10 trials at random, then models the rest.
TRIALS = 12
PROTOCOLS = ("tutorial", "next-event")
DATASETS = tuple(movielens.DATASETS)


@dataclasses.dataclass(frozen=True)
class Setup:
    """One data set and split."""

    dataset: str
    split: str
    train_fraction: float

    @property
    def name(self) -> str:
        return f"{self.dataset}, {self.split} {self.train_fraction:.0%}"


SETUPS = (
    Setup("ml-100k", "random", 0.8),
    Setup("ml-100k", "chronological", 0.8),
    Setup("ml-latest-small", "chronological", 0.9),
)
SPLITS = ("random", "chronological")


# ----------------------------------------------------------------- models
@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model trains."""

    optimizer: str
    learning_rate: float
    epochs: int
    batch_size: int
    logq: bool  # TFRS' logQ popularity correction of the in-batch softmax
    negatives: str = "in-batch"  # or "catalogue", "mixed"
    # None: dot product; a number: cosine similarity (both towers
    # L2-normalised) divided by this temperature.
    temperature: float | None = None


TUTORIAL = Recipe("adagrad", 0.1, epochs=3, batch_size=2048, logq=False)
LONG = Recipe("adam", 3e-3, epochs=10, batch_size=1024, logq=True)

Features = dict[str, object]
# A feature builder: the shared item id layer and the data set's columns.
Builder = Callable[[cf.IdEmbedding, frozenset], Features]


@dataclasses.dataclass(frozen=True)
class Model:
    """One row of the study: features, training recipe, protocols."""

    name: str
    description: str
    query: Builder
    candidate: Builder
    recipe: Recipe
    protocols: tuple[str, ...]
    dim: int = DIM
    datasets: tuple[str, ...] = DATASETS


def title_features(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {ITEM: title, "movie_title": cf.TextEmbedding(title.embedding_dim)}


def title_and_genres(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {**title_features(title, columns), "genres": cf.MultiIdEmbedding(16)}


def user_only(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {"user_id": cf.IdEmbedding(title.embedding_dim)}


def tutorial_time(
    title: cf.IdEmbedding, columns: frozenset, extrapolate: bool = False
) -> Features:
    out_of_range = "clip" if extrapolate else "zero"
    return {
        **user_only(title, columns),
        "timestamp": [
            cf.TimestampBuckets(DIM, num_buckets=1000, out_of_range=out_of_range),
            cf.NormalizedTimestamp(clip=not extrapolate),
        ],
    }


def robust_time() -> cf.TimestampBuckets:
    """Time buckets that do not hurt past the training range.

    A zero vector past the range (the default), and the time hidden from 80%
    of training examples, so the model learns to do without it; 100 buckets
    of equal mass, so every one is trained.
    """
    return cf.TimestampBuckets(8, boundaries="quantile", num_buckets=100, dropout=0.8)


def tutorial_robust_time(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {**user_only(title, columns), "timestamp": robust_time()}


def with_history(title: cf.IdEmbedding, columns: frozenset) -> Features:
    # The item table is shared: history items and candidates live in one space.
    recent = cf.HistoryEmbedding(item_embedding=title, window=20, recency_decay=0.8)
    return {**user_only(title, columns), "history": recent}


def with_relative_time(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {**with_history(title, columns), "seconds_since_last": cf.DurationBuckets(8)}


def demographics(columns: frozenset) -> Features:
    """Age, gender and occupation, where the data set has them (ml-100k)."""
    layers = {
        "age": lambda: cf.IdEmbedding(8, id_dtype="int64"),
        "gender": lambda: cf.IdEmbedding(4),
        "occupation": lambda: cf.IdEmbedding(8),
    }
    return {name: make() for name, make in layers.items() if name in columns}


def best(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {**with_relative_time(title, columns), **demographics(columns)}


def best_with_absolute_time(title: cf.IdEmbedding, columns: frozenset) -> Features:
    return {**best(title, columns), "timestamp": robust_time()}


BOTH = PROTOCOLS
NEXT = ("next-event",)
ML100K = ("ml-100k",)
MODELS = {
    m.name: m
    for m in (
        Model(
            "tutorial",
            "user id → title id + text",
            user_only,
            title_features,
            TUTORIAL,
            BOTH,
            datasets=ML100K,
        ),
        Model(
            "tutorial+time",
            "+ uniform buckets + normalised time (clipped)",
            tutorial_time,
            title_features,
            TUTORIAL,
            BOTH,
            datasets=ML100K,
        ),
        Model(
            "tutorial+time, extrapolating",
            "as above, but times past the training range extrapolated",
            lambda t, c: tutorial_time(t, c, extrapolate=True),
            title_features,
            TUTORIAL,
            BOTH,
            datasets=ML100K,
        ),
        Model(
            "tutorial+robust time",
            "user id + 8-d quantile time buckets, zero past the range, dropout 0.8",
            tutorial_robust_time,
            title_features,
            TUTORIAL,
            BOTH,
            datasets=ML100K,
        ),
        Model(
            "+history",
            "user id + last 20 items (shared item table), logQ",
            with_history,
            title_features,
            LONG,
            NEXT,
        ),
        Model(
            "+history+relative time",
            "+ seconds since the previous event",
            with_relative_time,
            title_features,
            LONG,
            NEXT,
            datasets=ML100K,
        ),
        Model(
            "best",
            "+ age, gender, occupation (where known) → + genres",
            best,
            title_and_genres,
            LONG,
            NEXT,
        ),
        Model(
            "best+absolute time",
            "+ the robust time buckets",
            best_with_absolute_time,
            title_and_genres,
            LONG,
            NEXT,
            datasets=ML100K,
        ),
    )
}
CHOSEN = "chosen by validation"
# The chosen recipe trained from MEMBERS seeds, their scores summed: on the
# validation slices, three members lifted hit@100 1-5% over one (ensembles.rst).
MEMBERS = 3
ENSEMBLED = f"{CHOSEN}, {MEMBERS} seeds ensembled"
MEMBER_SEED_STEP = 100  # member j trains with seed + 100 j: no row's seed
ENSEMBLED_DESCRIPTION = (
    f"{MEMBERS} models of the chosen recipe, trained from seeds s, "
    f"s+{MEMBER_SEED_STEP} and s+{2 * MEMBER_SEED_STEP} (s: the row's seed; "
    "the first is the row above), their logits summed (ctxfeatures.Ensemble)"
)
BASELINES: dict[str, Callable[[], object]] = {
    "most popular": baselines.MostPopular,
    f"recently popular ({RECENT_DAYS} days)": lambda: baselines.MostPopular(
        window_seconds=RECENT_DAYS * 86_400
    ),
    "EASE (l2=250)": lambda: baselines.EASE(250.0),
}
# Short cached epochs: tf.data autotuning can add up to 0.65 s per epoch end.
PIPELINE = tf.data.Options()
PIPELINE.autotune.enabled = False


# ----------------------------------------------------------------- the search
@dataclasses.dataclass(frozen=True)
class Choice:
    """The settings the validation search chooses among."""

    dim: int
    negatives: str  # "in-batch" (with logQ), "mixed" (+ logQ) or "catalogue"
    history: str  # "recent" or "long+short"
    user_id: bool
    temperature: float  # of the cosine similarity
    learning_rate: float
    epochs: int = MAX_EPOCHS  # the search's early stopping sets it

    def model(self) -> Model:
        return Model(
            CHOSEN,
            f"{self.history} history, {self.negatives} negatives, "
            f"cosine / {self.temperature:g}, {self.dim}-d, "
            f"Adam {self.learning_rate:.1e}, {self.epochs} epochs"
            + ("" if self.user_id else ", no user id"),
            self.query,
            title_and_genres,
            Recipe(
                "adam",
                self.learning_rate,
                self.epochs,
                1024,
                logq=self.negatives != "catalogue",
                negatives=self.negatives,
                temperature=self.temperature,
            ),
            NEXT,
            dim=self.dim,
        )

    def query(self, title: cf.IdEmbedding, columns: frozenset) -> Features:
        encoders = {
            "recent": lambda: cf.HistoryEmbedding(
                item_embedding=title, window=20, recency_decay=0.8
            ),
            # Long-term taste (all 50 items kept) beside the last 5.
            "long+short": lambda: [
                cf.HistoryEmbedding(item_embedding=title, window=TRAIN_HISTORY),
                cf.HistoryEmbedding(item_embedding=title, window=5),
            ],
        }
        features = {
            "history": encoders[self.history](),
            "seconds_since_last": cf.DurationBuckets(8),
            **demographics(columns),
        }
        if self.user_id:
            features["user_id"] = cf.IdEmbedding(self.dim)
        return features


# The search's most frequent choice of each setting over the study's three
# setups (runs of 2026-11-30 and 2026-12-01: in-batch negatives, recent
# history and no user id in 3 of 3, 64-d and temperature 0.2 in 2; the median
# learning rate and epochs): a recipe to start from on a new data set, before
# searching on it.
CHOSEN_DEFAULT = Choice(
    dim=64,
    negatives="in-batch",
    history="recent",
    user_id=False,
    temperature=0.2,
    learning_rate=1.5e-3,
    epochs=3,
)
SPACE = {
    "dim": [32, 64, 128],
    "negatives": ["in-batch", "mixed", "catalogue"],
    "history": ["recent", "long+short"],
    "user_id": [True, False],
    "temperature": [0.05, 0.1, 0.2],
}
LEARNING_RATES = (1e-3, 1e-2)


SEARCH_SEED = 42


def suggest(trial) -> Choice:
    """One trial's settings, drawn from :data:`SPACE` and the learning rates."""
    settings = {
        key: trial.suggest_categorical(key, values) for key, values in SPACE.items()
    }
    rate = trial.suggest_float("learning_rate", *LEARNING_RATES, log=True)
    return Choice(**settings, learning_rate=rate)


def validation_split(ratings: dict[str, np.ndarray], setup: Setup) -> tuple[Split, int]:
    """The search's split: the setup's training events without their last
    10% in time, which are the validation slice (the test events are never
    read); and the slice's size."""
    train = train_mask(ratings, setup, SEARCH_SEED)
    inner, validation = validation_masks(ratings, train)
    return make_split(ratings, inner, validation), int(validation.sum())


def validation_baseline(setup: Setup, args: argparse.Namespace) -> dict:
    """EASE on the validation split: what the trials are scored against."""
    ratings, movie_columns = load(setup.dataset, args.data_dir)
    part, events = validation_split(ratings, setup)
    ease = run_baseline(BASELINES["EASE (l2=250)"], part, movie_columns, "next-event")
    return {"ease": ease, "events": events}


def fit_trial(setup: Setup, args: argparse.Namespace, choice: Choice) -> dict:
    """Trains one trial with early stopping on the validation hit@100
    (patience 2); its validation hit@k per epoch."""
    ratings, movie_columns = load(setup.dataset, args.data_dir)
    part, _ = validation_split(ratings, setup)
    movies = tf.data.Dataset.from_tensor_slices(movie_columns)
    stop = tf.keras.callbacks.EarlyStopping(
        "val_top_100", mode="max", patience=2, restore_best_weights=True
    )
    check = cf.TopKValidation(
        part.test, ks=KS, exclude="history", batch_size=EVAL_BATCH
    )
    spec = dataclasses.replace(choice, epochs=args.max_epochs).model()
    history = fit_model(
        spec, part, movies, frozenset(ratings), SEARCH_SEED, [check, stop]
    )
    scores = {f"val_top_{k}": [float(v) for v in history[f"val_top_{k}"]] for k in KS}
    return {**scores, "peak_rss_gb": peak_rss_gb()}


def choose(setup: Setup, args: argparse.Namespace, job: dict) -> tuple[dict, dict]:
    """Optuna's TPE search over :data:`SPACE` on a validation slice.

    The slice is the last 10% in time of the setup's training events; the
    test events are never read. Each trial trains with early stopping on the
    validation hit@100 (patience 2) and is scored by the mean of its hit@10
    and hit@100 as ratios to EASE fitted on the same events. The baseline and
    each trial run in a process of their own (:func:`in_child`): one process
    for all the trials grew by the ~40 MB that tf-keras keeps of each fitted
    model, to 2.24 GB on latest-small.
    """
    import optuna

    baseline = in_child({**job, "kind": "validation"})
    ease = baseline["ease"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEARCH_SEED)
    )
    for _ in range(args.trials):
        trial = study.ask()
        choice = dataclasses.asdict(suggest(trial))
        history = in_child({**job, "kind": "trial", "choice": choice})
        best = int(np.argmax(history["val_top_100"]))
        ratios = {k: history[f"val_top_{k}"][best] / ease[f"hit@{k}"] for k in KS}
        trial.set_user_attr("epochs", best + 1)
        trial.set_user_attr("ratios", ratios)
        trial.set_user_attr("peak_rss_gb", history["peak_rss_gb"])
        # The mean, not the weaker ratio: the trials' hit@100 ratios lie
        # within a few percent of each other (one seed's noise), and scoring
        # by them alone chose worse recipes at test (docs/study.rst).
        study.tell(trial, sum(ratios.values()) / len(ratios))
    chosen = Choice(
        **study.best_params, epochs=int(study.best_trial.user_attrs["epochs"])
    )
    report = {
        "setup": setup.name,
        "validation_events": baseline["events"],
        "validation_ease": ease,
        "best_ratio_to_ease": study.best_value,
        "chosen": dataclasses.asdict(chosen),
        "trials": [
            {
                **t.params,
                "epochs": t.user_attrs.get("epochs"),
                "ratio": t.value,
                "ratios": t.user_attrs.get("ratios"),
                "peak_rss_gb": t.user_attrs.get("peak_rss_gb"),
            }
            for t in study.trials
        ],
    }
    return dataclasses.asdict(chosen), report


# ----------------------------------------------------------------- data
@dataclasses.dataclass
class Split:
    """One split of one seed: training and test events, with histories."""

    train: tf.data.Dataset  # with history (last TRAIN_HISTORY items)
    test: tf.data.Dataset  # with history (every earlier item)
    fitted: dict[str, np.ndarray]  # training columns, for the baselines


def event_index(times: np.ndarray, events: np.ndarray) -> tf.data.Dataset:
    """The ``events`` (row numbers) and their times, for the library's splits."""
    return tf.data.Dataset.from_tensor_slices(
        {"event": events, "timestamp": times[events]}
    )


def event_mask(part: tf.data.Dataset, size: int) -> np.ndarray:
    """Membership of the rows that ``part`` (of an :func:`event_index`) holds."""
    mask = np.zeros(size, bool)
    events = np.fromiter(part.map(lambda x: x["event"]).as_numpy_iterator(), np.int64)
    mask[events] = True
    return mask


def train_mask(ratings: dict[str, np.ndarray], setup: Setup, seed: int) -> np.ndarray:
    """Training membership, by the library's own split functions."""
    size = ratings["timestamp"].size
    index = event_index(ratings["timestamp"], np.arange(size))
    if setup.split == "random":
        train, _ = splits.random_split(
            index, int(round(setup.train_fraction * size)), seed=seed
        )
    else:
        train, _ = splits.chronological_split(index, setup.train_fraction)
    return event_mask(train, size)


def validation_masks(
    ratings: dict[str, np.ndarray], train: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The search's training events and validation slice, from ``train``.

    The slice is the last 10% *in time* of the training events, cut by the
    library's chronological split: the rating files are not in time order
    (ml-latest-small's is by user), so their last rows are not the latest.
    """
    times, size = ratings["timestamp"], ratings["timestamp"].size
    inner, validation = splits.chronological_split(
        event_index(times, np.flatnonzero(train)), 0.9
    )
    return event_mask(inner, size), event_mask(validation, size)


def make_split(
    ratings: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray | None = None
) -> Split:
    """Training and test events (``~train`` unless ``test`` is given)."""
    test = ~train if test is None else test
    # Histories come from the whole log: a test event sees the user's
    # training events and earlier test events, never a later event. Test
    # events go first so that each part is a cheap take()/skip().
    order = np.concatenate([np.flatnonzero(test), np.flatnonzero(train)])
    log = tf.data.Dataset.from_tensor_slices({k: v[order] for k, v in ratings.items()})
    tests = int(test.sum())
    longest = int(np.unique(ratings["user_id"], return_counts=True)[1].max())
    return Split(
        train=add_history(log, item=ITEM, max_length=TRAIN_HISTORY).skip(tests),
        test=add_history(log, item=ITEM, max_length=longest).take(tests),
        fitted={k: v[train] for k, v in ratings.items()},
    )


def load(dataset: str, data_dirs: list[str]) -> tuple[dict, dict]:
    """The data set's columns, from a given folder or a verified download."""
    for folder in data_dirs:
        source = movielens.DATASETS[dataset]
        if all(os.path.exists(os.path.join(folder, f)) for f in source.files):
            ratings, movies = movielens.load_arrays(folder, dataset=dataset)
            break
    else:
        ratings, movies = movielens.load_arrays(dataset=dataset)
    ratings, movies = dict(ratings), dict(movies)
    for columns in (ratings, movies):
        columns[ITEM] = columns[ITEM].astype(np.int64)
    return ratings, movies


# ----------------------------------------------------------------- runs
def metrics(result: dict[str, float]) -> dict[str, float]:
    return {
        "hit@10": result["top_10"],
        "hit@100": result["top_100"],
        "ndcg@10": result["ndcg_10"],
    }


NEGATIVES = {
    "in-batch": lambda: "in-batch",
    "catalogue": lambda: "catalogue",
    "mixed": lambda: MixedNegatives(1024),
}


def fit_model(
    spec: Model,
    split: Split,
    movies: tf.data.Dataset,
    columns: frozenset,
    seed: int,
    callbacks: list | None = None,
    verbose: int = 0,
) -> dict:
    """Builds and trains ``spec``; the Keras history (the model under "model")."""
    tf.keras.utils.set_random_seed(seed)
    title = cf.IdEmbedding(spec.dim, id_dtype="int64")
    recipe = spec.recipe
    extra, fit_data = {}, split.train
    if recipe.logq:
        fit_data = cf.with_sampling_probability(split.train, ITEM, "probability")
        extra["candidate_sampling_probability"] = "probability"
    model = cf.build_retrieval_model(
        spec.query(title, columns),
        spec.candidate(title, columns),
        movies,
        candidate_id=ITEM,
        adapt_data=split.train,
        head_units=(spec.dim,),
        l2_normalize=recipe.temperature is not None,
        temperature=recipe.temperature,
        negatives=NEGATIVES[recipe.negatives](),
        **extra,
    )
    optimizer = {
        "adam": tf.keras.optimizers.Adam,
        "adagrad": tf.keras.optimizers.Adagrad,
    }
    model.compile(optimizer[recipe.optimizer](recipe.learning_rate))
    batches = fit_data.shuffle(100_000, seed=seed).batch(recipe.batch_size)
    # Lookups, tokenising and history windows once, in tf.data.
    prepared = model.prepare(batches).cache().with_options(PIPELINE)
    history = model.fit(
        prepared, epochs=recipe.epochs, verbose=verbose, callbacks=callbacks
    )
    return {**history.history, "model": model}


def run_model(
    spec: Model,
    split: Split,
    movies: tf.data.Dataset,
    columns: frozenset,
    seed: int,
    verbose: int,
    members: int = 1,
) -> list[dict]:
    """Trains ``spec`` from ``members`` seeds (``seed``, then steps of
    :data:`MEMBER_SEED_STEP`) and evaluates its first model and, with several
    members, their :class:`ctxfeatures.Ensemble`: one result dict each."""
    models, seconds = [], []
    for member in range(members):
        start = time.perf_counter()
        member_seed = seed + MEMBER_SEED_STEP * member
        fitted = fit_model(spec, split, movies, columns, member_seed, verbose=verbose)
        models.append(fitted.pop("model"))
        seconds.append(time.perf_counter() - start)
    rankers = [(models[0], seconds[0])]
    if members > 1:
        rankers.append((cf.Ensemble(models), sum(seconds)))
    outs = []
    for ranker, fit_seconds in rankers:
        out = {"fit_seconds": fit_seconds}
        for protocol in spec.protocols:
            exclude = "history" if protocol == "next-event" else None
            result = ranker.evaluate_top_k(
                split.test.batch(EVAL_BATCH), ks=KS, exclude=exclude
            )
            out[protocol] = metrics(result)
        outs.append(out)
    # Each model's graphs and tables go with it: dozens of models run here.
    del models, rankers, ranker, fitted
    tf.keras.backend.clear_session()
    gc.collect()
    return outs


def run_baseline(factory, split: Split, movies, protocol: str) -> dict:
    recommender = factory()
    if isinstance(recommender, baselines.EASE) and protocol == "tutorial":
        return {}  # EASE's query is a history, which the tutorial has not
    recommender.fit(split.fitted, item=ITEM, candidates=movies[ITEM])
    exclude = "history" if protocol == "next-event" else None
    return metrics(
        evaluation.evaluate_top_k(
            recommender, split.test, ks=KS, exclude=exclude, batch_size=EVAL_BATCH
        )
    )


def peak_rss_gb() -> float:
    """Peak RSS of this process or of its largest finished child, in GB."""
    peak = max(
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return peak / 2**20


def summarize(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "sd": sd, "n": int(array.size)}


def collect(runs: dict, setup: str, protocol: str, name: str, kind: str) -> dict:
    row = {"setup": setup, "protocol": protocol, "model": name, "kind": kind}
    for metric in ("hit@10", "hit@100", "ndcg@10"):
        row[metric] = summarize([run[metric] for run in runs])
    return row


def table_data(runs: dict, kinds: dict) -> list[dict]:
    """One summarised row per (setup, protocol, model), in table order.

    ``runs`` maps ``(setup, protocol, model)`` to per-seed results and
    ``kinds`` maps ``(setup, model)`` to ``(kind, description)``.
    """
    rows = []
    for (setup, protocol, name), values in runs.items():
        kind, description = kinds[setup, name]
        row = collect(values, setup, protocol, name, kind)
        row["description"] = description
        rows.append(row)
    order = {name: i for i, name in enumerate([*BASELINES, *MODELS, CHOSEN, ENSEMBLED])}
    names = [s.name for s in SETUPS]
    rows.sort(
        key=lambda r: (
            PROTOCOLS.index(r["protocol"]),
            names.index(r["setup"]),
            order[r["model"]],
        )
    )
    return rows


# ----------------------------------------------------------------- report
def cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}"


def table_rows(results: dict, protocol: str) -> list[list[str]]:
    """The cells of one protocol's table: header first."""
    rows = [r for r in results["rows"] if r["protocol"] == protocol]
    out = [
        ["setup", "model", "hit@10", "hit@100", "NDCG@10", "hit@10 / EASE"]
        + ["hit@100 / EASE"]
    ]
    for row in rows:
        ease = next(
            (r for r in rows if r["setup"] == row["setup"] and "EASE" in r["model"]),
            None,
        )
        ratios = [
            f"{row[m]['mean'] / ease[m]['mean']:.2f}x" if ease else "n/a"
            for m in ("hit@10", "hit@100")
        ]
        label = (
            f"{row['model']}: {row['description']}"
            if row["kind"] == "model"
            else f"*{row['model']}*"
        )
        out.append(
            [row["setup"], label, cell(row["hit@10"]), cell(row["hit@100"])]
            + [cell(row["ndcg@10"]), *ratios]
        )
    return out


def footnote(results: dict) -> str:
    meta = results["meta"]
    return (
        f"Mean ± sd over seeds {meta['seeds']}; baselines in italics. Tutorial "
        "recipe: Adagrad 0.1, 3 epochs, batch 2048. Long recipe: Adam 3e-3, "
        f"{meta['long_epochs']} epochs, batch 1024, logQ correction; {DIM}-d. "
        "The chosen recipe of each setup comes from "
        f"{meta['trials']} Optuna trials on its validation slice. Wall time "
        f"{meta['wall_seconds']:.0f} s, peak RSS {meta['peak_rss_gb']:.2f} GB "
        f"on {meta['machine']}. TFRS tutorial reference (random split, "
        "3 epochs): test top-100 0.21 without timestamps, 0.25 with them."
    )


def markdown(results: dict) -> str:
    lines = []
    for protocol in PROTOCOLS:
        cells = table_rows(results, protocol)
        if len(cells) == 1:
            continue
        lines += [f"**{protocol} protocol**", ""]
        lines.append("| " + " | ".join(cells[0]) + " |")
        lines.append("|" + "---|" * len(cells[0]))
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        lines.append("")
    lines.append(footnote(results))
    return "\n".join(lines) + "\n"


def restructured_text(results: dict) -> str:
    """The tables as reStructuredText list-tables, for the docs."""
    lines = []
    for protocol in PROTOCOLS:
        cells = table_rows(results, protocol)
        if len(cells) == 1:
            continue
        lines += [
            f".. list-table:: {protocol} protocol",
            "   :header-rows: 1",
            "   :widths: 14 40 10 10 10 8 8",
            "",
        ]
        for row in cells:
            # Baselines are *italic*; any other asterisk is literal.
            escaped = [value.replace("*", r"\*") for value in row]
            if row is not cells[0] and row[1].startswith("*"):
                escaped[1] = f"*{row[1].strip('*')}*"
            lines.append(f"   * - {escaped[0]}")
            lines += [f"     - {value}" for value in escaped[1:]]
        lines.append("")
    lines.append(footnote(results))
    return "\n".join(lines) + "\n"


def chart(results: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in results["rows"] if r["protocol"] == "next-event"]
    if not rows:
        return False
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    figure, axes = plt.subplots(
        2, len(setups), figsize=(5.5 * len(setups), 7.5), squeeze=False
    )
    for column, setup in enumerate(setups):
        part = [r for r in rows if r["setup"] == setup]
        colours = ["#a5a5a5" if r["kind"] == "baseline" else "#4472c4" for r in part]
        for line, metric in enumerate(("hit@10", "hit@100")):
            axis = axes[line][column]
            axis.barh(
                range(len(part)),
                [r[metric]["mean"] for r in part],
                xerr=[r[metric]["sd"] for r in part],
                color=colours,
                capsize=3,
            )
            axis.set_yticks(range(len(part)), [r["model"] for r in part], fontsize=8)
            axis.invert_yaxis()
            axis.set_xlabel(f"test {metric} (next-event, seen items excluded)")
            axis.set_title(setup, fontsize=10)
    figure.suptitle("Baselines (grey) and models (blue)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        nargs="+",
        default=[],
        help="local data folders (an ml-100k folder with u.data, u.item, "
        "u.user; an ml-latest-small folder with ratings.csv, movies.csv); "
        "data sets without one are downloaded once from GroupLens into "
        "~/.keras/datasets",
    )
    parser.add_argument("--output", default="results", help="output folder")
    parser.add_argument(
        "--datasets", nargs="+", choices=DATASETS, default=list(DATASETS)
    )
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row")
    parser.add_argument(
        "--epochs", type=int, default=0, help="override every recipe's epochs"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[*MODELS, CHOSEN],
        default=[*MODELS, CHOSEN],
    )
    parser.add_argument(
        "--trials", type=int, default=TRIALS, help="Optuna trials per setup"
    )
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip the baseline rows"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one seed, one epoch, two trials of at most two epochs: a smoke test",
    )
    parser.add_argument(
        "--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras progress"
    )
    args = parser.parse_args(argv)
    args.max_epochs = MAX_EPOCHS
    if args.quick:
        args.seeds, args.epochs, args.trials, args.max_epochs = 1, 1, 2, 2
    if args.seeds < 1 or args.epochs < 0 or args.trials < 1:
        parser.error("--seeds and --trials must be >= 1 and --epochs >= 0")
    return args


def run_setup(
    setup: Setup, args: argparse.Namespace, runs: dict, kinds: dict, report: dict
) -> None:
    """Every baseline and model of one setup, each seed.

    Each trial of the search (and its baseline), each seed's baselines and
    fixed models, and each seed's chosen recipe (three members held at once)
    run in child processes (:func:`in_child`).
    """
    job = {"setup": SETUPS.index(setup), "args": vars(args)}
    choice = None
    if CHOSEN in args.models:
        print(f"== {setup.name}: choosing a recipe ({args.trials} trials)", flush=True)
        choice, report[setup.name] = choose(setup, args, job)
        print(f"   chosen: {Choice(**choice)}", flush=True)
    for seed in range(42, 42 + args.seeds):
        jobs = [{**job, "kind": "seed", "seed": seed, "choice": None}]
        if choice is not None:
            # Apart: beside what the fixed models leave behind, the three
            # members took latest-small's process from 1.7 GB to 2.3 GB.
            jobs.append({**job, "kind": "seed", "seed": seed, "choice": choice})
        for out in map(in_child, jobs):
            for name, protocol, model, result in out["runs"]:
                runs.setdefault((name, protocol, model), []).append(result)
            for name, model, kind, description in out["kinds"]:
                kinds[name, model] = (kind, description)


def run_seed(
    setup: Setup, args: argparse.Namespace, seed: int, choice: Choice | None
) -> dict:
    """One setup and seed: the baselines and fixed models, or (given a
    ``choice``) the chosen recipe and its ensemble; rows and labels."""
    ratings, movie_columns = load(setup.dataset, args.data_dir)
    movies = tf.data.Dataset.from_tensor_slices(movie_columns)
    columns = frozenset(ratings)
    specs = [MODELS[n] for n in args.models if n in MODELS]
    specs = [s for s in specs if setup.dataset in s.datasets]
    if choice is not None:
        specs = [choice.model()]
    runs, kinds = [], []
    split = make_split(ratings, train_mask(ratings, setup, seed))
    if not args.no_baselines and choice is None:
        for name, factory in BASELINES.items():
            kinds.append((setup.name, name, "baseline", ""))
            for protocol in PROTOCOLS:
                result = run_baseline(factory, split, movie_columns, protocol)
                if result:
                    runs.append((setup.name, protocol, name, result))
    for spec in specs:
        print(
            f"== {setup.name}, {spec.name}, seed {seed} "
            f"(peak RSS of this process so far {peak_rss_gb():.2f} GB)",
            flush=True,
        )
        # Per setup: each setup's chosen recipe has its own description.
        kinds.append((setup.name, spec.name, "model", spec.description))
        if spec.name == CHOSEN:  # with the epochs its search found
            members, names = MEMBERS, (CHOSEN, ENSEMBLED)
            kinds.append((setup.name, ENSEMBLED, "model", ENSEMBLED_DESCRIPTION))
        else:
            members, names = 1, (spec.name,)
            if args.epochs:
                recipe = dataclasses.replace(spec.recipe, epochs=args.epochs)
                spec = dataclasses.replace(spec, recipe=recipe)
        outs = run_model(
            spec, split, movies, columns, seed, args.verbose, members=members
        )
        for name, out in zip(names, outs):
            for protocol in spec.protocols:
                runs.append((setup.name, protocol, name, out[protocol]))
    return {"runs": runs, "kinds": kinds}


def run_job(job: dict) -> dict:
    """One search trial, the search's baseline, or one seed of a setup (what
    :func:`in_child` runs)."""
    args = argparse.Namespace(**job["args"])
    setup = SETUPS[job["setup"]]
    choice = Choice(**job["choice"]) if job.get("choice") else None
    if job["kind"] == "validation":
        return validation_baseline(setup, args)
    if job["kind"] == "trial":
        return fit_trial(setup, args, choice)
    return run_seed(setup, args, job["seed"], choice)


JOB_FLAG = "--run-job"


def in_child(job: dict) -> dict:
    """Runs :func:`run_job` in a fresh interpreter and returns its result.

    tf-keras keeps every fitted model's traced training functions alive after
    ``clear_session()`` (keras-team/tf-keras#286): about 40 MB a model here,
    over a hundred models in the study. A process per trial and per seed
    returns that memory; the study's peak is that of its largest process.
    """
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "result.json")
        command = [sys.executable, os.path.abspath(__file__), JOB_FLAG]
        subprocess.run([*command, json.dumps(job), output], check=True)
        with open(output, encoding="utf-8") as handle:
            return json.load(handle)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    runs: dict[tuple[str, str, str], list[dict]] = {}
    kinds: dict[tuple[str, str], tuple[str, str]] = {}
    search: dict[str, dict] = {}
    setups = [
        s for s in SETUPS if s.dataset in args.datasets and s.split in args.splits
    ]
    for setup in setups:
        run_setup(setup, args, runs, kinds, search)
    rows = table_data(runs, kinds)
    peak = peak_rss_gb()
    results = {
        "rows": rows,
        "search": search,
        "meta": {
            "seeds": list(range(42, 42 + args.seeds)),
            "long_epochs": args.epochs or LONG.epochs,
            "trials": args.trials,
            "wall_seconds": time.perf_counter() - started,
            "peak_rss_gb": peak,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"TensorFlow {tf.__version__}",
        },
    }
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    table = markdown(results)
    for name, text in (
        ("results.md", table),
        ("results.rst", restructured_text(results)),
    ):
        with open(os.path.join(args.output, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    drew = chart(results, os.path.join(args.output, "results.png"))
    print("\n" + table)
    print(
        f"Wrote results.json, results.md, results.rst"
        f"{', results.png' if drew else ''} to {args.output}/"
    )
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == [JOB_FLAG]:
        result = run_job(json.loads(sys.argv[2]))
        with open(sys.argv[3], "w", encoding="utf-8") as handle:
            json.dump(result, handle)
    else:
        main(sys.argv[1:])
