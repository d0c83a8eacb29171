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
Then the one-model part (``study_next_item.py``): on those setups and on
Amazon Sports (leave-last-out, from a ``--data-dir`` folder holding its
``events.csv``), one model of ``ctxfeatures.recipe``, per-event or sequence
as validation chooses, beside most-popular and EASE (l2 chosen on
validation). The parts are modules beside this script (``study_*.py``).
Run ``python examples/movielens_context.py --help`` for the options;
results go to ``--output`` as results.json, results.md, results.rst and
(with matplotlib) results.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

# The study's published numbers were measured under Keras 2 (TFRS' task);
# TF_USE_LEGACY_KERAS=0 runs it under Keras 3. Set before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# The study's parts are modules beside this script (study_*.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import study_next_item  # noqa: E402
import tensorflow as tf  # noqa: E402
from study_models import (  # noqa: E402, F401  (the study's public names)
    BASELINES,
    CHOSEN,
    CHOSEN_DEFAULT,
    DATASETS,
    ENSEMBLED,
    ENSEMBLED_DESCRIPTION,
    LONG,
    MAX_EPOCHS,
    MEMBER_SEED_STEP,
    MEMBERS,
    MODELS,
    PROTOCOLS,
    SETUPS,
    SPLITS,
    TRIALS,
    Choice,
    Setup,
)
from study_report import chart, markdown, restructured_text, table_data  # noqa: E402
from study_runs import (  # noqa: E402, F401
    JOB_FLAG,
    fit_model,
    in_child,
    load,
    make_split,
    peak_rss_gb,
    run_baseline,
    run_model,
    train_mask,
    validation_masks,
)
from study_search import choose, fit_trial, validation_baseline  # noqa: E402

import ctxfeatures as cf  # noqa: E402, F401  (the tests reach it as study.cf)

PARTS = ("models", "one-model")


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
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="models: the study's rows (tutorial to chosen); one-model: "
        "next-item retrieval by one model beside most-popular and EASE on "
        "every setup (study_next_item.py)",
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
    if job["kind"] == "next-item":
        setup = study_next_item.setup_of(job)
        return study_next_item.run_seed(setup, args.data_dir, job["seed"], args.quick)
    setup = SETUPS[job["setup"]]
    choice = Choice(**job["choice"]) if job.get("choice") else None
    if job["kind"] == "validation":
        return validation_baseline(setup, args)
    if job["kind"] == "trial":
        return fit_trial(setup, args, choice)
    return run_seed(setup, args, job["seed"], choice)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    runs: dict[tuple[str, str, str], list[dict]] = {}
    kinds: dict[tuple[str, str], tuple[str, str]] = {}
    search: dict[str, dict] = {}
    setups = [
        s for s in SETUPS if s.dataset in args.datasets and s.split in args.splits
    ]
    for setup in setups if "models" in args.parts else []:
        run_setup(setup, args, runs, kinds, search)
    rows = table_data(runs, kinds)
    next_item = None
    if "one-model" in args.parts:
        next_item = study_next_item.run(args, {"args": vars(args)})
    peak = peak_rss_gb()
    results = {
        "rows": rows,
        "search": search,
        "next_item": next_item,
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
    table, rst = markdown(results), restructured_text(results)
    if next_item is not None:
        table += "\n" + study_next_item.markdown(next_item)
        rst += "\n" + study_next_item.restructured_text(next_item)
    for name, text in (("results.md", table), ("results.rst", rst)):
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
