"""Shared fixtures and builders, under the Keras the run chose (TF_USE_LEGACY_KERAS).

Test modules take what they share from here as fixtures (``synthetic``,
``build_model``, ``run_python``, ``keras_roundtrip``, ``functional``,
``root``); no test module imports another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf  # noqa: F401  (must precede TensorFlow use)

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
ML_LATEST_SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"


# -------------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (end-to-end runs, about 30 min)",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Slow tests are skipped, with the way to run them, unless asked for by
    # --slow or by a -m expression that names them (e.g. `-m slow`). A plain
    # run (the README's, CI's) stays within CI's time limit.
    if cf.keras_version != 2:
        keras2 = pytest.mark.skip(reason="needs Keras 2 (TFRS or tf-keras only)")
        for item in items:
            if item.get_closest_marker("keras2") is not None:
                item.add_marker(keras2)
    if config.getoption("--slow") or "slow" in config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest --slow` or `-m slow`")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


# ----------------------------------------------------------------- builders
def synthetic_events(
    n: int = 3000, users: int = 60, items: int = 40, seed: int = 0
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(events, catalogue): users prefer items near their own id."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    # Users prefer items near their own id, so there is something to learn.
    item = (user * items // users + rng.integers(-4, 5, n)) % items
    data = {
        "user_id": np.array([f"u{u}" for u in user]),
        "item": np.array([f"item {i} kind{i % 5}" for i in item]),
        "timestamp": rng.integers(880_000_000, 890_000_000, n).astype(np.int64),
    }
    catalogue = {"item": np.array([f"item {i} kind{i % 5}" for i in range(items)])}
    return (
        tf.data.Dataset.from_tensor_slices(data),
        tf.data.Dataset.from_tensor_slices(catalogue),
    )


def build_retrieval(data, catalogue, **kwargs) -> cf.RetrievalModel:
    """A small model on the synthetic events: ids, time and title text."""
    return cf.build_retrieval_model(
        {
            "user_id": cf.IdEmbedding(8),
            "timestamp": [
                cf.TimestampBuckets(4, num_buckets=10),
                cf.NormalizedTimestamp(),
            ],
        },
        {"item": [cf.IdEmbedding(8), cf.TextEmbedding(8)]},
        catalogue,
        candidate_id="item",
        adapt_data=data,
        head_units=(8,),
        **kwargs,
    )


# Makes modules unimportable in a child, and proves it before the test code.
_BLOCK = """
import sys
for _name in {names!r}:
    sys.modules[_name] = None
try:
    import {first}
except ImportError:
    pass
else:
    raise SystemExit("{first} is still importable")
"""


def child_environment(env: dict | None = None, fresh: bool = False) -> dict[str, str]:
    """The environment of a child interpreter: tests/ importable, TF quiet.

    The child uses the Keras of this run (``TF_USE_LEGACY_KERAS`` 1 or 0);
    with ``fresh``, ``TF_USE_LEGACY_KERAS`` is removed, so the child shows
    what a user's fresh interpreter does. ``env`` is added on top.
    """
    full = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if not fresh:
        full["TF_USE_LEGACY_KERAS"] = "1" if cf.keras_version == 2 else "0"
    full.update(env or {})
    full.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    full["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "tests"), full.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return full


def localhost_cluster(**tasks: int) -> dict[str, list[str]]:
    """A cluster spec of distinct free 127.0.0.1 ports, e.g. ``worker=2``."""
    # The probes stay bound until every port is chosen, so none repeats.
    with contextlib.ExitStack() as stack:
        cluster = {}
        for task, count in tasks.items():
            cluster[task] = []
            for _ in range(count):
                probe = stack.enter_context(socket.socket())
                probe.bind(("127.0.0.1", 0))
                cluster[task].append(f"127.0.0.1:{probe.getsockname()[1]}")
        return cluster


def run_python_code(
    code: str,
    env: dict | None = None,
    timeout: int = 240,
    unimportable: tuple[str, ...] = (),
    fresh: bool = False,
):
    """Runs code in a fresh interpreter (tests/ importable); the CompletedProcess.

    Modules named in ``unimportable`` raise ImportError there; ``fresh``: see
    :func:`child_environment`.
    """
    if unimportable:
        names = list(unimportable)
        code = _BLOCK.format(names=names, first=names[0]) + code
    full_env = child_environment(env, fresh=fresh)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(ROOT),
    )


def keras_roundtrip_model(model: tf.keras.Model, path: Path) -> tf.keras.Model:
    model.save(str(path))
    return tf.keras.models.load_model(str(path), safe_mode=True)


def functional_model(layer: tf.keras.layers.Layer, dtype: tf.DType) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(), dtype=dtype)
    return tf.keras.Model(inputs, layer(inputs))


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (../shared is absent)")
    return ML100K


@pytest.fixture
def ml_latest_small() -> Path:
    if not (ML_LATEST_SMALL / "ratings.csv").exists():
        pytest.skip(
            f"MovieLens latest-small not found at {ML_LATEST_SMALL} "
            "(../shared is absent)"
        )
    return ML_LATEST_SMALL


@pytest.fixture(scope="session")
def synthetic() -> Callable[..., tuple[tf.data.Dataset, tf.data.Dataset]]:
    return synthetic_events


@pytest.fixture(scope="session")
def build_model() -> Callable[..., cf.RetrievalModel]:
    return build_retrieval


@pytest.fixture(scope="session")
def run_python() -> Callable[..., subprocess.CompletedProcess]:
    return run_python_code


@pytest.fixture(scope="session")
def child_env() -> Callable[..., dict[str, str]]:
    return child_environment


@pytest.fixture(scope="session")
def cluster() -> Callable[..., dict[str, list[str]]]:
    return localhost_cluster


@pytest.fixture(scope="session")
def keras_roundtrip() -> Callable[..., tf.keras.Model]:
    return keras_roundtrip_model


@pytest.fixture(scope="session")
def functional() -> Callable[..., tf.keras.Model]:
    return functional_model


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
