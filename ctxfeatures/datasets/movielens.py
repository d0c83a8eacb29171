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

import hashlib
import os
import shutil
import tempfile
import zipfile
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ctxfeatures.datasets._grouplens import (
    ML100K_FILES,
    MalformedFileError,
    latest_small,
    ml100k,
)

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
    "ml-100k": _Source(URL, SHA256, ML100K_FILES, {}),
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

__all__ = [
    "DATASETS",
    "MalformedFileError",
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
        return latest_small(data_dir)
    return ml100k(data_dir)


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
