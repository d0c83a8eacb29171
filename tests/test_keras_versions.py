"""Files across the two Kerases: .keras refused clearly, SavedModels served."""

from __future__ import annotations

import textwrap
import warnings

import pytest
import tensorflow as tf

import ctxfeatures as cf

SAVE = textwrap.dedent(
    """
    import sys
    import ctxfeatures as cf, numpy as np, tensorflow as tf
    tower = cf.Tower({"user_id": cf.IdEmbedding(4), "ts": cf.NormalizedTimestamp()},
                     head_units=(3,), name="query")
    tower.adapt({"user_id": ["a", "b", "a"], "ts": [10, 20, 30]})
    tower.save(sys.argv[1] + "/tower.keras")
    cf.serving.export_recommender(
        tower, tf.constant(["x", "y", "z"]), tf.eye(3), sys.argv[1] + "/rec", k=2)
    print(cf.keras_version)
    """
)
LOAD = textwrap.dedent(
    """
    import sys
    import ctxfeatures as cf
    try:
        cf.load_model(sys.argv[1] + "/tower.keras")
    except ValueError as error:
        print(cf.keras_version, error)
    """
)
SERVE = textwrap.dedent(
    """
    import sys
    import tensorflow as tf  # TensorFlow alone: no ctxfeatures, no Keras use
    served = tf.saved_model.load(sys.argv[1] + "/rec").signatures["serving_default"]
    out = served(user_id=tf.constant(["a"]), ts=tf.constant([15], tf.int64))
    print(out["ids"].shape, "ctxfeatures" in sys.modules)
    """
)


def run(run_python, code: str, folder, keras: int):
    env = {"TF_USE_LEGACY_KERAS": "1" if keras == 2 else "0"}
    code = f"import sys; sys.argv = ['x', {str(folder)!r}]\n" + code
    result = run_python(code, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("saved, loaded", [(2, 3), (3, 2)])
def test_a_keras_file_of_the_other_keras_is_refused_naming_both(
    run_python, tmp_path, saved, loaded
):
    assert run(run_python, SAVE, tmp_path, saved) == str(saved)
    line = run(run_python, LOAD, tmp_path, loaded)
    assert line.startswith(f"{loaded} ")
    assert f"saved by Keras {saved}." in line
    assert f"this process uses Keras {loaded}." in line


@pytest.mark.parametrize("saved", [2, 3])
def test_an_exported_recommender_serves_with_tensorflow_alone(
    run_python, tmp_path, saved
):
    run(run_python, SAVE, tmp_path, saved)
    assert run(run_python, SERVE, tmp_path, saved) == "(1, 2) False"


@pytest.mark.skipif(cf.keras_version == 2, reason="a warning of Keras 3's fit")
def test_fit_on_a_dataset_does_not_warn_that_shuffle_is_ignored(synthetic, build_model):
    data, catalogue = synthetic(n=64)
    model = build_model(data, catalogue)
    model.compile(tf.keras.optimizers.SGD(0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data.batch(32), epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
