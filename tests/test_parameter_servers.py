"""ParameterServerStrategy: chief + 2 workers + 2 parameter servers on localhost.

The programs are ``tests/ps_server.py`` (each worker and parameter server) and
``tests/ps_chief.py`` (the chief); docs/distributed.rst shows them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Parameter-server training is Keras 2 only (Keras 3 has no support for it).
pytestmark = pytest.mark.keras2


@pytest.fixture(scope="module")
def chief_result(tmp_path_factory, root, child_env, cluster):
    out = tmp_path_factory.mktemp("ps")
    addresses = cluster(chief=1, worker=2, ps=2)

    def environment(task: str, index: int) -> dict[str, str]:
        config = {"cluster": addresses, "task": {"type": task, "index": index}}
        return child_env({"TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(config)})

    servers = [
        subprocess.Popen(
            [sys.executable, str(root / "tests" / "ps_server.py")],
            env=environment(task, index),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for task in ("worker", "ps")
        for index in range(2)
    ]
    try:
        chief = subprocess.run(
            [sys.executable, str(root / "tests" / "ps_chief.py"), str(out)],
            env=environment("chief", 0),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(root),
        )
    finally:
        for server in servers:
            server.kill()
            server.wait()
    assert chief.returncode == 0, chief.stderr[-4000:]
    return json.loads(chief.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_epoch_matches_a_single_process_within_one_percent(chief_result):
    # The model learned (so 1% is a real bound), and the asynchronous
    # workers' epoch loss is that of one process on the same batches.
    assert chief_result["expected"] < 0.9 * chief_result["untrained"]
    assert chief_result["loss"] == pytest.approx(chief_result["expected"], rel=0.01)


@pytest.mark.slow
def test_every_table_is_split_across_both_parameter_servers(chief_result):
    shards = chief_result["shards"]
    assert len(shards) == 4, shards  # user id, time buckets, item id, text
    for name, table in shards.items():
        devices = sorted(device for _, device in table["parts"])
        assert devices == [
            "/job:ps/replica:0/task:0/device:CPU:0",
            "/job:ps/replica:0/task:1/device:CPU:0",
        ], name
        assert sum(rows for rows, _ in table["parts"]) == table["rows"], name


@pytest.mark.slow
def test_the_checkpoint_restores_sharded_and_on_one_machine(chief_result):
    assert chief_result["restored_max_difference"] == 0.0
    assert chief_result["top_10_restored"] == chief_result["top_10"]
    assert chief_result["top_10_local"] == pytest.approx(chief_result["top_10"])
    assert chief_result["top_10"] > 0.5  # 40 items: chance is 0.25
    assert chief_result["served"] == [1, 10]
