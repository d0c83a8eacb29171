"""``python -m ctxfeatures.recipe events.csv [--items items.csv] ...``"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ctxfeatures.recipe import (
    PROTOCOLS,
    Recipe,
    SequenceRecipe,
    run_recipe,
    search_candidates,
)
from ctxfeatures.recipe import __doc__ as DOC
from ctxfeatures.recipe._io import check_feature_names, read_csv

MODELS = {"per-event": Recipe, "sequence": SequenceRecipe}
# Every setting of either model, once (both have dim, window, ...).
SETTINGS = {
    field.name: field
    for model in MODELS.values()
    for field in dataclasses.fields(model)
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ctxfeatures.recipe",
        description=DOC.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(DOC.splitlines()[2:]),
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
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="chronological",
        help="chronological: the latest --test-fraction of the events in time "
        "is the test; leave-last-out: each user's last event (for logs whose "
        "times compare only within a user); random: a random --test-fraction "
        "drawn with --seed (the TFRS tutorial's split)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--export", help="folder to save the recommender to")
    parser.add_argument("--output", help="JSON file for the results")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quiet", action="store_true", help="print the table only")
    parser.add_argument(
        "--model",
        choices=[*sorted(MODELS), "auto", "search"],
        default="per-event",
        help="per-event: the study's model, ensembled (Recipe); sequence: one "
        "causal-attention model trained on users' sequences (SequenceRecipe); "
        "auto: both validation runs, then the one of better validation "
        "NDCG@10; search: as auto, with the per-event model at temperatures "
        "0.1 and 0.2 and recency decays 0.5 and 0.8 and with an attention "
        "encoder, and the sequence model with its defaults and as SASRec+ "
        "(SASRec's blocks and towers, catalogue softmax, dropout 0.5; a "
        "setting given as a flag is fixed)",
    )
    for name, field in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(field.default, bool):  # --l2-normalize / --no-l2-normalize
            parser.add_argument(flag, action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, type=type(field.default))
    args = parser.parse_args(argv)
    chosen = [MODELS[args.model]] if args.model in MODELS else MODELS.values()
    own = {field.name for model in chosen for field in dataclasses.fields(model)}
    for name in SETTINGS:
        if getattr(args, name) is not None and name not in own:
            parser.error(
                f"--{name.replace('_', '-')} is not a setting of --model "
                f"{args.model}; its settings: "
                + ", ".join("--" + n.replace("_", "-") for n in sorted(own))
            )
    if args.members is not None and args.members < 1:
        parser.error(f"--members must be >= 1; got {args.members}")
    if not 0.0 < args.test_fraction < 1.0:
        parser.error(f"--test-fraction must be in (0, 1); got {args.test_fraction}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    given = {name: getattr(args, name) for name in SETTINGS}
    given = {name: value for name, value in given.items() if value is not None}
    if args.model == "search":
        recipe = search_candidates(**given)
    else:
        models = MODELS.values() if args.model == "auto" else [MODELS[args.model]]
        recipe = [
            model(**{k: v for k, v in given.items() if k in _names(model)})
            for model in models
        ]
    columns = [args.user, args.item, args.time]
    events = read_csv(args.events, columns, args.delimiter)
    _check_empty(events, args)
    items = None
    check_feature_names([*args.text, *args.multi])
    if args.items:
        items = read_csv(
            args.items, [args.item, *args.text, *args.multi], args.delimiter
        )
    report = run_recipe(
        events,
        items,
        user=args.user,
        item=args.item,
        time_column=args.time,
        text=args.text,
        multi=args.multi,
        separator=args.separator,
        protocol=args.protocol,
        test_fraction=args.test_fraction,
        recipe=recipe,
        seed=args.seed,
        export=args.export,
        output=args.output,
        verbose=not args.quiet,
        _sources=(args.events, args.items or "--items"),
    )
    if args.quiet:
        from ctxfeatures.recipe._report import table

        print(table(report["test"]))
    return report


def _names(model: type) -> set[str]:
    return {field.name for field in dataclasses.fields(model)}


def _check_empty(events: dict, args: argparse.Namespace) -> None:
    """Empty ids, named by their line in the file (the header is line 1)."""
    for name in (args.user, args.item):
        empty = (events[name] == "").nonzero()[0]
        if empty.size:
            raise ValueError(
                f"{args.events} line {empty[0] + 2}: column {name!r} is empty; "
                "drop or fill such rows."
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
