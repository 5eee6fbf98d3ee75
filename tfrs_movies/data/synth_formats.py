"""Generated datasets written in the exact layouts of the real ones (``python -m tfrs_movies.data synth``).

One :func:`~tfrs_movies.data.synthetic.generate_world` call per (size, seed), then the family's writer.
The same seed and sizes give the same world for every format, so ``--format ml-100k`` and
``--format imdb`` with one seed describe the same movies (the IMDb files then link to the MovieLens
titles by normalised title and year, as they do for the real ML-100K).
"""

from __future__ import annotations

import math
from pathlib import Path

from tfrs_movies.data.movielens import ML_CSV_GENRES
from tfrs_movies.data.synthetic import ML_GENRES, generate_world


def default_sizes(n_ratings: int, users: int | None = None, movies: int | None = None) -> tuple[int, int]:
    """Users about ratings/100 (ML-100K has 106 ratings per user), movies about 5.3 * sqrt(ratings)
    (1,682 at 100K; 17,000 at 10M), never fewer than a user's 20-rating minimum allows."""
    n_users = users if users is not None else max(30, n_ratings // 100)
    n_movies = movies if movies is not None else max(60, min(int(5.3 * math.sqrt(n_ratings)), 20_000))
    return n_users, n_movies


def write_synthetic(
    fmt: str,
    out: str | Path,
    n_ratings: int,
    seed: int = 0,
    users: int | None = None,
    movies: int | None = None,
) -> dict:
    """Generate a world and write it in format ``fmt``; returns the counts written."""
    n_users, n_movies = default_sizes(n_ratings, users, movies)
    half_stars = fmt in ("ml-25m", "ml-latest-small")
    genres = ML_CSV_GENRES if half_stars else ML_GENRES
    world = generate_world(n_users, n_movies, n_ratings, seed, genres=genres, half_stars=half_stars, name=fmt)
    dataset = world.dataset
    out = Path(out)
    if fmt == "ml-100k":
        from tfrs_movies.data.movielens import write_ml100k

        write_ml100k(dataset, out)
    elif fmt == "ml-1m":
        from tfrs_movies.data.movielens import write_ml1m

        write_ml1m(dataset, out)
    elif fmt in ("ml-25m", "ml-latest-small"):
        from tfrs_movies.data.movielens import write_ml_csv

        write_ml_csv(dataset, out, name=fmt)
    elif fmt == "netflix":
        from tfrs_movies.data.netflix import write_netflix

        write_netflix(dataset, out, seed=seed)
    elif fmt == "imdb":
        from tfrs_movies.data.imdb import write_imdb

        write_imdb(dataset, out)
    else:
        raise ValueError(f"unknown synthetic format {fmt!r}")
    return {"ratings": len(dataset.ratings), "users": n_users, "movies": n_movies, "seed": seed}
