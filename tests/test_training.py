"""fit_resumable: a job killed mid-epoch resumes to the weights of an unbroken run."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import tensorflow as tf

import ctxfeatures as cf
from ctxfeatures.training import fit_resumable

# A child trains the synthetic model; KILL_AT kills it (SIGKILL, no cleanup)
# right after that step, a mid-epoch batch between two checkpoints.
CHILD = """
import os, signal, sys
import numpy as np, tensorflow as tf
import ctxfeatures as cf
from conftest import build_retrieval, synthetic_events
from ctxfeatures.training import fit_resumable

tf.config.experimental.enable_op_determinism()
tf.keras.utils.set_random_seed(0)
data, catalogue = synthetic_events(n=1200)
model = build_retrieval(data, catalogue)
model.compile(tf.keras.optimizers.Adam(0.01))
batches = data.shuffle(1200, seed=3).batch(100)  # 12 steps an epoch
kill_at = int(os.environ.get("KILL_AT", "0"))

def on_step(step, logs):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

history = fit_resumable(model, batches, epochs=3, directory=sys.argv[1],
                        save_every=5, on_step=on_step)
np.savez(sys.argv[2], *[v.numpy() for v in model.trainable_variables])
print(len(history["loss"]))
"""


def run(run_python, tmp_path, name, kill_at=0):
    code = "import sys; sys.argv = ['child', {!r}, {!r}]\n".format(
        str(tmp_path / f"{name}-ckpt"), str(tmp_path / f"{name}.npz")
    )
    return run_python(code + CHILD, env={"KILL_AT": str(kill_at)}, timeout=300)


@pytest.mark.slow
def test_a_job_killed_mid_epoch_resumes_to_the_same_weights(run_python, tmp_path):
    killed = run(run_python, tmp_path, "resumed", kill_at=17)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "resumed.npz").exists()
    resumed = run(run_python, tmp_path, "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Steps 16..36 ran after the resume: epochs 2 and 3.
    assert resumed.stdout.strip().splitlines()[-1] == "2"
    unbroken = run(run_python, tmp_path, "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    ours, theirs = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "unbroken.npz")
    assert len(ours.files) == len(theirs.files) > 0
    for key in ours.files:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6)


def test_a_finished_job_returns_at_once(synthetic, build_model, tmp_path):
    data, catalogue = synthetic(n=300)
    model = build_model(data, catalogue)
    model.compile(tf.keras.optimizers.Adam(0.01))
    first = fit_resumable(model, data.batch(100), epochs=2, directory=str(tmp_path))
    assert len(first["loss"]) == 2 and first["loss"][1] < first["loss"][0]
    before = [v.numpy() for v in model.trainable_variables]
    again = fit_resumable(model, data.batch(100), epochs=2, directory=str(tmp_path))
    assert again == {"loss": []}
    for a, b in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())


TRAINING_ERRORS = [
    (
        "uncompiled",
        lambda m, d, p: fit_resumable(m, d, epochs=1, directory=p),
        ValueError,
        "compile the model first",
    ),
    (
        "epochs",
        lambda m, d, p: fit_resumable(m, d, epochs=0, directory=p),
        ValueError,
        "`epochs` must be >= 1",
    ),
    (
        "empty",
        lambda m, d, p: fit_resumable(m, d.take(0), epochs=1, directory=p),
        ValueError,
        "dataset is empty",
    ),
    (
        "infinite",
        lambda m, d, p: fit_resumable(m, d.repeat(), epochs=1, directory=p),
        ValueError,
        "repeats forever",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*c[1:], id=c[0]) for c in TRAINING_ERRORS]
)
def test_errors(synthetic, build_model, tmp_path, call, error, match):
    data, catalogue = synthetic(n=100)
    model = build_model(data, catalogue)
    if "compile" not in match:
        model.compile(tf.keras.optimizers.Adam(0.01))
    with pytest.raises(error, match=match):
        call(model, data.batch(50), str(tmp_path))


def test_public_name():
    assert cf.training.fit_resumable is fit_resumable
