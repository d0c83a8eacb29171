"""MovieLens 100K (GroupLens) as ``tf.data`` datasets of rating dicts.

The files are read from a local directory, or downloaded once from GroupLens
into a cache and verified by SHA-256. The data set's licence forbids
redistribution, so ctxfeatures never ships a copy.

Example:
    >>> from ctxfeatures.datasets import movielens
    >>> ratings, movies = movielens.load("path/to/ml-100k")  # doctest: +SKIP
"""

from __future__ import annotations

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
_FILES = ("u.data", "u.item", "u.user")

__all__ = ["MovieLens100K", "URL", "SHA256", "download", "load", "load_arrays"]


class MovieLens100K(NamedTuple):
    """The two datasets returned by :func:`load`.

    Attributes:
        ratings: One dict per rating with ``user_id`` (string), ``movie_id``
            (string), ``movie_title``, ``timestamp`` (int64 seconds),
            ``rating`` (float32), ``genres`` (multi-valued, ``"|"``-joined
            string such as ``"Action|Comedy"``; feed it to
            :class:`~ctxfeatures.MultiIdEmbedding`), ``age``
            (int64), ``gender``, ``occupation`` and ``zip``.
        movies: The catalogue, one dict per movie: ``movie_id``,
            ``movie_title``, ``genres``.
    """

    ratings: tf.data.Dataset
    movies: tf.data.Dataset


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


def _integers(values: list[str], path: str, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except ValueError:
        bad = next(
            i for i, v in enumerate(values) if not v.strip().lstrip("-").isdigit()
        )
        raise MalformedFileError(
            f"{os.path.basename(path)} line {bad + 1}: {column} {values[bad]!r} "
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
    data_dir: str | None = None, *, cache_dir: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reads the files into numpy columns: ``(ratings, movies)``.

    Same columns as :func:`load`.

    Raises:
        MalformedFileError: a line that does not parse (file and line named).
        FileNotFoundError: ``data_dir`` lacks one of the files.
        OSError: no ``data_dir`` and the download failed.
    """
    data_dir = _resolve(data_dir, cache_dir)
    paths = {name: os.path.join(data_dir, name) for name in _FILES}
    for name, path in paths.items():
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} does not exist: `data_dir` must be the ml-100k folder "
                "holding u.data, u.item and u.user."
            )
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


def load(data_dir: str | None = None, *, cache_dir: str | None = None) -> MovieLens100K:
    """Loads MovieLens 100K as ``(ratings, movies)`` ``tf.data`` datasets.

    Args:
        data_dir: Folder holding the GroupLens files (``u.data``, ``u.item``
            in latin-1, ``u.user``, ``u.genre``). When ``None``, the archive is
            downloaded once into ``cache_dir`` and verified by SHA-256.
        cache_dir: Download cache (default ``~/.keras``).

    Returns:
        A :class:`MovieLens100K` named tuple ``(ratings, movies)`` of
        unbatched datasets of dicts.

    Raises:
        MalformedFileError: a line that does not parse (file and line named).
        OSError: no ``data_dir`` and the download failed (e.g. offline).
    """
    ratings, movies = load_arrays(data_dir, cache_dir=cache_dir)
    return MovieLens100K(_to_dataset(ratings), _to_dataset(movies))


def _resolve(data_dir: str | None, cache_dir: str | None) -> str:
    if data_dir is not None:
        return os.fspath(data_dir)
    return download(cache_dir=cache_dir)


def download(
    cache_dir: str | None = None, *, origin: str = URL, sha256: str = SHA256
) -> str:
    """Downloads and unpacks ``ml-100k.zip`` once; returns the data folder.

    The archive is checked against ``sha256`` before it is unpacked, and it is
    unpacked into a temporary folder that is renamed into place only when
    complete, so an interrupted download or extraction never passes for data.

    Raises:
        OSError: the download failed, e.g. without a network connection.
        ValueError: the downloaded archive does not match ``sha256``.
    """
    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".keras"))
    target = os.path.join(cache_dir, "datasets", "ml-100k")
    if os.path.exists(os.path.join(target, _MARKER)):
        return target
    # get_file silently falls back to /tmp when cache_dir does not exist yet.
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        archive = tf.keras.utils.get_file(
            "ml-100k.zip",
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
            f"Could not download MovieLens 100K from {origin} ({error}); pass "
            "`data_dir=` (or --data-dir) pointing at a local ml-100k folder "
            "that holds u.data, u.item and u.user."
        ) from None
    staging = tempfile.mkdtemp(prefix=".ml-100k-", dir=os.path.dirname(target))
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
        unpacked = os.path.join(staging, "ml-100k")
        open(os.path.join(unpacked, _MARKER), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
