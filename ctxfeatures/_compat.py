"""Makes sure ``tf.keras`` is Keras 2 (tf-keras) before anything else runs.

TensorFlow Recommenders 0.7 is written against Keras 2. Since TensorFlow 2.16,
``tf.keras`` resolves to Keras 3 unless ``TF_USE_LEGACY_KERAS`` is set before
``tf.keras`` is first touched, and mixing the two breaks models in ways that
surface far from the cause. This module sets the variable when it still can and
fails early, with the fix, when it cannot.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

_TRUE_VALUES = ("1", "true", "True")
_FIX = (
    "Set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (in the shell, or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the very top of your script), "
    "or simply `import ctxfeatures` before `import tensorflow`, then restart "
    "the Python interpreter."
)


def _keras_loader_state() -> str | None:
    """Returns 'tf_keras', 'keras_3', 'keras_2' or None when not resolved yet."""
    tf_module = sys.modules.get("tensorflow")
    if tf_module is None:
        return None
    loader = tf_module.__dict__.get("keras")
    if loader is None:
        return None
    if type(loader).__name__ != "KerasLazyLoader":
        # Once resolved, the lazy loader is replaced by the real module.
        name = getattr(loader, "__name__", "")
        return "tf_keras" if name.startswith("tf_keras") else "keras_3"
    # Reading these private fields does not trigger the lazy import.
    if not object.__getattribute__(loader, "_tfll_initialized"):
        return None
    return object.__getattribute__(loader, "_tfll_keras_version")


def ensure_keras2() -> None:
    """Routes ``tf.keras`` to tf-keras, or raises an actionable ImportError."""
    value = os.environ.get("TF_USE_LEGACY_KERAS")
    if value is not None and value not in _TRUE_VALUES:
        raise ImportError(
            "ctxfeatures needs Keras 2 (the tf-keras package), but "
            f"TF_USE_LEGACY_KERAS={value!r} asks TensorFlow for Keras 3. "
            "Unset it or set TF_USE_LEGACY_KERAS=1, then restart Python."
        )
    state = _keras_loader_state()
    if state not in (None, "tf_keras"):
        raise ImportError(
            "ctxfeatures needs Keras 2 (tf-keras), but TensorFlow was already "
            f"imported and `tf.keras` is bound to {state.replace('_', ' ')}. " + _FIX
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"

    import tensorflow as tf

    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith("tf_keras"):
        raise ImportError(
            "ctxfeatures needs Keras 2 (tf-keras), but `tf.keras` resolved to "
            f"{layer_module!r}. Install it with `pip install "
            f"'tf-keras=={_minor(tf.__version__)}.*'`. " + _FIX
        )
    _check_versions(tf.__version__)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_versions(tf_version: str) -> None:
    try:
        tf_keras_version = importlib.metadata.version("tf-keras")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return
    if _minor(tf_keras_version) != _minor(tf_version):
        raise ImportError(
            f"tf-keras {tf_keras_version} does not match TensorFlow {tf_version}: "
            "they must share the minor version. Run `pip install "
            f"'tf-keras=={_minor(tf_version)}.*'`."
        )
