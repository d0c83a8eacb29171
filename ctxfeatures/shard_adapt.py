"""adapt_from_shards: every adaptable layer learns its state from Parquet shards.

Each group of shards is read by its own process (``ctxfeatures._shard_worker``)
and the statistics are merged, with no second pass. Public as
:func:`ctxfeatures.shards.adapt_from_shards`.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf

from ctxfeatures.adapting import _adaptable_layers, _update_adapt_state
from ctxfeatures.layers._inputs import check_positive_int
from ctxfeatures.shards import Source, parquet_files, read_batches

__all__ = ["adapt_from_shards"]


def adapt_from_shards(
    source: Source,
    *towers: tf.keras.layers.Layer,
    processes: int = 1,
    batch_size: int = 65536,
) -> None:
    """Adapts the towers' feature layers from Parquet shards, one pass.

    Each file is read by one of ``processes`` worker processes, which
    accumulates the statistics of every adaptable layer (vocabulary counts,
    moments, quantile sketches; see :mod:`ctxfeatures.layers.state`). The
    statistics are merged and become the layers' state, exactly as
    :meth:`~ctxfeatures.Tower.adapt` on the concatenated files would learn it
    (quantile boundaries within the sketch's documented error).

    Args:
        source: Parquet files, as :func:`parquet_files` takes them, holding a
            column for every feature the towers adapt.
        *towers: The :class:`~ctxfeatures.Tower` objects to adapt; a layer
            shared between them adapts once, from all its features.
        processes: Worker processes; ``1`` reads the files in this process.
        batch_size: Rows read at a time.

    Raises:
        ValueError: a feature is missing from the files, or no data.
    """
    owner = "adapt_from_shards()"
    processes = check_positive_int(processes, "processes")
    files = parquet_files(source, owner)
    work = _adaptable_layers(towers)
    if not work:
        return
    configs = [tf.keras.layers.serialize(tower) for tower in towers]
    if processes == 1:
        merged = _accumulate_files(configs, files, batch_size, towers)
    else:
        groups = [files[i::processes] for i in range(min(processes, len(files)))]
        merged = _merge(_run_workers(configs, groups, batch_size))
    for key, (layer, _) in work.items():
        layer.reset_state()
        if key in merged:
            layer.merge_state(merged[key])
        layer.finalize_state()


def _accumulate_files(
    configs: list[Any],
    files: Sequence[str],
    batch_size: int,
    towers: Sequence[tf.keras.layers.Layer] | None = None,
) -> dict[str, Any]:
    """Statistics of some shards, per layer key (also run by each worker).

    ``towers`` are the live towers when run in the caller's process; a worker
    rebuilds them from ``configs`` instead.
    """
    if towers is None:
        towers = [tf.keras.layers.deserialize(config) for config in configs]
    work = _adaptable_layers(towers)
    columns = sorted({f for _, features in work.values() for f in features})
    for layer, _ in work.values():
        layer.reset_state()
    for path in files:
        for batch in read_batches(path, columns=columns, batch_size=batch_size):
            tensors = {key: tf.convert_to_tensor(value) for key, value in batch.items()}
            _update_adapt_state(work, tensors, where=f" in '{path}'")
    return {key: layer.pending_state for key, (layer, _) in work.items()}


def _run_workers(
    configs: list[Any], groups: list[list[str]], batch_size: int
) -> Iterator[dict[str, Any]]:
    """Runs :func:`_accumulate_files` on each group of files in its own process.

    Workers are fresh interpreters (``python -m ctxfeatures._shard_worker``),
    not forks, since TensorFlow's threads do not survive a fork; and unlike
    ``multiprocessing``'s spawn they do not re-run the caller's script.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = []
    for group in groups:
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-m", "ctxfeatures._shard_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        # The job is small (configs and paths): it fits the pipe's buffer.
        process.stdin.write(pickle.dumps((configs, group, batch_size)))
        process.stdin.close()
        workers.append((process, log))
    for process, log in workers:
        with log:
            output = process.stdout.read()
            process.wait()
            if process.returncode != 0 or not output:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(
                    f"adapt_from_shards(): a worker failed (exit code "
                    f"{process.returncode}):\n{tail}"
                )
        status, *payload = pickle.loads(output)
        if status == "error":
            kind, message = payload
            raise kind(f"adapt_from_shards(): {message}")
        yield payload[0]


def _merge(results: Iterator[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for result in results:
        for key, accumulator in result.items():
            if accumulator is None:
                continue
            if key in merged:
                merged[key].merge(accumulator)
            else:
                merged[key] = accumulator
    return merged
