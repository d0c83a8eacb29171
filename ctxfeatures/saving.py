"""Loading saved towers and layers, with one clear error for a damaged file."""

from __future__ import annotations

import importlib.metadata
import json
import os
import zipfile
from typing import Any

import tensorflow as tf

__all__ = ["load_model"]


def _damaged(path: str, reason: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable .keras file: {reason}. It may be empty, "
        "truncated (an interrupted copy or save) or not a Keras archive. Save "
        "the model again, or restore the file from a backup."
    )


def _check_archive(path: str) -> None:
    if not zipfile.is_zipfile(path):
        raise _damaged(path, "it is not a complete zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise _damaged(path, str(error)) from None
    if broken is not None:
        raise _damaged(path, f"its member {broken!r} fails its checksum")
    if "config.json" not in names:
        raise _damaged(path, "it holds no model configuration (config.json)")
    _check_keras_version(path)


def _check_keras_version(path: str) -> None:
    """A clear error for a file written by the other Keras.

    Keras 2 and Keras 3 write different configurations (dtype policies,
    build configs, variable paths), so neither reads the other's files.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
        saved = str(metadata["keras_version"])
    except (KeyError, ValueError, OSError):
        return  # no version recorded: let Keras try
    running = _running_keras_version()
    if saved.split(".")[0] != running.split(".")[0]:
        raise ValueError(
            f"{path} was saved by Keras {saved}, but this process uses Keras "
            f"{running}: a .keras file loads only under the Keras major version "
            "that wrote it. Load it in a process with that Keras (ctxfeatures "
            "uses Keras 3 when tf.keras is bound to it or TF_USE_LEGACY_KERAS=0, "
            "Keras 2 with TF_USE_LEGACY_KERAS=1), or rebuild the model and "
            "adapt it again here."
        )


def _running_keras_version() -> str:
    module = tf.keras.layers.Layer.__module__.split(".")[0]
    try:
        return importlib.metadata.version(
            "tf-keras" if module == "tf_keras" else "keras"
        )
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "2" if module == "tf_keras" else "3"


def load_model(
    path: str | os.PathLike,
    *,
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool = True,
) -> tf.keras.Model:
    """Loads a model saved with ``model.save("….keras")``, with ``safe_mode=True``.

    The same as ``tf.keras.models.load_model(path, safe_mode=True)``, except
    that a missing, empty, truncated or corrupted file gives one clear error
    instead of an h5py or zipfile message.

    Args:
        path: A ``.keras`` file.
        custom_objects: Classes of your own, as for Keras (those registered
            with ``register_keras_serializable`` need none).
        safe_mode: Keras' ``safe_mode``: ``True`` refuses code in the file
            (lambdas); ctxfeatures' layers need nothing else.

    Returns:
        The model (for example a :class:`~ctxfeatures.Tower`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a file that is not a complete ``.keras`` archive, or one
            written by the other Keras (2 or 3), named with both versions.

    Example:
        >>> tower = cf.Tower({"user": cf.IdEmbedding(2, vocabulary=["a"])})
        >>> path = os.path.join(tempfile.mkdtemp(), "tower.keras")
        >>> tower.save(path)
        >>> cf.load_model(path).feature_names
        ['user']
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist. Check the path.")
    if os.path.isfile(path):
        _check_archive(path)
    return tf.keras.models.load_model(
        path, custom_objects=custom_objects, safe_mode=safe_mode
    )
