"""The GroupLens files of MovieLens read into numpy columns, each malformed
line named: MovieLens 100K's ``u.*`` files and latest-small's CSV files."""

from __future__ import annotations

import csv
import io
import os

import numpy as np

#: The files of MovieLens 100K that are read, in the order they are checked.
ML100K_FILES = ("u.data", "u.item", "u.user")


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


def ml100k(data_dir: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """MovieLens 100K's ``(ratings, movies)`` columns, with the users' columns
    on each rating."""
    paths = {name: os.path.join(data_dir, name) for name in ML100K_FILES}
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


def latest_small(
    data_dir: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """latest-small's ``(ratings, movies)`` columns, named as MovieLens 100K's."""
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
