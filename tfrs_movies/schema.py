"""Column names and the canonical frames, in one place.

Every loader returns a :class:`Dataset` made of three pandas frames with these columns, whatever the
file format it read. Nothing else in the project spells a column name as a string literal.

ratings (one row per rating)
    ``user_id`` int64, ``movie_id`` int64, ``rating`` float32, ``timestamp`` int64 (Unix seconds, UTC;
    Netflix dates become midnight UTC of that day).
users (one row per user; may be empty when the format has no user file, e.g. ml-25m, Netflix)
    ``user_id`` int64, ``age`` float32 (NaN unknown; ML-1M's bucket code is kept as the age),
    ``gender`` str ("M"/"F", "" unknown), ``occupation`` str, ``zip_code`` str (kept as text: "T8H1N").
movies (one row per movie known to the dataset, rated or not)
    ``movie_id`` int64, ``title`` str (as in the file, year included), ``year`` float32 (NaN unknown),
    ``genres`` tuple[str, ...], and where the source has them: ``tags`` tuple[str, ...], ``imdb_id``
    str ("tt0114709"), ``runtime`` float32, ``imdb_rating`` float32, ``imdb_votes`` float32,
    ``directors`` tuple[str, ...], ``actors`` tuple[str, ...] (leading actors, billing order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

USER_ID = "user_id"
MOVIE_ID = "movie_id"
RATING = "rating"
TIMESTAMP = "timestamp"
RATING_COLUMNS = (USER_ID, MOVIE_ID, RATING, TIMESTAMP)

AGE = "age"
GENDER = "gender"
OCCUPATION = "occupation"
ZIP_CODE = "zip_code"
USER_COLUMNS = (USER_ID, AGE, GENDER, OCCUPATION, ZIP_CODE)

TITLE = "title"
YEAR = "year"
GENRES = "genres"
TAGS = "tags"
IMDB_ID = "imdb_id"
RUNTIME = "runtime"
IMDB_RATING = "imdb_rating"
IMDB_VOTES = "imdb_votes"
DIRECTORS = "directors"
ACTORS = "actors"
MOVIE_COLUMNS = (MOVIE_ID, TITLE, YEAR, GENRES)
OPTIONAL_MOVIE_COLUMNS = (TAGS, IMDB_ID, RUNTIME, IMDB_RATING, IMDB_VOTES, DIRECTORS, ACTORS)

# Added by the splitters and the evaluators, never by loaders.
PREDICTION = "prediction"

RATINGS_DTYPES = {USER_ID: np.int64, MOVIE_ID: np.int64, RATING: np.float32, TIMESTAMP: np.int64}


def __getattr__(name: str):
    """``DATASET_NAMES``: the names of the dataset table (:mod:`tfrs_movies.data.registry`), read lazily
    because that package imports this module."""
    if name == "DATASET_NAMES":
        from tfrs_movies.data.registry import DATASET_NAMES

        return DATASET_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Dataset:
    """A loaded dataset in the canonical schema.

    ``rating_scale`` is the (lowest, highest) rating the format allows, e.g. (1, 5) or (0.5, 5).
    ``genres`` is the genre vocabulary of the format, in the file's order (empty when it has none).
    ``report`` holds loader notes such as skipped bad lines or the IMDb match share.
    """

    name: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame = field(default_factory=lambda: empty_users())
    rating_scale: tuple[float, float] = (1.0, 5.0)
    genres: tuple[str, ...] = ()
    report: dict = field(default_factory=dict)

    def info(self) -> dict:
        """Counts for ``python -m tfrs_movies.data info``."""
        out = {
            "dataset": self.name,
            "ratings": int(len(self.ratings)),
            "users": int(self.ratings[USER_ID].nunique()),
            "movies": int(len(self.movies)) if len(self.movies) else int(self.ratings[MOVIE_ID].nunique()),
            "rated_movies": int(self.ratings[MOVIE_ID].nunique()),
            "rating_scale": list(self.rating_scale),
        }
        if self.genres:
            out["genres"] = len(self.genres)
        out.update({k: v for k, v in self.report.items() if k not in out})
        return out


def empty_users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            USER_ID: pd.Series(dtype=np.int64),
            AGE: pd.Series(dtype=np.float32),
            GENDER: pd.Series(dtype=object),
            OCCUPATION: pd.Series(dtype=object),
            ZIP_CODE: pd.Series(dtype=object),
        }
    )


def canonical_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with exactly the rating columns, in order, with the canonical dtypes."""
    return frame.loc[:, list(RATING_COLUMNS)].astype(RATINGS_DTYPES).reset_index(drop=True)
