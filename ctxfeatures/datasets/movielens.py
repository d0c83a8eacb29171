"""MovieLens (GroupLens) as ``tf.data`` datasets of rating dicts.

Two data sets, with the same column names: MovieLens 100K (``"ml-100k"``,
943 users, 1,682 movies, 1997-1998) and MovieLens latest-small
(``"ml-latest-small"``, 610 users, 9,742 movies, 1996-2018). The files are
read from a local directory (the data set is recognised by its files), or
downloaded once from GroupLens into a cache and verified by SHA-256. The
data sets' licence forbids redistribution, so ctxfeatures never ships a copy.

Example:
    >>> from ctxfeatures.datasets import movielens
    >>> ratings, movies = movielens.load("path/to/ml-100k")  # doctest: +SKIP
    >>> ratings, movies = movielens.load(dataset="ml-latest-small")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from typing import NamedTuple

import numpy as np
import tensorflow as tf

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
_MARKER = ".ctxfeatures-verified"


class _Source(NamedTuple):
    """Where a data set comes from and how its download is verified."""

    url: str
    archive_sha256: str | None  # GroupLens rebuilds "latest" archives: files
    files: tuple[str, ...]  # the files read, in the order they are checked
    file_sha256: dict[str, str]


#: The data sets :func:`load` reads, by name.
DATASETS = {
    "ml-100k": _Source(URL, SHA256, ("u.data", "u.item", "u.user"), {}),
    "ml-latest-small": _Source(
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        None,
        ("ratings.csv", "movies.csv"),
        {
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded"
            "676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789"
            "d2b13f294a69fdfbc5727f8a9611aa07",
        },
    ),
}
_FILES = DATASETS["ml-100k"].files

__all__ = [
    "DATASETS",
    "MovieLens",
    "MovieLens100K",
    "URL",
    "SHA256",
    "download",
    "load",
    "load_arrays",
]


class MovieLens(NamedTuple):
    """The two datasets returned by :func:`load`.

    Attributes:
        ratings: One dict per rating with ``user_id`` (string), ``movie_id``
            (string), ``movie_title``, ``timestamp`` (int64 seconds),
            ``rating`` (float32), ``genres`` (multi-valued, ``"|"``-joined
            string such as ``"Action|Comedy"``, ``""`` for none; feed it to
            :class:`~ctxfeatures.MultiIdEmbedding`); MovieLens 100K adds
            ``age`` (int64), ``gender``, ``occupation`` and ``zip``.
        movies: The catalogue, one dict per movie: ``movie_id``,
            ``movie_title``, ``genres``.
    """

    ratings: tf.data.Dataset
    movies: tf.data.Dataset


#: The former name of :class:`MovieLens`, kept for existing code.
MovieLens100K = MovieLens


class MalformedFileError(ValueError):
    """A MovieLens file has a line that does not parse."""


def _text(path: str, encoding: str) -> str:
    """The file's text. ``"latin-1"`` files also read as UTF-8 when they are
    valid UTF-8, i.e. re-encoded copies, whose titles would otherwise garble."""
    name = os.path.basename(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.strip():
        raise MalformedFileError(
            f"{name} is empty. Re-download the GroupLens archive, or call "
            "ctxfeatures.datasets.movielens.load() without `data_dir`."
        )
    if encoding == "latin-1":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise MalformedFileError(
            f"{name} line {line}: byte {raw[error.start]:#x} is not {encoding} "
            "text, which this file always is. Use the original GroupLens file."
        ) from None


def _fields(path: str, separator: str, count: int, encoding: str) -> list[list[str]]:
    name = os.path.basename(path)
    rows = []
    for number, line in enumerate(_text(path, encoding).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            continue
        parts = line.split(separator)
        if len(parts) != count:
            raise MalformedFileError(
                f"{name} line {number}: expected {count} "
                f"{separator!r}-separated fields, found {len(parts)}: "
                f"{line[:80]!r}"
            )
        rows.append(parts)
    return rows


def _integers(
    values: list[str], path: str, column: str, first_line: int = 1
) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except ValueError:
        bad = next(
            i for i, v in enumerate(values) if not v.strip().lstrip("-").isdigit()
        )
        raise MalformedFileError(
            f"{os.path.basename(path)} line {bad + first_line}: {column} "
            f"{values[bad]!r} "
            "is not an integer."
        ) from None


def _genre_names(data_dir: str) -> list[str]:
    path = os.path.join(data_dir, "u.genre")
    if not os.path.exists(path):
        return [
            "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
            "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
            "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
            "Western",
        ]  # fmt: skip
    return [row[0] for row in _fields(path, "|", 2, "latin-1")]


def load_arrays(
    data_dir: str | None = None,
    *,
    cache_dir: str | None = None,
    dataset: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reads the files into numpy columns: ``(ratings, movies)``.

    Same arguments and columns as :func:`load`.

    Raises:
        MalformedFileError: a line that does not parse (file and line named).
        FileNotFoundError: ``data_dir`` lacks one of the files.
        ValueError: an unknown ``dataset``.
        OSError: no ``data_dir`` and the download failed.
    """
    data_dir, dataset = _resolve(data_dir, cache_dir, dataset)
    if dataset == "ml-latest-small":
        return _latest_small(data_dir)
    return _ml100k(data_dir)


