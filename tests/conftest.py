"""Shared fixtures. Importing ctxfeatures first routes tf.keras to Keras 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures  # noqa: F401  (must precede TensorFlow)

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (../shared is absent)")
    return ML100K


def run_python(code: str, env: dict | None = None, timeout: int = 240):
    """Runs code in a fresh interpreter; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full_env.update(env or {})
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(ROOT),
    )


def keras_roundtrip(model: tf.keras.Model, path: Path) -> tf.keras.Model:
    model.save(str(path))
    return tf.keras.models.load_model(str(path), safe_mode=True)


def functional(layer: tf.keras.layers.Layer, dtype: tf.DType) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(), dtype=dtype)
    return tf.keras.Model(inputs, layer(inputs))


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
