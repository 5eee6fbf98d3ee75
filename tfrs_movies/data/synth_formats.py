"""Generated datasets written in the exact layouts of the real ones (``python -m tfrs_movies.data synth``).

One :func:`~tfrs_movies.data.synthetic.generate_world` call per (size, seed), then the format's writer
(the ``synth`` field of the dataset's entry in :mod:`tfrs_movies.data.registry`).
The same seed and sizes give the same world for every format, so ``--format ml-100k`` and
``--format imdb`` with one seed describe the same movies (the IMDb files then link to the MovieLens
titles by normalised title and year, as they do for the real ML-100K).
"""

from __future__ import annotations

import math
from pathlib import Path

from tfrs_movies.data.movielens import ML_CSV_GENRES
from tfrs_movies.data.registry import DATASETS, SynthFormat
from tfrs_movies.data.synthetic import ML_GENRES, generate_world, stream_world
from tfrs_movies.io import atomic_fill, remove_stale_temporaries


def default_sizes(n_ratings: int, users: int | None = None, movies: int | None = None) -> tuple[int, int]:
    """Users about ratings/100 (ML-100K has 106 ratings per user), movies about 5.3 * sqrt(ratings)
    (1,682 at 100K; 17,000 at 10M), never fewer than a user's 20-rating minimum allows."""
    n_users = users if users is not None else max(30, n_ratings // 100)
    n_movies = movies if movies is not None else max(60, min(int(5.3 * math.sqrt(n_ratings)), 20_000))
    return n_users, n_movies


def _imdb_format() -> SynthFormat:
    """IMDb is not a ratings dataset (it enriches one), so it is a format here but not a table entry."""

    def write(dataset, out: Path, seed: int) -> None:
        from tfrs_movies.data.imdb import write_imdb

        write_imdb(dataset, out)

    return SynthFormat(write)


# Every format ``synth`` writes: the datasets of the table that have a writer, then IMDb.
SYNTH_FORMATS: dict[str, SynthFormat] = {
    **{name: spec.synth for name, spec in DATASETS.items() if spec.synth is not None},
    "imdb": _imdb_format(),
}
_GENRES = {"ml-100k": ML_GENRES, "ml-csv": ML_CSV_GENRES}


def write_synthetic(
    fmt: str,
    out: str | Path,
    n_ratings: int,
    seed: int = 0,
    users: int | None = None,
    movies: int | None = None,
) -> dict:
    """Generate a world and write it in format ``fmt`` (a key of :data:`SYNTH_FORMATS`); returns the
    counts written. ``netflix`` streams a :func:`~tfrs_movies.data.synthetic.stream_world` (exactly
    ``n_ratings`` ratings, bounded memory); the other formats hold one :func:`generate_world`.

    The files are written into a temporary folder beside ``out`` and moved into place only once all are
    written (:func:`tfrs_movies.io.atomic_fill`): a killed ``synth`` leaves the old files or none, and
    its temporary folder is removed by the next ``synth`` into the same place."""
    if fmt not in SYNTH_FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; known: {', '.join(SYNTH_FORMATS)}")
    form = SYNTH_FORMATS[fmt]
    n_users, n_movies = default_sizes(n_ratings, users, movies)
    out = Path(out)
    remove_stale_temporaries(out.parent)
    with atomic_fill(out) as tmp:
        return _write(fmt, form, tmp, n_ratings, seed, n_users, n_movies)


def _write(fmt: str, form: SynthFormat, out: Path, n_ratings: int, seed: int, n_users: int,
           n_movies: int) -> dict:  # fmt: skip
    if fmt == "netflix":
        # Streamed: memory is one chunk of users plus one bucket of movies (100M ratings fit), and the
        # files hold exactly n_ratings ratings.
        from tfrs_movies.data.netflix import write_netflix_stream

        world = stream_world(n_users, n_movies, n_ratings, seed)
        return write_netflix_stream(world, Path(out), seed=seed)
    world = generate_world(
        n_users, n_movies, n_ratings, seed, genres=_GENRES[form.genres], half_stars=form.half_stars, name=fmt
    )
    form.writer(world.dataset, Path(out), seed)
    return {"ratings": len(world.dataset.ratings), "users": n_users, "movies": n_movies, "seed": seed}
