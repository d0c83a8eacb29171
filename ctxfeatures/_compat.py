"""Which Keras ctxfeatures uses: the one the process has, Keras 3 by default.

Since TensorFlow 2.16, ``tf.keras`` resolves to Keras 3 unless
``TF_USE_LEGACY_KERAS`` is true when ``tf.keras`` is first touched; mixing the
two breaks models in ways that surface far from the cause. The rule, which
never changes the environment:

* ``tf.keras`` already bound (TensorFlow imported and ``tf.keras`` read): that
  Keras.
* Otherwise ``TF_USE_LEGACY_KERAS`` true: Keras 2 (tf-keras), with TFRS,
  checked to match TensorFlow's minor version.
* Otherwise Keras 3, TensorFlow's own default. Everything but TFRS' own
  classes and parameter-server training works; ``RetrievalModel`` trains with
  the library's own steps and task (``ctxfeatures._steps``).
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import sys
import zipfile
from typing import Any

_TRUE_VALUES = ("1", "true", "True")
_FIX = (
    "Set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (in the shell, or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the very top of your script), "
    "then restart the Python interpreter."
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


def select_keras() -> int:
    """The Keras major version to use (2 or 3), set up; see the module's rule."""
    state = _keras_loader_state()
    legacy = os.environ.get("TF_USE_LEGACY_KERAS") in _TRUE_VALUES
    if state == "tf_keras" or (state is None and legacy):
        ensure_keras2()
        return 2
    import tensorflow as tf

    if tf.keras.layers.Layer.__module__.startswith("tf_keras"):
        ensure_keras2()  # a TensorFlow that still binds tf-keras by itself
        return 2
    return 3


def require_keras2(what: str) -> None:
    """An ImportError naming ``what`` and the fix when the process uses Keras 3."""
    import tensorflow as tf

    if tf.keras.layers.Layer.__module__.startswith("tf_keras"):
        return
    raise ImportError(
        f"{what} is built on TensorFlow Recommenders, which needs Keras 2 "
        "(tf-keras), but this process uses Keras 3. Under Keras 3, "
        "RetrievalModel trains with ctxfeatures.retrieval_task.RetrievalTask "
        "instead. To use TFRS: " + _FIX
    )


def ensure_keras2() -> None:
    """Checks that ``tf.keras`` is a tf-keras matching TensorFlow, or raises
    an actionable ImportError."""
    import tensorflow as tf

    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith("tf_keras"):
        raise ImportError(
            "TF_USE_LEGACY_KERAS asks for Keras 2 (tf-keras), but `tf.keras` "
            f"resolved to {layer_module!r}. Install it with `pip install "
            f"'tf-keras=={_minor(tf.__version__)}.*'`, or unset "
            "TF_USE_LEGACY_KERAS to use Keras 3."
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


# ----------------------------------------------------------------- zipfile
# CPython 3.12.0 added a fast seek for uncompressed zip members that moves the
# archive's shared file relative to wherever another open member left it
# (`zipfile._SharedFile.seek` with SEEK_CUR; fixed by CPython pull request
# #127856). tf-keras reads the weights of a `.keras` archive through h5py while
# other members are open, so on the affected releases (3.12.1 and 3.13.0 here)
# loading an archive with a vocabulary fails with EOFError. Detected by
# behaviour, not by version number.
def _shared_seek_is_broken() -> bool:
    """Whether seeking one zip member is thrown off by reading another."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # stored, not compressed
        archive.writestr("a", bytes(range(256)) * 64)
        archive.writestr("b", b"x" * 64)
    with zipfile.ZipFile(buffer) as archive:
        with archive.open("a") as first, archive.open("b") as second:
            first.read(1)  # buffers the start of "a"
            second.read()  # moves the shared file to the end of "b"
            first.seek(8193)  # past the buffer: the fast path
            try:
                return first.read(1) != b"\x01"
            except EOFError:
                return True


def _seek_from_own_position(self: Any, offset: int, whence: int = 0) -> int:
    # CPython's fixed `_SharedFile.seek`: relative seeks start from this
    # member's own position, not from where the shared file happens to be.
    with self._lock:
        if self._writing():
            raise ValueError(
                "Can't reposition in the ZIP file while there is an open "
                "writing handle on it. Close the writing handle before trying "
                "to read."
            )
        if whence == os.SEEK_CUR:
            self._file.seek(self._pos + offset)
        else:
            self._file.seek(offset, whence)
        self._pos = self._file.tell()
        return self._pos


def repair_zip_seek() -> bool:
    """Applies CPython's fix of ``zipfile._SharedFile.seek`` where it is missing.

    Returns whether the running Python needed it.
    """
    if not _shared_seek_is_broken():
        return False
    zipfile._SharedFile.seek = _seek_from_own_position
    return True
