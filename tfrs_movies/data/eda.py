"""Exploratory plots of a canonical :class:`~tfrs_movies.schema.Dataset`, written as PNG files.

:func:`write_eda_plots` (what ``python -m tfrs_movies.eda --dataset ml-100k --out runs/eda`` runs) writes:

- ``genres.png``: ratings, movies and ratings per movie by genre (three aligned panels, one genre axis);
- ``user_genres.png``: how many distinct genres each user rated (histogram);
- ``occupation_genre.png``: each occupation's genre shares (heatmap, rows sum to 100 %, with a row for
  every rating together; cells annotated when they fit);
- ``ratings.png``: the rating distribution over the dataset's rating scale (half stars included).

A plot whose inputs the dataset lacks (no genres, no occupations) is skipped with a logged note. The counts
are computed with sparse matrices, so ML-25M's 25 million ratings are fine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.ticker import MaxNLocator

from tfrs_movies import schema as S
from tfrs_movies.io import atomic_file

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs") / "eda"
GENRES_PNG = "genres.png"
USER_GENRES_PNG = "user_genres.png"
OCCUPATION_GENRE_PNG = "occupation_genre.png"
RATINGS_PNG = "ratings.png"
_ANNOTATE_MAX_CELLS = 600
ALL_OCCUPATIONS = "all occupations"  # the last row of the occupation x genre shares
_DPI = 120


def genre_vocabulary(dataset: S.Dataset) -> tuple[str, ...]:
    """The dataset's genres: its declared vocabulary, else the genres seen in ``movies``, first-seen order."""
    if dataset.genres:
        return tuple(dataset.genres)
    if S.GENRES not in dataset.movies.columns:
        return ()
    seen: dict[str, None] = {}
    for genres in dataset.movies[S.GENRES]:
        for genre in genres if isinstance(genres, tuple | list) else ():
            seen.setdefault(genre, None)
    return tuple(seen)


def _movie_genre_matrix(dataset: S.Dataset, genres: Sequence[str]) -> tuple[pd.Index, sp.csr_matrix]:
    """(movie ids, n_movies x n_genres 0/1 matrix). Genres outside ``genres`` are ignored."""
    movies = dataset.movies
    movie_ids = pd.Index(movies[S.MOVIE_ID].to_numpy())
    column = {g: j for j, g in enumerate(genres)}
    rows, cols = [], []
    for i, movie_genres in enumerate(movies[S.GENRES]):
        for genre in set(movie_genres) if isinstance(movie_genres, tuple | list) else ():
            if genre in column:
                rows.append(i)
                cols.append(column[genre])
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(movie_ids), len(genres)))
    return movie_ids, matrix


