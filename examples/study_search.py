"""The study's validation search: Optuna trials on a validation slice.

Part of the MovieLens study (``movielens_context.py``, its entry point).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

# The study's published numbers were measured under Keras 2 (TFRS' task);
# TF_USE_LEGACY_KERAS=0 runs it under Keras 3. Set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from study_models import (  # noqa: E402
    BASELINES,
    EVAL_BATCH,
    KS,
    SEARCH_SEED,
    Choice,
    Setup,
    suggest,
)
from study_runs import (  # noqa: E402
    Split,
    fit_model,
    in_child,
    load,
    make_split,
    peak_rss_gb,
    run_baseline,
    train_mask,
    validation_masks,
)

import ctxfeatures as cf  # noqa: E402


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
