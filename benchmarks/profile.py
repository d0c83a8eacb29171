"""Where the training time goes: one profiled epoch of each side.

Runs one warm-up epoch, then one epoch under the TensorFlow profiler, for the
study's timestamp model written with ctxfeatures (prepared, cached batches)
and for the tutorial's own code. Prints the heaviest TensorFlow ops of each,
by summed op time, from the profiler's XSpace trace (no TensorBoard needed).

    python -m benchmarks profile --data-dir ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import collections
import glob
import tempfile
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import run
from benchmarks import tutorial_reference as ref
from ctxfeatures.datasets import movielens


def op_times(logdir: str) -> tuple[collections.Counter, float]:
    """Milliseconds per TensorFlow op (name:type) on the host's compute threads."""
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    times: collections.Counter = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TF ops are "scope/name:Type"; "Executor::..." is bookkeeping
                # that encloses them.
                if ":" in name and "::" not in name:
                    times[name] += event.duration_ps / 1e9
    return times, sum(times.values())


def group(name: str) -> str:
    """A readable bucket for an op: its scope, with gradients marked."""
    scope, _, kind = name.rpartition(":")
    parts = scope.split("/")
    backward = parts[0] == "gradient_tape"
    parts = parts[1:] if backward else parts
    head = parts[0]
    if head in ("query", "candidate", "sequential", "sequential_1") and len(parts) > 1:
        head = f"{head}/{parts[1]}"
    if head.startswith(("Adagrad", "AssignAdd")):
        head = "optimizer"
    return f"{'backward ' if backward else ''}{head} ({kind})"


def report(title: str, logdir: str, epoch_s: float, top: int) -> None:
    times, total = op_times(logdir)
    groups: collections.Counter = collections.Counter()
    for name, ms in times.items():
        groups[group(name)] += ms
    print(f"\n### {title}: epoch {epoch_s:.2f} s wall, {total:.0f} ms op time\n")
    print("| ms | share | op group |\n|---|---|---|")
    for name, ms in groups.most_common(top):
        print(f"| {ms:.0f} | {ms / total:.0%} | {name} |")


def profiled_epoch(model: tf.keras.Model, data: tf.data.Dataset) -> tuple[str, float]:
    model.fit(data, epochs=1, verbose=0)  # trace and fill caches first
    logdir = tempfile.mkdtemp(prefix="ctxfeatures-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    return logdir, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    ratings, movies_full = movielens.load(args.data_dir)
    r_ratings, r_movies, r_train, _ = ref.tutorial_data(ratings, movies_full)
    train = r_train.cache()
    batches = train.shuffle(100_000, seed=42).batch(2048)

    tf.keras.utils.set_random_seed(42)
    movies = r_movies.map(lambda t: {"movie_title": t})
    model = run.build_ours(train, movies, timestamps=True)
    prepared = model.prepare(batches).cache().with_options(run.pipeline_options())
    report("ctxfeatures", *profiled_epoch(model, prepared), args.top)

    tf.keras.utils.set_random_seed(42)
    reference = ref.build(True, r_ratings, r_movies)
    cached = batches.cache().with_options(run.pipeline_options())
    report("tutorial code", *profiled_epoch(reference, cached), args.top)