def _rating_movie_rows(dataset: S.Dataset, movie_ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(mask of ratings whose movie is in ``movies``, row of that movie in ``movies``)."""
    rows = movie_ids.get_indexer(dataset.ratings[S.MOVIE_ID].to_numpy())
    keep = rows >= 0
    return keep, rows[keep]


def genre_counts(dataset: S.Dataset) -> pd.DataFrame:
    """Per genre: ``ratings`` (ratings of movies with that genre) and ``movies`` (movies with it)."""
    genres = genre_vocabulary(dataset)
    movie_ids, mg = _movie_genre_matrix(dataset, genres)
    keep, rows = _rating_movie_rows(dataset, movie_ids)
    per_movie = np.bincount(rows, minlength=len(movie_ids)).astype(np.float64)
    return pd.DataFrame(
        {
            "ratings": np.asarray(mg.T @ per_movie).ravel().astype(np.int64),
            "movies": np.asarray(mg.sum(axis=0)).ravel().astype(np.int64),
        },
        index=pd.Index(genres, name=S.GENRES),
    )


def user_genre_counts(dataset: S.Dataset) -> pd.Series:
    """Number of distinct genres among the movies each user rated, indexed by user id."""
    genres = genre_vocabulary(dataset)
    movie_ids, mg = _movie_genre_matrix(dataset, genres)
    keep, rows = _rating_movie_rows(dataset, movie_ids)
    users, user_rows = np.unique(dataset.ratings[S.USER_ID].to_numpy(), return_inverse=True)
    user_rows = user_rows[keep]
    um = sp.csr_matrix(
        (np.ones(len(rows)), (user_rows, rows)), shape=(len(users), len(movie_ids))
    )  # duplicates are summed; only non-zero matters
    ug = (um @ mg).tocsr()
    ug.eliminate_zeros()
    return pd.Series(np.diff(ug.indptr), index=pd.Index(users, name=S.USER_ID), name="genres")


def _occupation_of_user(dataset: S.Dataset) -> pd.Series:
    """Each user's occupation (string, stripped), indexed by user id (first row per user); users without
    one (missing or blank) are left out. The dataset's users must have an occupation column."""
    users = dataset.users.drop_duplicates(S.USER_ID)
    occupation = users.set_index(S.USER_ID)[S.OCCUPATION].astype("string").str.strip()
    return occupation[occupation.notna() & (occupation != "")]


def occupation_genre_counts(dataset: S.Dataset) -> pd.DataFrame:
    """Ratings per occupation (rows, sorted) x genre (columns); empty when users have no occupation."""
    users = dataset.users
    genres = genre_vocabulary(dataset)
    if len(users) == 0 or S.OCCUPATION not in users.columns or not genres:
        return pd.DataFrame()
    occupation = _occupation_of_user(dataset)
    if occupation.empty:
        return pd.DataFrame()
    movie_ids, mg = _movie_genre_matrix(dataset, genres)
    keep, rows = _rating_movie_rows(dataset, movie_ids)
    occ_of_rating = dataset.ratings[S.USER_ID].map(occupation).to_numpy()[keep]
    known = pd.notna(occ_of_rating)
    names, occ_rows = np.unique(occ_of_rating[known].astype(str), return_inverse=True)
    om = sp.csr_matrix(
        (np.ones(int(known.sum())), (occ_rows, rows[known])), shape=(len(names), len(movie_ids))
    )
    counts = np.asarray((om @ mg).todense()).astype(np.int64)
    return pd.DataFrame(counts, index=pd.Index(names, name=S.OCCUPATION), columns=list(genres))


def _rating_values(dataset: S.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(allowed rating values on the scale, count of each). Step 0.5 when the scale or data use half stars."""
    ratings = dataset.ratings[S.RATING].to_numpy(dtype=np.float64)
    low, high = (float(x) for x in dataset.rating_scale)
    half = low % 1 != 0 or high % 1 != 0 or bool(np.any(ratings % 1 != 0))
    step = 0.5 if half else 1.0
    low = min(low, float(ratings.min())) if len(ratings) else low
    high = max(high, float(ratings.max())) if len(ratings) else high
    values = np.arange(low, high + step / 2, step)
    index = np.round((ratings - low) / step).astype(np.int64)
    counts = np.bincount(index, minlength=len(values))[: len(values)]
    return values, counts


def _title(dataset: S.Dataset, text: str) -> str:
    return f"{dataset.name}: {text}"


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_genres(dataset: S.Dataset, path: str | Path) -> Path | None:
    """Three aligned panels over the same genres (one y axis, most rated genre at the top): ratings per
    genre, movies per genre, and ratings per movie (the ratio of the two: how much attention a genre's
    movies get each). Each bar is labelled with its value."""
    if not genre_vocabulary(dataset):
        log.info("%s: skipped, the dataset has no genres", GENRES_PNG)
        return None
    counts = genre_counts(dataset).sort_values("ratings", ascending=False)
    per_movie = (counts["ratings"] / counts["movies"].where(counts["movies"] > 0)).fillna(0.0)
    panels = (
        ("ratings", counts["ratings"].to_numpy(), "tab:blue", _compact),
        ("movies", counts["movies"].to_numpy(), "tab:orange", _compact),
        ("ratings per movie", per_movie.to_numpy(), "tab:green", lambda v: f"{v:,.0f}"),
    )
    y = np.arange(len(counts))
    fig, axes = plt.subplots(1, 3, sharey=True, figsize=(12, max(4.0, 0.3 * len(counts) + 1.5)))
    for ax, (name, values, colour, label) in zip(axes, panels, strict=True):
        ax.barh(y, values, color=colour, height=0.75)
        top = float(values.max()) if len(values) and values.max() > 0 else 1.0
        for row, value in enumerate(values):
            ax.text(value + top * 0.02, row, label(int(round(value))), va="center", fontsize=7)
        ax.set_xlim(0, top * 1.2)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    axes[0].set_yticks(y, counts.index)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("genre")
    fig.suptitle(_title(dataset, "ratings, movies and ratings per movie, by genre (a movie counts in each "
                                 "of its genres)"))  # fmt: skip
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_user_genres(dataset: S.Dataset, path: str | Path) -> Path | None:
    """Histogram of the number of distinct genres each user rated."""
    genres = genre_vocabulary(dataset)
    if not genres or len(dataset.ratings) == 0:
        log.info("%s: skipped, the dataset has no genres or no ratings", USER_GENRES_PNG)
        return None
    per_user = user_genre_counts(dataset)
    bins = np.arange(-0.5, len(genres) + 1.5, 1.0)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(per_user.to_numpy(), bins=bins, color="tab:blue", edgecolor="white")
    ax.set_xlabel(f"distinct genres rated (of {len(genres)})")
    ax.set_ylabel("users")
    ax.set_title(_title(dataset, f"genres per user ({len(per_user):,} users, median {per_user.median():g})"))
    ax.set_xlim(-0.5, len(genres) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


def _compact(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def occupation_genre_shares(dataset: S.Dataset) -> pd.DataFrame:
    """Each occupation's genre mix: :func:`occupation_genre_counts` divided by its row sum, so each row
    sums to 1 (a rating of a movie with several genres counts once in each). Occupations with the most
    ratings first, then a last row ``"all occupations"`` (every rating) to compare with; columns ordered
    by that last row, largest share first. Empty when users have no occupation."""
    counts = occupation_genre_counts(dataset)
    if counts.empty:
        return counts
    return _genre_shares(counts, occupation_rating_counts(dataset))


def _genre_shares(counts: pd.DataFrame, ratings: pd.Series) -> pd.DataFrame:
    """:func:`occupation_genre_shares` from a non-empty :func:`occupation_genre_counts` and the same
    dataset's :func:`occupation_rating_counts` (left unchanged)."""
    counts = counts.loc[counts.sum(axis=1) > 0]
    ratings = ratings.reindex(counts.index).fillna(0)
    counts = counts.loc[ratings.sort_values(ascending=False, kind="stable").index]
    counts.loc[ALL_OCCUPATIONS] = counts.sum(axis=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    return shares[shares.loc[ALL_OCCUPATIONS].sort_values(ascending=False, kind="stable").index]


def occupation_rating_counts(dataset: S.Dataset) -> pd.Series:
    """Ratings given by the users of each occupation (each rating once), indexed by occupation."""
    per_rating = dataset.ratings[S.USER_ID].map(_occupation_of_user(dataset))
    return per_rating[per_rating.notna()].value_counts()


def plot_occupation_genre(dataset: S.Dataset, path: str | Path) -> Path | None:
    """Heatmap of :func:`occupation_genre_shares` (each row sums to 100 %: an occupation's taste, not its
    size), the occupation's number of ratings beside its name, annotated with percentages when the grid
    is small; the last row is every rating together."""
    counts = occupation_genre_counts(dataset)
    if counts.empty:  # exactly when occupation_genre_shares is empty
        log.info("%s: skipped, the dataset has no user occupations or no genres", OCCUPATION_GENRE_PNG)
        return None
    ratings = occupation_rating_counts(dataset)  # once: for the rows' order and for their labels
    shares = _genre_shares(counts, ratings)
    ratings[ALL_OCCUPATIONS] = int(ratings.sum())
    n_occ, n_gen = shares.shape
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * n_gen + 4), max(4, 0.4 * n_occ + 2.5)))
    values = 100 * shares.to_numpy()
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="% of the row (each row sums to 100 %)")
    ax.set_xticks(np.arange(n_gen), shares.columns, rotation=45, ha="right")
    labels = [f"{name} ({_compact(int(ratings.get(name, 0)))})" for name in shares.index]
    ax.set_yticks(np.arange(n_occ), labels)
    ax.axhline(n_occ - 1.5, color="white", linewidth=2)  # the "all occupations" row apart
    ax.set_xlabel("genre")
    ax.set_ylabel("occupation (ratings)")
    ax.set_title(_title(dataset, "genre shares within each occupation (rows sum to 100 %; a movie with "
                                 "several genres counts in each)"), fontsize=10)  # fmt: skip
    if values.size <= _ANNOTATE_MAX_CELLS:
        threshold = values.max() / 2
        for i in range(n_occ):
            for j in range(n_gen):
                ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if values[i, j] > threshold else "white")  # fmt: skip
    return _save(fig, Path(path))


def plot_ratings(dataset: S.Dataset, path: str | Path) -> Path | None:
    """Bar histogram of the ratings over every value of the rating scale (empty values shown as 0)."""
    if len(dataset.ratings) == 0:
        log.info("%s: skipped, the dataset has no ratings", RATINGS_PNG)
        return None
    values, counts = _rating_values(dataset)
    step = values[1] - values[0] if len(values) > 1 else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.bar(values, counts, width=0.8 * step, color="tab:blue")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xlabel("rating")
    ax.set_ylabel("ratings")
    mean = float(dataset.ratings[S.RATING].mean())
    ax.set_title(_title(dataset, f"rating distribution ({int(counts.sum()):,} ratings, mean {mean:.2f})"))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


PLOTS = (
    (GENRES_PNG, plot_genres),
    (USER_GENRES_PNG, plot_user_genres),
    (OCCUPATION_GENRE_PNG, plot_occupation_genre),
    (RATINGS_PNG, plot_ratings),
)


def write_eda_plots(dataset: S.Dataset, out_dir: str | Path) -> list[Path]:
    """Write every plot the dataset supports into ``out_dir`` and return the files written.

    A plot that cannot be drawn (missing feature, or an unexpected error in one plot) is skipped with a
    logged note; the others are still written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, plot in PLOTS:
        try:
            path = plot(dataset, out_dir / filename)
        except Exception:  # one broken plot must not cost the others
            log.exception("%s: skipped after an error", filename)
            plt.close("all")
            continue
        if path is not None:
            written.append(path)
    return written
