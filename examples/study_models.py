"""The study's setups, models and the validation search's space.

Part of the MovieLens study (``movielens_context.py``, its entry point).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

# The study's published numbers were measured under Keras 2 (TFRS' task);
# TF_USE_LEGACY_KERAS=0 runs it under Keras 3. Set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

import ctxfeatures as cf  # noqa: E402
from ctxfeatures import baselines  # noqa: E402
from ctxfeatures.datasets import movielens  # noqa: E402

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
