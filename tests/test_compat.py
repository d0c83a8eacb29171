"""Which Keras: the process's, Keras 3 by default, the environment untouched."""

from __future__ import annotations

import re


def test_a_fresh_import_uses_keras3_and_leaves_the_environment(run_python):
    code = (
        "import os, ctxfeatures, tensorflow as tf\n"
        "print(ctxfeatures.keras_version, tf.keras.layers.Layer.__module__)\n"
        "print(os.environ.get('TF_USE_LEGACY_KERAS'))"
    )
    result = run_python(code, fresh=True)
    assert result.returncode == 0, result.stderr
    keras, unset = result.stdout.strip().splitlines()
    assert keras.startswith("3 keras") and unset == "None"


def test_tf_use_legacy_keras_chooses_keras2_with_tfrs(run_python):
    code = (
        "import ctxfeatures, tensorflow as tf\n"
        "from ctxfeatures.task import InBatchRetrieval\n"
        "print(ctxfeatures.keras_version, tf.keras.layers.Layer.__module__)"
    )
    result = run_python(code, env={"TF_USE_LEGACY_KERAS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("2 tf_keras")


def test_import_after_keras3_uses_keras3(run_python, tmp_path):
    # The process's Keras is kept: a whole model trains, recommends and
    # exports under Keras 3; only TFRS' own task says how to get Keras 2.
    code = f"""
import tensorflow as tf
tf.keras.layers.Dense  # binds tf.keras to Keras 3
import ctxfeatures as cf
print(cf.keras_version, tf.keras.layers.Layer.__module__)
events = {{"user_id": ["a", "b", "a", "b"], "item": ["x", "y", "y", "z"]}}
model = cf.build_retrieval_model(
    {{"user_id": cf.IdEmbedding(4)}}, {{"item": cf.IdEmbedding(4)}},
    {{"item": ["x", "y", "z"]}}, candidate_id="item", adapt_data=events,
    head_units=(4,))
model.compile(tf.keras.optimizers.Adam(0.1))
model.fit(model.prepare(events, batch_size=2), epochs=2, verbose=0)
request = {{"user_id": ["a"], "history": [["x", "y"]]}}
print(model.recommend(request, k=2, exclude="history")[0].tolist())
model.export_recommender({str(tmp_path / "rec")!r}, k=2, exclude="history")
try:
    import ctxfeatures.task
except ImportError as error:
    print(error)
"""
    result = run_python(code, fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("3 keras")
    assert lines[1] == "[['z', '']]"
    assert "needs Keras 2" in lines[2] and "TF_USE_LEGACY_KERAS=1" in lines[2]


def test_import_after_tf_keras_2_is_bound_uses_keras2(run_python):
    code = (
        "import os\nos.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
        "import tensorflow as tf\ntf.keras.layers.Dense\n"
        "del os.environ['TF_USE_LEGACY_KERAS']\n"
        "import ctxfeatures\nprint(ctxfeatures.keras_version)"
    )
    result = run_python(code, fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "2"


def test_an_explicit_opt_out_chooses_keras3(run_python):
    code = "import ctxfeatures, tensorflow as tf\nprint(ctxfeatures.keras_version)"
    result = run_python(code, env={"TF_USE_LEGACY_KERAS": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "3"


def test_no_source_imports_keras_3(root):
    pattern = re.compile(r"^\s*(import keras\b|from keras\b)", re.MULTILINE)
    offenders = [
        str(path)
        for folder in ("ctxfeatures", "examples", "benchmarks", "tests")
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


# CPython 3.12.1's zipfile seek, which breaks tf-keras' `.keras` loading.
BROKEN_SEEK = """
import os, zipfile

def seek(self, offset, whence=0):
    with self._lock:
        self._file.seek(offset, whence)
        self._pos = self._file.tell()
        return self._pos

zipfile._SharedFile.seek = seek
"""


def test_a_broken_zipfile_seek_is_repaired_on_import(run_python, tmp_path):
    # The repair matters where zipfile seeks members fast (Python >= 3.12);
    # this plants the broken seek so the test means the same on any Python.
    code = BROKEN_SEEK + (
        "import sys\n"
        "import ctxfeatures as cf, numpy as np, tensorflow as tf\n"
        "fast = sys.version_info >= (3, 12)\n"
        "# Replaced where the broken seek is used, left alone elsewhere.\n"
        "assert (zipfile._SharedFile.seek is not seek) == fast\n"
        "layer = cf.IdEmbedding(4, name='user_id')\n"
        "layer.adapt(np.array([f'u{i}' for i in range(300)]))\n"
        "inputs = tf.keras.Input(shape=(), dtype=tf.string)\n"
        "model = tf.keras.Model(inputs, layer(inputs))\n"
        f"path = {str(tmp_path / 'm.keras')!r}\n"
        "model.save(path)\n"
        "loaded = cf.saving.load_model(path)\n"
        "ids = tf.constant(['u7', 'u299', 'unseen'])\n"
        "np.testing.assert_array_equal(loaded(ids), model(ids))\n"
        "print('fast seek' if fast else 'no fast seek', 'ok')\n"
    )
    result = run_python(code, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
