from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from ctxfeatures import splits
from ctxfeatures.datasets import movielens


def test_loader_on_the_real_files(ml100k):
    ratings, movies = movielens.load(str(ml100k))
    assert int(ratings.cardinality()) == 100_000
    assert int(movies.cardinality()) == 1_682
    columns, _ = movielens.load_arrays(str(ml100k))
    assert len(np.unique(columns["user_id"])) == 943
    assert len(np.unique(columns["movie_id"])) == 1_682
    first = next(iter(ratings))
    assert first["user_id"].numpy() == b"196"
    assert first["movie_id"].numpy() == b"242"
    assert first["rating"].numpy() == 3.0
    assert first["timestamp"].numpy() == 881250949
    assert first["timestamp"].dtype == tf.int64
    assert first["movie_title"].numpy().decode() == "Kolya (1996)"
    assert first["genres"].numpy() == b"Comedy"
    assert first["age"].numpy() == 49 and first["occupation"].numpy() == b"writer"
    titles = set(columns["movie_title"].tolist())
    assert "Misérables, Les (1995)" in titles


def fake_ml100k(folder, data_lines=("1\t1\t5\t881250949",)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("\n".join(data_lines) + "\n")
    flags = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_bytes(
        f"1|Mis\xe9rables (1995)|01-Jan-1995||http://x|{flags}\n".encode("latin-1")
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n")
    return folder


def test_malformed_lines_name_file_and_line(tmp_path):
    folder = fake_ml100k(tmp_path / "ml", ("1\t1\t5\t881250949", "1\t1\t5"))
    with pytest.raises(movielens.MalformedFileError, match="u.data line 2"):
        movielens.load(str(folder))
    folder = fake_ml100k(tmp_path / "ml2", ("1\t1\t5\tsoon",))
    with pytest.raises(movielens.MalformedFileError, match="u.data line 1.*soon"):
        movielens.load(str(folder))


def test_synthetic_folder_reads_latin1(tmp_path):
    ratings, movies = movielens.load(str(fake_ml100k(tmp_path / "ml")))
    row = next(iter(ratings))
    assert row["movie_title"].numpy().decode() == "Misérables (1995)"
    assert row["genres"].numpy() == b"Western"


def make_zip(tmp_path):
    fake_ml100k(tmp_path / "src" / "ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in (tmp_path / "src" / "ml-100k").iterdir():
            bundle.write(path, f"ml-100k/{path.name}")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_verifies_checksum_and_unpacks_atomically(tmp_path):
    archive, digest = make_zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError):
        movielens.download(str(cache), origin=archive.as_uri(), sha256="0" * 64)
    assert not (cache / "datasets" / "ml-100k").exists()
    folder = movielens.download(str(cache), origin=archive.as_uri(), sha256=digest)
    assert (tmp_path / "cache" / "datasets" / "ml-100k" / "u.data").exists()
    ratings, _ = movielens.load(folder)
    assert int(ratings.cardinality()) == 1
    # Cached: no second download even if the origin disappears.
    archive.unlink()
    assert movielens.download(str(cache), origin=archive.as_uri(), sha256=digest)


def test_offline_download_fails_with_one_clear_sentence(tmp_path):
    with pytest.raises(OSError, match="pass `data_dir=`"):
        movielens.download(
            str(tmp_path), origin="http://127.0.0.1:9/ml-100k.zip", sha256="0" * 64
        )
    assert not list((tmp_path / "datasets").glob("ml-100k*"))


def ids(data):
    return {
        (r["user_id"].numpy(), r["movie_id"].numpy(), int(r["timestamp"]))
        for r in data.batch(100_000).unbatch()
    }


@pytest.mark.slow  # 100,000 real events: in the main suite only
def test_splits_on_real_data(ml100k):
    ratings, _ = movielens.load(str(ml100k))
    train, test = splits.random_split(ratings, 80_000, seed=42)
    a = next(iter(train.batch(100_000)))
    b = next(iter(test.batch(100_000)))
    assert len(a["user_id"]) == 80_000 and len(b["user_id"]) == 20_000
    again = next(iter(train.batch(100_000)))
    np.testing.assert_array_equal(a["timestamp"], again["timestamp"])
    keys_a = set(zip(a["user_id"].numpy(), a["movie_id"].numpy()))
    keys_b = set(zip(b["user_id"].numpy(), b["movie_id"].numpy()))
    assert not keys_a & keys_b

    train, test = splits.chronological_split(ratings, 0.8)
    a = next(iter(train.batch(100_000)))["timestamp"].numpy()
    b = next(iter(test.batch(100_000)))["timestamp"].numpy()
    assert a.size + b.size == 100_000 and abs(a.size - 80_000) < 100
    assert a.max() < b.min()

    train, test = splits.leave_last_out(ratings)
    t = next(iter(test.batch(100_000)))
    assert len(np.unique(t["user_id"].numpy())) == len(t["user_id"]) == 943


def test_a_re_encoded_utf8_item_file_reads_the_same_titles(tmp_path):
    folder = fake_ml100k(tmp_path / "ml")
    item = folder / "u.item"
    item.write_bytes(item.read_bytes().decode("latin-1").encode("utf-8"))
    ratings, _ = movielens.load(str(folder))
    title = next(iter(ratings))["movie_title"].numpy().decode()
    assert title == "Misérables (1995)"


LOADER_ERRORS = [
    ("empty-ratings", "u.data", b"", "u.data is empty"),
    ("blank-ratings", "u.data", b"\n\n", "u.data is empty"),
    ("non-ascii-ratings", "u.data", b"1\t1\t5\t88125094\xe9\n", "u.data line 1.*0xe9"),
    ("empty-items", "u.item", b"", "u.item is empty"),
    ("non-ascii-users", "u.user", b"1|24|M|t\xe9ch|85711\n", "u.user line 1"),
]


@pytest.mark.parametrize(
    "name, content, match", [pytest.param(*c[1:], id=c[0]) for c in LOADER_ERRORS]
)
def test_loader_errors_name_the_file_and_the_fix(tmp_path, name, content, match):
    folder = fake_ml100k(tmp_path / "ml")
    (folder / name).write_bytes(content)
    with pytest.raises(movielens.MalformedFileError, match=match):
        movielens.load(str(folder))


def test_latest_small_on_the_real_files(ml_latest_small):
    ratings, movies = movielens.load(str(ml_latest_small))
    assert int(ratings.cardinality()) == 100_836
    assert int(movies.cardinality()) == 9_742
    columns, catalogue = movielens.load_arrays(str(ml_latest_small))
    assert len(np.unique(columns["user_id"])) == 610
    # Same column names as MovieLens 100K, without the user demographics.
    assert sorted(columns) == [
        "genres", "movie_id", "movie_title", "rating", "timestamp", "user_id"
    ]  # fmt: skip
    first = next(iter(ratings))
    assert first["user_id"].numpy() == b"1" and first["movie_id"].numpy() == b"1"
    assert first["movie_title"].numpy().decode() == "Toy Story (1995)"
    assert first["genres"].numpy() == b"Adventure|Animation|Children|Comedy|Fantasy"
    assert first["timestamp"].numpy() == 964982703 and first["rating"] == 4.0
    # Quoted titles with commas, UTF-8 titles, "(no genres listed)" -> "".
    titles = set(catalogue["movie_title"].tolist())
    assert "American President, The (1995)" in titles
    assert any("é" in t for t in titles)
    assert (catalogue["genres"] == "").sum() == 34
    with pytest.raises(FileNotFoundError, match="the ml-100k folder"):
        movielens.load(str(ml_latest_small), dataset="ml-100k")


def fake_latest_small(folder, ratings="1,10,4.5,964982703\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_bytes(
        b'movieId,title,genres\r\n10,"Mis\xc3\xa9rables, Les (1995)",'
        b"(no genres listed)\r\n11,Heat (1995),Action|Crime\r\n"
    )
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + ratings)
    return folder


def test_latest_small_format_is_recognised_by_its_files(tmp_path):
    ratings, movies = movielens.load(str(fake_latest_small(tmp_path / "small")))
    row = next(iter(ratings))
    assert row["movie_title"].numpy().decode() == "Misérables, Les (1995)"
    assert row["genres"].numpy() == b"" and row["rating"].numpy() == 4.5
    assert int(movies.cardinality()) == 2


LATEST_SMALL_ERRORS = [
    ("unknown-movie", "1,99,4.0,964982703\n", "line 2: movie '99'"),
    ("bad-rating", "1,10,good,964982703\n", "line 2: rating 'good'"),
    ("bad-time", "1,10,4.0,soon\n", "ratings.csv line 2: timestamp 'soon'"),
    ("short-line", "1,10,4.0\n", "ratings.csv line 2: expected 4"),
]


@pytest.mark.parametrize(
    "ratings, match", [pytest.param(*c[1:], id=c[0]) for c in LATEST_SMALL_ERRORS]
)
def test_latest_small_errors_name_the_file_and_line(tmp_path, ratings, match):
    folder = fake_latest_small(tmp_path / "small", ratings)
    with pytest.raises(movielens.MalformedFileError, match=match):
        movielens.load(str(folder))


def test_unknown_dataset_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be one of"):
        movielens.load(str(tmp_path), dataset="ml-1m")


def test_latest_small_download_verifies_the_files(tmp_path, ml_latest_small):
    def archive(name, tamper):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as bundle:
            for file in ("ratings.csv", "movies.csv"):
                data = (ml_latest_small / file).read_bytes()
                if tamper and file == "ratings.csv":
                    data = data.replace(b"964982703", b"964982704", 1)
                bundle.writestr(f"ml-latest-small/{file}", data)
        return path

    cache = tmp_path / "cache"
    bad = archive("bad.zip", tamper=True)
    with pytest.raises(ValueError, match="ratings.csv has SHA-256"):
        movielens.download(str(cache), origin=bad.as_uri(), dataset="ml-latest-small")
    assert not (cache / "datasets" / "ml-latest-small").exists()
    (cache / "datasets" / "ml-latest-small.zip").unlink()  # get_file's copy
    good = archive("good.zip", tamper=False)
    folder = movielens.download(
        str(cache), origin=good.as_uri(), dataset="ml-latest-small"
    )
    columns, _ = movielens.load_arrays(folder)
    assert columns["timestamp"].size == 100_836
