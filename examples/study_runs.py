"""The study's splits, training runs and child processes.

Part of the MovieLens study (``movielens_context.py``, its entry point).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

# The study's published numbers were measured under Keras 2 (TFRS' task);
# TF_USE_LEGACY_KERAS=0 runs it under Keras 3. Set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from study_models import (  # noqa: E402
    EVAL_BATCH,
    ITEM,
    KS,
    MEMBER_SEED_STEP,
    PIPELINE,
    TRAIN_HISTORY,
    Model,
    Setup,
)

import ctxfeatures as cf  # noqa: E402
from ctxfeatures import baselines, evaluation, splits  # noqa: E402
from ctxfeatures.datasets import movielens  # noqa: E402
from ctxfeatures.history import add_history  # noqa: E402
from ctxfeatures.negatives import MixedNegatives  # noqa: E402

# The entry point, which runs each job in a child process.
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "movielens_context.py")
JOB_FLAG = "--run-job"


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


def in_child(job: dict) -> dict:
    """Runs :func:`run_job` in a fresh interpreter and returns its result.

    tf-keras keeps every fitted model's traced training functions alive after
    ``clear_session()`` (keras-team/tf-keras#286): about 40 MB a model here,
    over a hundred models in the study. A process per trial and per seed
    returns that memory; the study's peak is that of its largest process.
    """
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "result.json")
        command = [sys.executable, SCRIPT, JOB_FLAG]
        subprocess.run([*command, json.dumps(job), output], check=True)
        with open(output, encoding="utf-8") as handle:
            return json.load(handle)
