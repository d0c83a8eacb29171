"""Faults under ParameterServerStrategy: a lost worker, a lost parameter server.

Localhost processes: a chief (``tests/ps_fault_chief.py``), 2 workers and 1
parameter server (``tests/ps_server.py``). The chief kills its victim once the
parameter server has counted 40 of the 128 steps (2 epochs of 64, a
checkpoint every 16).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

STEPS, SAVE_EVERY = 128, 16


class Cluster:
    def __init__(self, root, out, child_env, cluster) -> None:
        self.root, self.out = root, out
        self.addresses = cluster(chief=1, worker=2, ps=1)
        self.child_env = child_env
        self.servers = {
            (task, index): self.start(task, index)
            for task, count in (("worker", 2), ("ps", 1))
            for index in range(count)
        }

    def environment(self, task: str, index: int) -> dict[str, str]:
        config = {"cluster": self.addresses, "task": {"type": task, "index": index}}
        return self.child_env(
            {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(config)}
        )

    def start(self, task: str, index: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(self.root / "tests" / "ps_server.py")],
            env=self.environment(task, index),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def chief(self, victim: tuple[str, int] | None = None) -> tuple[int, dict, str]:
        pid = self.servers[victim].pid if victim else 0
        chief = subprocess.run(
            [sys.executable, str(self.root / "tests" / "ps_fault_chief.py")]
            + [str(self.out), str(pid)],
            env=self.environment("chief", 0),
            capture_output=True,
            text=True,
            timeout=240,
            cwd=str(self.root),
        )
        lines = chief.stdout.strip().splitlines()
        assert lines, chief.stderr[-4000:]
        return chief.returncode, json.loads(lines[-1]), chief.stderr

    def restart(self, task: str, index: int) -> None:
        self.servers[(task, index)].wait()
        self.servers[(task, index)] = self.start(task, index)

    def stop(self) -> None:
        for server in self.servers.values():
            server.kill()
            server.wait()


@pytest.fixture
def make_cluster(tmp_path_factory, root, child_env, cluster):
    made = []

    def make() -> Cluster:
        made.append(
            Cluster(root, tmp_path_factory.mktemp("faults"), child_env, cluster)
        )
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, root, child_env, cluster) -> dict:
    """The same job on the same cluster shape, without faults."""
    job = Cluster(root, tmp_path_factory.mktemp("reference"), child_env, cluster)
    try:
        code, result, stderr = job.chief()
    finally:
        job.stop()
    assert code == 0, stderr[-4000:]
    assert result["steps"] == STEPS and result["worker_failures"] == 0
    return result


@pytest.mark.slow
@pytest.mark.keras2  # parameter servers: Keras 2 only
def test_a_lost_worker_does_not_stop_training(make_cluster, reference):
    code, result, stderr = make_cluster().chief(victim=("worker", 1))
    assert code == 0, stderr[-4000:]
    assert result["kill_step"] >= 40
    # The coordinator saw the failure and gave the worker's steps to the
    # other: every scheduled step ran, and a step whose updates had already
    # reached the parameter server before the kill ran twice at most once
    # per failure.
    assert result["worker_failures"] >= 1
    assert STEPS <= result["steps"] <= STEPS + result["worker_failures"]
    assert len(result["loss"]) == 2
    assert result["loss"][-1] == pytest.approx(reference["loss"][-1], rel=0.03)


@pytest.mark.slow
@pytest.mark.keras2
def test_a_lost_parameter_server_fails_fast_and_resumes(make_cluster, reference):
    job = make_cluster()
    code, lost, stderr = job.chief(victim=("ps", 0))
    assert code != 0
    assert "ParameterServerLost" in stderr
    assert lost["seconds_to_fail"] < 10
    message = lost["lost"]
    assert "A parameter server failed (/job:ps/replica:0/task:0)" in message
    assert "Restart the parameter servers, then run this job again" in message
    saved = int(message.rsplit("ckpt-", 1)[1].rstrip("."))
    assert saved % SAVE_EVERY == 0 and saved <= lost["kill_step"]
    # The documented restart: a new parameter server, the same job again.
    job.restart("ps", 0)
    code, result, stderr = job.chief()
    assert code == 0, stderr[-4000:]
    assert result["resumed_from_step"] == saved
    assert lost["kill_step"] - saved <= SAVE_EVERY  # steps lost
    assert result["steps"] == STEPS
    assert result["loss"][-1] == pytest.approx(reference["loss"][-1], rel=0.05)


def fit_four_steps(model, save_every):
    """fit_parameter_servers on a model and no data: its checks come first."""
    import ctxfeatures as cf

    return cf.training.fit_parameter_servers(
        model,
        lambda context: None,
        epochs=1,
        steps_per_epoch=4,
        directory="unused",
        save_every=save_every,
    )


@pytest.mark.keras2
def test_fit_parameter_servers_refuses_other_setups():
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="ParameterServerStrategy scope"):
        fit_four_steps(model, save_every=2)
    with pytest.raises(ValueError, match="`save_every` must be >= 1"):
        fit_four_steps(model, save_every=0)


def test_fit_parameter_servers_under_keras3_says_it_needs_keras2():
    import tensorflow as tf

    import ctxfeatures as cf

    if cf.keras_version != 3:
        pytest.skip("checks the Keras 3 refusal; this run uses Keras 2")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    with pytest.raises(RuntimeError, match="needs Keras 2.*TF_USE_LEGACY_KERAS=1"):
        fit_four_steps(model, save_every=2)
