"""Keras 2 routing: import works from nothing, fails clearly after Keras 3."""

from __future__ import annotations

import re


def test_fresh_import_routes_tf_keras_to_tf_keras(run_python):
    result = run_python(
        "import ctxfeatures, tensorflow as tf\nprint(tf.keras.layers.Layer.__module__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_import_after_keras3_fails_with_the_fix(run_python):
    result = run_python(
        "import tensorflow as tf\n"
        "tf.keras.layers.Dense  # binds tf.keras to Keras 3\n"
        "import ctxfeatures\n"
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr
    assert "keras 3" in result.stderr


def test_import_after_tf_but_before_keras_still_works(run_python):
    result = run_python(
        "import tensorflow as tf\nimport ctxfeatures\n"
        "print(tf.keras.layers.Layer.__module__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_explicit_opt_out_is_refused(run_python):
    result = run_python("import ctxfeatures", env={"TF_USE_LEGACY_KERAS": "0"})
    assert result.returncode != 0
    assert "TF_USE_LEGACY_KERAS='0'" in result.stderr


def test_no_source_imports_keras_3(root):
    pattern = re.compile(r"^\s*(import keras\b|from keras\b)", re.MULTILINE)
    offenders = [
        str(path)
        for folder in ("ctxfeatures", "examples", "benchmarks", "tests")
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []
