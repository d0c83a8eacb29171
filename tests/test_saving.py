"""load_model: a saved tower back, or one clear error for a damaged file."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf


@pytest.fixture
def saved(tmp_path):
    tower = cf.Tower({"user": cf.IdEmbedding(2), "time": cf.NormalizedTimestamp()})
    tower.adapt(
        tf.data.Dataset.from_tensor_slices({"user": ["a", "b"], "time": [10, 20]})
    )
    path = tmp_path / "tower.keras"
    tower.save(str(path))
    return tower, path


def test_round_trip(saved):
    tower, path = saved
    batch = {"user": tf.constant(["b"]), "time": tf.constant([15])}
    np.testing.assert_allclose(cf.saving.load_model(path)(batch), tower(batch))


def damage(path, how):
    raw = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(b"not a keras file" * 10)
    elif how == "flipped":
        # One byte of a stored member changed: the archive reads, the CRC fails.
        index = raw.index(b"config.json") + 200
        path.write_bytes(raw[:index] + bytes([raw[index] ^ 0xFF]) + raw[index + 1 :])


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "flipped"])
def test_damaged_files_give_one_clear_error(saved, how):
    _, path = saved
    damage(path, how)
    with pytest.raises(ValueError, match="is not a readable .keras file.*Save"):
        cf.saving.load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cf.saving.load_model(tmp_path / "nothing.keras")


def test_safe_mode_is_keras_own_switch(tmp_path):
    # A lambda is code in the file: refused by default, loaded when asked.
    inputs = tf.keras.Input(shape=(2,))
    model = tf.keras.Model(inputs, tf.keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="(?i)lambda"):
        cf.load_model(path)
    loaded = cf.load_model(path, safe_mode=False)
    np.testing.assert_allclose(loaded(tf.ones([1, 2])), [[2.0, 2.0]])