def _ml100k(data_dir: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    paths = {name: os.path.join(data_dir, name) for name in _FILES}
    genre_names = _genre_names(data_dir)
    items = _fields(paths["u.item"], "|", 5 + len(genre_names), "latin-1")
    item_ids = [row[0] for row in items]
    flags = np.asarray([row[5:] for row in items])
    if not np.isin(flags, ["0", "1"]).all():
        row = int(np.argwhere(~np.isin(flags, ["0", "1"]))[0][0])
        raise MalformedFileError(f"u.item line {row + 1}: genre flags must be 0 or 1.")
    movies = {
        "movie_id": np.asarray(item_ids),
        "movie_title": np.asarray([row[1] for row in items]),
        "genres": np.asarray(
            ["|".join(g for g, f in zip(genre_names, row) if f == "1") for row in flags]
        ),
    }
    users = _fields(paths["u.user"], "|", 5, "ascii")
    user_index = {row[0]: row for row in users}
    ages = _integers([row[1] for row in users], paths["u.user"], "age")
    age_of = dict(zip((row[0] for row in users), ages.tolist()))
    ratings_rows = _fields(paths["u.data"], "\t", 4, "ascii")
    columns = list(zip(*ratings_rows))
    user_ids, movie_ids = np.asarray(columns[0]), np.asarray(columns[1])
    item_position = {item: i for i, item in enumerate(item_ids)}
    for number, (user, movie) in enumerate(zip(user_ids, movie_ids), start=1):
        if user not in user_index or movie not in item_position:
            raise MalformedFileError(
                f"u.data line {number}: unknown user {user!r} or movie {movie!r}."
            )
    position = np.asarray([item_position[m] for m in movie_ids])
    ratings = {
        "user_id": user_ids,
        "movie_id": movie_ids,
        "movie_title": movies["movie_title"][position],
        "timestamp": _integers(list(columns[3]), paths["u.data"], "timestamp"),
        "rating": _integers(list(columns[2]), paths["u.data"], "rating").astype(
            np.float32
        ),
        "genres": movies["genres"][position],
        "age": np.asarray([age_of[u] for u in user_ids], np.int64),
        "gender": np.asarray([user_index[u][2] for u in user_ids]),
        "occupation": np.asarray([user_index[u][3] for u in user_ids]),
        "zip": np.asarray([user_index[u][4] for u in user_ids]),
    }
    return ratings, movies


def _to_dataset(columns: dict[str, np.ndarray]) -> tf.data.Dataset:
    # Genres stay "|"-joined strings: unlike ragged elements they survive
    # Dataset.map() and batch(), and MultiIdEmbedding splits them itself.
    return tf.data.Dataset.from_tensor_slices(dict(columns))


def load(
    data_dir: str | None = None,
    *,
    cache_dir: str | None = None,
    dataset: str | None = None,
) -> MovieLens:
    """Loads a MovieLens data set as ``(ratings, movies)`` ``tf.data`` datasets.

    Args:
        data_dir: Folder holding the GroupLens files: ``u.data``, ``u.item``
            (latin-1), ``u.user`` and ``u.genre`` for MovieLens 100K;
            ``ratings.csv`` and ``movies.csv`` for latest-small. The data set
            is recognised by its files. When ``None``, ``dataset``'s archive
            is downloaded once into ``cache_dir`` and verified by SHA-256.
        cache_dir: Download cache (default ``~/.keras``).
        dataset: ``"ml-100k"`` or ``"ml-latest-small"`` (see
            :data:`DATASETS`). ``None``: the one in ``data_dir``, or
            ``"ml-100k"`` to download. Given with ``data_dir``, the folder
            must hold that data set.

    Returns:
        A :class:`MovieLens` named tuple ``(ratings, movies)`` of unbatched
        datasets of dicts, with the same column names for both data sets.

    Raises:
        MalformedFileError: a line that does not parse (file and line named).
        FileNotFoundError: ``data_dir`` lacks the data set's files.
        ValueError: an unknown ``dataset``.
        OSError: no ``data_dir`` and the download failed (e.g. offline).
    """
    ratings, movies = load_arrays(data_dir, cache_dir=cache_dir, dataset=dataset)
    return MovieLens(_to_dataset(ratings), _to_dataset(movies))


def _check_dataset(dataset: str | None) -> None:
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(
            f"`dataset` must be one of {sorted(DATASETS)}. Received: "
            f"dataset={dataset!r}"
        )


def _resolve(
    data_dir: str | None, cache_dir: str | None, dataset: str | None
) -> tuple[str, str]:
    """The data folder and the name of the data set in it."""
    _check_dataset(dataset)
    if data_dir is None:
        dataset = dataset or "ml-100k"
        return download(cache_dir=cache_dir, dataset=dataset), dataset
    data_dir = os.fspath(data_dir)
    found = [
        name
        for name, source in DATASETS.items()
        if os.path.exists(os.path.join(data_dir, source.files[0]))
    ]
    dataset = dataset or (found[0] if found else "ml-100k")
    for name in DATASETS[dataset].files:
        if not os.path.exists(os.path.join(data_dir, name)):
            raise FileNotFoundError(
                f"{os.path.join(data_dir, name)} does not exist: `data_dir` must "
                f"be the {dataset} folder holding "
                f"{' and '.join(DATASETS[dataset].files)}."
            )
    return data_dir, dataset


def _csv_rows(path: str, count: int) -> list[list[str]]:
    """The rows of a GroupLens CSV file (UTF-8, quoted fields), header dropped."""
    name = os.path.basename(path)
    rows = list(csv.reader(io.StringIO(_text(path, "utf-8"))))
    for number, row in enumerate(rows, start=1):
        if len(row) != count:
            raise MalformedFileError(
                f"{name} line {number}: expected {count} comma-separated fields, "
                f"found {len(row)}: {','.join(row)[:80]!r}"
            )
    return rows[1:]


def _latest_small(
    data_dir: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    movies_path = os.path.join(data_dir, "movies.csv")
    ratings_path = os.path.join(data_dir, "ratings.csv")
    items = _csv_rows(movies_path, 3)
    genres = [row[2] if row[2] != "(no genres listed)" else "" for row in items]
    movies = {
        "movie_id": np.asarray([row[0] for row in items]),
        "movie_title": np.asarray([row[1] for row in items]),
        "genres": np.asarray(genres),
    }
    columns = list(zip(*_csv_rows(ratings_path, 4))) or [()] * 4
    movie_ids = np.asarray(columns[1], dtype=str)
    position = {movie: i for i, movie in enumerate(movies["movie_id"].tolist())}
    unknown = [n for n, m in enumerate(movie_ids.tolist(), 2) if m not in position]
    if unknown:
        raise MalformedFileError(
            f"ratings.csv line {unknown[0]}: movie {str(movie_ids[unknown[0] - 2])!r} "
            "is not in movies.csv. Use the original GroupLens files."
        )
    try:
        rating = np.asarray(columns[2], dtype=np.float32)
    except ValueError:
        bad = next(i for i, v in enumerate(columns[2]) if not _is_number(v))
        raise MalformedFileError(
            f"ratings.csv line {bad + 2}: rating {columns[2][bad]!r} is not a number."
        ) from None
    index = np.asarray([position[m] for m in movie_ids.tolist()], np.int64)
    ratings = {
        "user_id": np.asarray(columns[0], dtype=str),
        "movie_id": movie_ids,
        "movie_title": movies["movie_title"][index],
        "timestamp": _integers(list(columns[3]), ratings_path, "timestamp", 2),
        "rating": rating,
        "genres": movies["genres"][index],
    }
    return ratings, movies


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def download(
    cache_dir: str | None = None,
    *,
    origin: str | None = None,
    sha256: str | None = None,
    dataset: str = "ml-100k",
) -> str:
    """Downloads and unpacks a MovieLens archive once; returns the data folder.

    The archive is checked against ``sha256`` (by default the published
    archive's, for ``ml-100k``) before it is unpacked, and the files read
    are checked against theirs (``ml-latest-small``, whose archive GroupLens
    may rebuild). It is unpacked into a temporary folder that is renamed into
    place only when complete and verified, so an interrupted download or
    extraction never passes for data.

    Args:
        cache_dir: Download cache (default ``~/.keras``).
        origin: Archive address (default: GroupLens').
        sha256: Expected SHA-256 of the archive (default: the data set's).
        dataset: ``"ml-100k"`` or ``"ml-latest-small"``.

    Raises:
        OSError: the download failed, e.g. without a network connection.
        ValueError: the archive or a file in it does not match its SHA-256.
    """
    _check_dataset(dataset)
    source = DATASETS[dataset]
    origin = origin or source.url
    sha256 = sha256 or source.archive_sha256
    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".keras"))
    target = os.path.join(cache_dir, "datasets", dataset)
    if os.path.exists(os.path.join(target, _MARKER)):
        return target
    # get_file silently falls back to /tmp when cache_dir does not exist yet.
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        archive = tf.keras.utils.get_file(
            f"{dataset}.zip",
            origin=origin,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=cache_dir,
            cache_subdir="datasets",
        )
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - urllib raises many types
        raise OSError(
            f"Could not download MovieLens ({dataset}) from {origin} ({error}); "
            "pass `data_dir=` (or --data-dir) pointing at a local "
            f"{dataset} folder that holds {' and '.join(source.files)}."
        ) from None
    staging = tempfile.mkdtemp(prefix=f".{dataset}-", dir=os.path.dirname(target))
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
        unpacked = os.path.join(staging, dataset)
        _verify_files(unpacked, source.file_sha256)
        open(os.path.join(unpacked, _MARKER), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _verify_files(folder: str, expected: dict[str, str]) -> None:
    for name, digest in expected.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise ValueError(f"The downloaded archive has no {name}.")
        with open(path, "rb") as handle:
            got = hashlib.sha256(handle.read()).hexdigest()
        if got != digest:
            raise ValueError(
                f"The downloaded {name} has SHA-256 {got}, not the expected "
                f"{digest}: the archive changed or is damaged. Pass `data_dir=` "
                "pointing at a copy of the files you trust."
            )
