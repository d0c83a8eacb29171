"""History features on DuckDB and Spark: equal to add_history, row for row."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

import ctxfeatures as cf
from ctxfeatures.datasets import movielens
from ctxfeatures.engines import duckdb as duck_engine
from ctxfeatures.engines import spark as spark_engine

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb")


# ----------------------------------------------------------------- helpers
def ties_log(n: int, seed: int = 0, text: bool = False) -> dict[str, np.ndarray]:
    """A log where most events share their second with others of the user."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, n) % 50
    items = rng.integers(0, 300, n)
    return {
        "event": np.arange(n, dtype=np.int64),
        "user_id": np.array([f"u{u}" for u in users]) if text else users,
        "movie_id": (np.array([f"m{i}" for i in items]) if text else items),
        # About five events per second in all: many ties within a user.
        "timestamp": rng.integers(1_000, 1_000 + n // 5, n).astype(np.int64),
    }


def write_shards(log: dict, directory, shards: int) -> list[str]:
    """The log in ``shards`` files named in order (read back in path order)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for number, rows in enumerate(np.array_split(np.arange(len(log["event"])), shards)):
        path = os.path.join(directory, f"log-{number:03d}.parquet")
        pq.write_table(pa.table({k: v[rows] for k, v in log.items()}), path)
        paths.append(path)
    return paths


def by_event(files) -> dict[str, np.ndarray]:
    """The engine's output in the log's order (by the `event` column)."""
    table = pq.read_table(files)
    order = np.argsort(table["event"].to_numpy())
    history = np.array(table["history"].to_pylist(), dtype=object)
    return {
        "event": table["event"].to_numpy()[order],
        "history": history[order],
        "seconds_since_last": table["seconds_since_last"].to_numpy()[order],
    }


def assert_same(result: dict, expected: dict) -> None:
    np.testing.assert_array_equal(result["event"], np.arange(len(result["event"])))
    np.testing.assert_array_equal(
        result["history"].astype(expected["history"].dtype), expected["history"]
    )
    np.testing.assert_array_equal(
        result["seconds_since_last"], expected["seconds_since_last"]
    )


@pytest.fixture
def ml100k_log(ml100k) -> dict[str, np.ndarray]:
    ratings, _ = movielens.load_arrays(str(ml100k))
    return {
        "event": np.arange(len(ratings["user_id"]), dtype=np.int64),
        **{k: ratings[k] for k in ("user_id", "movie_title", "timestamp")},
    }


# ----------------------------------------------------------------- DuckDB
def test_duckdb_equals_add_history_on_ml100k(ml100k_log, tmp_path):
    write_shards(ml100k_log, tmp_path / "log", 4)
    files = duck_engine.add_history(tmp_path / "log", tmp_path / "out", max_length=20)
    expected = cf.history.add_history(ml100k_log, max_length=20)
    assert_same(by_event(files), expected)
    schema = pq.read_schema(files[0])
    assert schema.names == [
        "event",
        "user_id",
        "movie_title",
        "timestamp",
        "history",
        "seconds_since_last",
    ]
    assert str(schema.field("history").type) == "list<element: string>"
    assert str(schema.field("seconds_since_last").type) == "int64"


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 19])
def test_duckdb_ties_across_chunks(tmp_path, monkeypatch, text, chunk):
    # Small chunks put a user's same-second events on both sides of a chunk
    # boundary, so the carried rows decide the result.
    monkeypatch.setattr(duck_engine, "_CHUNK", chunk)
    log = ties_log(1500 if chunk > 1 else 300, seed=chunk, text=text)
    write_shards(log, tmp_path / "log", 3)
    files = duck_engine.add_history(
        tmp_path / "log", tmp_path / "out", item="movie_id", max_length=4
    )
    expected = cf.history.add_history(log, item="movie_id", max_length=4)
    ties = np.unique(np.stack([log["user_id"], log["timestamp"]]), axis=1).shape[1]
    assert ties < len(log["event"]) * 0.9  # the fixture has many ties
    assert_same(by_event(files), expected)


@pytest.mark.slow
def test_duckdb_million_events(tmp_path):
    log = ties_log(10**6, seed=3)
    write_shards(log, tmp_path / "log", 5)
    files = duck_engine.add_history(
        tmp_path / "log",
        tmp_path / "out",
        item="movie_id",
        max_length=50,
        rows_per_file=300_000,
    )
    assert len(files) == 4
    assert [pq.read_metadata(f).num_rows for f in files] == [300_000] * 3 + [100_000]
    expected = cf.history.add_history(log, item="movie_id", max_length=50)
    assert_same(by_event(files), expected)


def test_duckdb_tie_breaker_replaces_file_order(tmp_path):
    log = ties_log(2000, seed=5)
    shuffled = np.random.default_rng(0).permutation(len(log["event"]))
    write_shards({k: v[shuffled] for k, v in log.items()}, tmp_path / "log", 2)
    files = duck_engine.add_history(
        tmp_path / "log",
        tmp_path / "out",
        item="movie_id",
        max_length=6,
        tie_breaker="event",
    )
    # In event order, as add_history sees the unshuffled log.
    expected = cf.history.add_history(log, item="movie_id", max_length=6)
    assert_same(by_event(files), expected)
    # Without it, file order decides ties and the result differs.
    other = duck_engine.add_history(
        tmp_path / "log", tmp_path / "other", item="movie_id", max_length=6
    )
    assert not np.array_equal(np.stack(by_event(other)["history"]), expected["history"])


def test_duckdb_tie_breaker_frees_the_position_names(tmp_path):
    # With a tie breaker DuckDB adds no position columns, so a log may have
    # its own `filename`.
    log = ties_log(500, seed=9)
    log["filename"] = np.array([f"f{i % 3}" for i in range(len(log["event"]))])
    write_shards(log, tmp_path / "log", 2)
    files = duck_engine.add_history(
        tmp_path / "log",
        tmp_path / "out",
        item="movie_id",
        max_length=3,
        tie_breaker="event",
    )
    assert "filename" in pq.read_schema(files[0]).names
    expected = cf.history.add_history(log, item="movie_id", max_length=3)
    assert_same(by_event(files), expected)


def bad_log(tmp_path, **changes) -> str:
    log = {
        "user_id": np.array(["a", "a", "b"]),
        "movie_title": np.array(["x", "y", "x"]),
        "timestamp": np.array([1, 2, 3], np.int64),
    }
    table = pa.table(log)
    for name, column in changes.items():
        table = (
            table.set_column(table.schema.get_field_index(name), name, column)
            if name in log
            else table.append_column(name, column)
        )
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return str(path)


@pytest.mark.parametrize(
    "changes, kwargs, error, match",
    [
        ({}, {"item": "title"}, ValueError, "item column 'title' is missing"),
        (
            {"timestamp": pa.array([1.5, 2.0, 3.0])},
            {},
            TypeError,
            "time column 'timestamp' must hold integer Unix seconds",
        ),
        (
            {"movie_title": pa.array(["x", None, "x"])},
            {},
            ValueError,
            "1 events have a missing",
        ),
        (
            {"timestamp": pa.array([1, -2, 3])},
            {},
            ValueError,
            "negative values",
        ),
        ({"movie_title": pa.array(["x", "", "x"])}, {}, ValueError, "pads histories"),
        (
            {"movie_title": pa.array([1.0, 2.0, 3.0])},
            {},
            TypeError,
            "item column 'movie_title' must hold string or integer ids",
        ),
        (
            {"filename": pa.array(["f", "f", "f"])},
            {},
            ValueError,
            "Rename them, or pass `tie_breaker=`",
        ),
        ({}, {"max_length": 0}, ValueError, "`max_length` must be >= 1"),
    ],
)
def test_duckdb_errors(tmp_path, changes, kwargs, error, match):
    path = bad_log(tmp_path, **changes)
    with pytest.raises(error, match=match):
        duck_engine.add_history(path, tmp_path / "out", **kwargs)
    # Nothing is left behind: no output, no temporary directory.
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet"]


def test_duckdb_refuses_a_used_destination(tmp_path):
    path = bad_log(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not an empty directory"):
        duck_engine.add_history(path, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="no Parquet file found"):
        duck_engine.add_history(tmp_path / "none", tmp_path / "new")


# ----------------------------------------------------------------- Spark
@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip(
        "pyspark.sql", reason='pyspark is missing: pip install "ctxfeatures[engines]"'
    )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17+ (none found; .ci/run installs it)")
    # Workers run this interpreter, not the first python3 on PATH: Spark
    # refuses a worker of another minor version (PYTHON_VERSION_MISMATCH).
    patch = pytest.MonkeyPatch()
    patch.setenv("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", sys.executable))
    session = (
        pyspark.SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    patch.undo()


def spark_result(spark, source, **kwargs) -> dict[str, np.ndarray]:
    frame = spark_engine.add_history(spark.read.parquet(str(source)), **kwargs)
    out = os.path.join(str(source) + "-out")
    frame.write.parquet(out)
    return by_event(out)


@pytest.mark.slow
def test_spark_equals_add_history_on_ml100k(spark, ml100k_log, tmp_path):
    write_shards(ml100k_log, tmp_path / "log", 4)
    expected = cf.history.add_history(ml100k_log, max_length=20)
    assert_same(spark_result(spark, tmp_path / "log", max_length=20), expected)


@pytest.mark.slow
@pytest.mark.parametrize("text", [False, True])
def test_spark_ties(spark, tmp_path, text):
    log = ties_log(3000, seed=11, text=text)
    write_shards(log, tmp_path / "log", 3)
    expected = cf.history.add_history(log, item="movie_id", max_length=4)
    result = spark_result(spark, tmp_path / "log", item="movie_id", max_length=4)
    assert_same(result, expected)


@pytest.mark.slow
def test_spark_million_events(spark, tmp_path):
    log = ties_log(10**6, seed=3)
    write_shards(log, tmp_path / "log", 5)
    expected = cf.history.add_history(log, item="movie_id", max_length=50)
    result = spark_result(spark, tmp_path / "log", item="movie_id", max_length=50)
    assert_same(result, expected)


@pytest.mark.slow
def test_spark_tie_breaker_and_errors(spark, tmp_path):
    log = ties_log(2000, seed=5)
    shuffled = np.random.default_rng(0).permutation(len(log["event"]))
    write_shards({k: v[shuffled] for k, v in log.items()}, tmp_path / "log", 2)
    expected = cf.history.add_history(log, item="movie_id", max_length=6)
    result = spark_result(
        spark, tmp_path / "log", item="movie_id", max_length=6, tie_breaker="event"
    )
    assert_same(result, expected)
    # A DataFrame not read from files has no order to break ties with.
    frame = spark.createDataFrame(
        [("a", "x", 1), ("a", "y", 1)], ["user_id", "movie_title", "timestamp"]
    )
    with pytest.raises(ValueError, match="Pass `tie_breaker=`"):
        spark_engine.add_history(frame)
    with pytest.raises(ValueError, match="the event log is empty"):
        spark_engine.add_history(frame.limit(0), tie_breaker="timestamp")
    with pytest.raises(ValueError, match="item column 'title' is missing"):
        spark_engine.add_history(frame, item="title", tie_breaker="timestamp")
    # Its own working columns are refused; DuckDB's position names are not.
    with pytest.raises(ValueError, match=r"columns \['__first'\], which the engine"):
        spark_engine.add_history(
            frame.withColumnRenamed("movie_title", "__first"),
            item="timestamp",
            tie_breaker="timestamp",
        )
    named = frame.withColumnRenamed("movie_title", "filename")
    out = spark_engine.add_history(named, item="filename", tie_breaker="timestamp")
    assert out.count() == 2
    with pytest.raises(TypeError, match="takes a pyspark DataFrame"):
        spark_engine.add_history({"user_id": [1]})


@pytest.mark.slow
def test_spark_documented_job(spark, tmp_path):
    log = ties_log(5000, seed=2)
    write_shards(log, tmp_path / "events", 3)
    events_path, output_path = str(tmp_path / "events"), str(tmp_path / "history")
    # [start spark-history]
    from ctxfeatures.engines import spark as engine

    events = spark.read.parquet(events_path)
    with_history = engine.add_history(events, item="movie_id", max_length=50)
    with_history.write.parquet(output_path)
    # [end spark-history]
    expected = cf.history.add_history(log, item="movie_id", max_length=50)
    assert_same(by_event(output_path), expected)
