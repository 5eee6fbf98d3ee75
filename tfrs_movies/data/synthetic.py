"""A synthetic movie world with planted structure, in the canonical schema.

The format writers in :mod:`tfrs_movies.data.synth_formats` turn one world into the files of any supported
format, so loaders, splits and models can be tested without the real (non-redistributable) datasets.

What is planted, so that a model can learn it and tests can check that it did:
- latent tastes: every user and movie has a ``dim``-dimensional factor; ratings and choices follow u.v;
- genre effects: a movie's factor is mostly the mean of its genres' factors, and genres shift ratings;
- user features that matter: age, gender and occupation each add a learned-looking offset to the user
  factor, so demographics predict taste;
- popularity skew: movies have Zipf-like popularity that drives what gets watched;
- a time order: each user watches movies roughly in release order across their active window, so the
  next movie is predictable from the previous ones (the sequence model's signal).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.data.movielens import ML100K_GENRES, ML100K_OCCUPATIONS

# The MovieLens 100K vocabularies: generated users and movies look like the real ones.
ML_GENRES = ML100K_GENRES
OCCUPATIONS = ML100K_OCCUPATIONS
_ADJECTIVES = (
    "Silent", "Golden", "Last", "Broken", "Hidden", "Wild", "Dark", "Bright", "Lost", "Secret", "Crimson",
    "Frozen", "Electric", "Midnight", "Little", "Great", "Strange", "Distant", "Quiet", "Burning",
)  # fmt: skip
_NOUNS = (
    "River", "Empire", "Garden", "Stranger", "Horizon", "Promise", "Machine", "Island", "Kingdom", "Letter",
    "Shadow", "Voyage", "Mirror", "Summer", "Station", "Orchard", "Witness", "Harbor", "Circus", "Engine",
)  # fmt: skip
_FIRST = ("Ana", "Boris", "Chloé", "Dev", "Emil", "Fatima", "Greta", "Hiro", "Inès", "Jonas", "Kofi", "Lena")
_LAST = ("Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Søndergaard", "Tanaka", "Urquhart")
_TAG_WORDS = (
    "atmospheric",
    "twist ending",
    "dark comedy",
    "based on a book",
    "visually appealing",
    "slow, but worth it",
    "quirky",
    "classic",
    "Oscar (Best Picture)",
    "sci-fi",
    "romance",
    "funny",
)


@dataclass
class World:
    """A generated dataset plus its hidden truth (for tests that check a model found the structure)."""

    dataset: S.Dataset
    user_factors: np.ndarray  # (n_users, dim), row i is user id i+1
    movie_factors: np.ndarray  # (n_movies, dim), row j is movie id j+1
    genre_factors: np.ndarray  # (n_genres, dim)


def _titles(rng: np.random.Generator, years: np.ndarray) -> list[str]:
    """Unique titles in MovieLens style, with the odd cases real files have."""
    titles, seen = [], set()
    for j, year in enumerate(years):
        base = f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[rng.integers(len(_NOUNS))]}"
        kind = j % 11
        if kind == 3:
            base = f"{base}, The"  # MovieLens moves leading articles to the end
        elif kind == 5:
            base = f"{base}: Part {j % 4 + 2}"
        elif kind == 7:
            base = f"Misérables {base}"  # non-ASCII, latin-1 encodable
        elif kind == 9:
            base = f'{base}, {_NOUNS[j % len(_NOUNS)]} and "{_ADJECTIVES[j % len(_ADJECTIVES)]}"'
        name = base
        k = 2
        while (name, year) in seen:
            name = f"{base} {k}"
            k += 1
        seen.add((name, year))
        titles.append(f"{name} ({int(year)})")
    return titles


def _movie_traits(
    rng: np.random.Generator, genre_factors: np.ndarray, genre_bias: np.ndarray,
    movie_genres: list[tuple[int, ...]], dim: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Movies' taste factors (pulled towards their genres'), years, Zipf popularity, its log, and biases
    (popularity and genre effects); the draws every world makes after choosing the movies' genres."""
    n_movies = len(movie_genres)
    genre_mean = np.stack([genre_factors[list(g)].mean(0) for g in movie_genres])
    movie_factors = 0.8 * genre_mean + 0.5 * rng.normal(0, 1, (n_movies, dim))
    years = np.clip(np.round(rng.normal(1990, 12, n_movies)), 1925, 2019).astype(int)
    popularity = rng.zipf(1.6, n_movies).astype(float)
    log_pop = np.log(np.minimum(popularity, 500.0))
    movie_bias = 0.3 * log_pop / log_pop.max() + rng.normal(0, 0.3, n_movies)
    movie_bias += np.array([genre_bias[list(g)].mean() for g in movie_genres])
    return movie_factors, years, popularity, log_pop, movie_bias


def _user_traits(
    rng: np.random.Generator, n_users: int, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users' ages, genders, occupations, taste factors (shifted by the demographics, so features carry
    signal for cold start) and biases."""
    ages = np.clip(np.round(rng.normal(32, 11, n_users)), 7, 73).astype(int)
    genders = rng.choice(["M", "F"], n_users, p=[0.7, 0.3])
    occ_idx = rng.integers(0, len(OCCUPATIONS), n_users)
    occ_factors = rng.normal(0, 0.6, (len(OCCUPATIONS), dim))
    gender_factors = rng.normal(0, 0.6, (2, dim))
    age_direction = rng.normal(0, 0.6, dim)
    user_factors = (
        occ_factors[occ_idx]
        + gender_factors[(genders == "F").astype(int)]
        + ((ages - 32) / 11)[:, None] * age_direction
        + 0.7 * rng.normal(0, 1, (n_users, dim))
    ) / np.sqrt(dim)
    user_bias = rng.normal(0, 0.35, n_users)
    return ages, genders, occ_idx, user_factors, user_bias


def _users_frame(ages: np.ndarray, genders: np.ndarray, occ_idx: np.ndarray, zips: list[str]) -> pd.DataFrame:
    """The users table of a world whose users are ids 1..n."""
    return pd.DataFrame(
        {
            S.USER_ID: np.arange(1, len(ages) + 1, dtype=np.int64),
            S.AGE: ages.astype(np.float32),
            S.GENDER: genders.astype(object),
            S.OCCUPATION: np.array(OCCUPATIONS, dtype=object)[occ_idx],
            S.ZIP_CODE: np.array(zips, dtype=object),
        }
    )


def generate_world(
    n_users: int = 300,
    n_movies: int = 400,
    n_ratings: int = 20_000,
    seed: int = 0,
    *,
    genres: tuple[str, ...] = ML_GENRES,
    dim: int = 8,
    min_ratings_per_user: int = 20,
    half_stars: bool = False,
    name: str = "synthetic",
) -> World:
    """Generate a world of about ``n_ratings`` ratings (every user gets at least ``min_ratings_per_user``).

    Deterministic for a given argument set. Users are ids 1..n_users, movies 1..n_movies; a writer may
    remap ids (Netflix customer ids are not contiguous).
    """
    if n_movies < min_ratings_per_user:
        raise ValueError(
            f"n_movies ({n_movies}) must be at least min_ratings_per_user ({min_ratings_per_user})"
        )
    rng = np.random.default_rng(seed)
    n_genres = len(genres)

    # Movies: 1-3 genres each (never the placeholder "unknown" when the vocabulary has real ones), a year.
    genre_factors = rng.normal(0, 1, (n_genres, dim))
    genre_bias = rng.normal(0, 0.25, n_genres)
    first_real = 1 if genres and genres[0] == "unknown" else 0
    movie_genres = []
    for _ in range(n_movies):
        k = rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])
        movie_genres.append(tuple(sorted(rng.choice(np.arange(first_real, n_genres), k, replace=False))))
    movie_factors, years, popularity, log_pop, movie_bias = _movie_traits(
        rng, genre_factors, genre_bias, movie_genres, dim
    )

    # Users: demographics shift the taste factor, so features carry signal for cold start.
    ages, genders, occ_idx, user_factors, user_bias = _user_traits(rng, n_users, dim)

    # How many each user rates: heavy-tailed, at least the minimum, summing to about n_ratings.
    extra = max(n_ratings - n_users * min_ratings_per_user, 0)
    weights = rng.lognormal(0, 1.0, n_users)
    counts = min_ratings_per_user + np.floor(extra * weights / weights.sum()).astype(int)
    counts = np.minimum(counts, n_movies)

    # Choices: Gumbel top-k over log-popularity + taste, chunked over users to bound memory.
    affinity_scale = 1.5
    users_out, movies_out = [], []
    chunk = max(1, 4_000_000 // n_movies)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        logits = log_pop[None, :] + affinity_scale * user_factors[start:stop] @ movie_factors.T
        logits += rng.gumbel(size=logits.shape)
        for row, u in enumerate(range(start, stop)):
            top = np.argpartition(-logits[row], counts[u] - 1)[: counts[u]]
            users_out.append(np.full(counts[u], u, dtype=np.int64))
            movies_out.append(top.astype(np.int64))
    u_idx = np.concatenate(users_out)
    m_idx = np.concatenate(movies_out)

    # Ratings: biases + taste + noise, on the rating scale.
    # Users choose what they expect to like, so the taste term is standardised over the chosen pairs to
    # keep the rating histogram close to MovieLens's (mean about 3.5, mode 4).
    taste = np.einsum("ij,ij->i", user_factors[u_idx], movie_factors[m_idx])
    taste = (taste - taste.mean()) / (taste.std() + 1e-9)
    raw = 3.45 + user_bias[u_idx] + movie_bias[m_idx] - movie_bias.mean() + 0.6 * taste
    raw += rng.normal(0, 0.55, len(raw))
    rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0) if half_stars else np.clip(np.round(raw), 1, 5)

    # Time: each user is active over a window; within it they watch roughly in release order.
    day = 86_400
    t0 = 874_724_710  # about ML-100K's first timestamp (Sept 1997)
    span = 7 * 365 * day
    user_start = t0 + (rng.random(n_users) * 0.8 * span).astype(np.int64)
    user_len = (rng.random(n_users) * 0.2 * span + 30 * day).astype(np.int64)
    order_key = years[m_idx] + rng.normal(0, 3.0, len(m_idx))
    order = np.lexsort((order_key, u_idx))
    u_idx, m_idx, rating = u_idx[order], m_idx[order], rating[order]
    pos = np.arange(len(u_idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    frac = pos / np.maximum(counts[u_idx] - 1, 1)
    timestamp = (
        user_start[u_idx] + (frac * user_len[u_idx]).astype(np.int64) + rng.integers(0, 3600, len(u_idx))
    )

    ratings = S.canonical_ratings(
        pd.DataFrame({S.USER_ID: u_idx + 1, S.MOVIE_ID: m_idx + 1, S.RATING: rating, S.TIMESTAMP: timestamp})
    )

    zips = [f"{rng.integers(0, 100000):05d}" for _ in range(n_users)]
    for i in range(0, n_users, 37):
        zips[i] = f"T{rng.integers(1, 9)}H{rng.integers(1, 9)}N"  # Canadian-style, not numeric
    users = _users_frame(ages, genders, occ_idx, zips)

    titles = _titles(rng, years)
    directors = [(f"{_FIRST[j % len(_FIRST)]} {_LAST[(j // 3) % len(_LAST)]}",) for j in range(n_movies)]
    actors = [
        tuple(f"{_FIRST[(j + k) % len(_FIRST)]} {_LAST[(j * 7 + k) % len(_LAST)]}" for k in range(3))
        for j in range(n_movies)
    ]
    tags = [tuple(rng.choice(_TAG_WORDS, rng.integers(0, 4), replace=False)) for _ in range(n_movies)]
    movies = pd.DataFrame(
        {
            S.MOVIE_ID: np.arange(1, n_movies + 1, dtype=np.int64),
            S.TITLE: titles,
            S.YEAR: years.astype(np.float32),
            S.GENRES: [tuple(genres[g] for g in gs) for gs in movie_genres],
            S.TAGS: tags,
            S.IMDB_ID: [f"tt{1_000_000 + 37 * j:07d}" for j in range(n_movies)],
            S.RUNTIME: np.clip(rng.normal(105, 20, n_movies), 60, 220).round().astype(np.float32),
            S.IMDB_RATING: np.clip(6.3 + movie_bias + rng.normal(0, 0.3, n_movies), 1, 10)
            .round(1)
            .astype(np.float32),
            S.IMDB_VOTES: (popularity * 250).astype(np.float32),
            S.DIRECTORS: directors,
            S.ACTORS: actors,
        }
    )
    dataset = S.Dataset(
        name=name,
        ratings=ratings,
        movies=movies,
        users=users,
        rating_scale=(0.5, 5.0) if half_stars else (1.0, 5.0),
        genres=tuple(genres),
        report={"source": f"generated (seed {seed})"},
    )
    return World(dataset, user_factors, movie_factors, genre_factors)


# ------------------------------------------------------------------------------------ streamed worlds


def exact_counts(
    n_ratings: int, n_users: int, n_movies: int, min_per_user: int, weights: np.ndarray
) -> np.ndarray:
    """Ratings per user summing to exactly ``n_ratings``: ``min_per_user`` each, the rest shared in
    proportion to ``weights`` (largest remainders round up), nobody above ``n_movies`` (the overflow
    goes to users with room, in proportion to their weights)."""
    if n_ratings > n_users * n_movies:
        raise ValueError(f"{n_ratings} ratings do not fit {n_users} users x {n_movies} movies")
    if n_ratings < n_users * min_per_user:
        raise ValueError(f"{n_ratings} ratings cannot give {n_users} users {min_per_user} each")
    counts = np.full(n_users, min_per_user, np.int64)
    left = n_ratings - counts.sum()
    weights = np.asarray(weights, np.float64)
    while left > 0:
        room = n_movies - counts
        w = np.where(room > 0, weights, 0.0)
        share = left * w / w.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        short = left - add.sum()
        if short > 0:  # largest remainders first, among users still with room
            frac = np.where(room - add > 0, share - np.floor(share), -1.0)
            top = np.argsort(-frac, kind="stable")[: min(short, int((room - add > 0).sum()))]
            add[top] += 1
        counts += add
        left = n_ratings - counts.sum()
    return counts


@dataclass
class StreamedWorld:
    """A generated world whose ratings come a chunk of users at a time (:meth:`chunks`), so its memory
    is the movies, the users and one chunk, whatever ``n_ratings``. Exactly ``n_ratings`` ratings, no
    (user, movie) pair twice; user indexes ``0..n_users-1`` and movie indexes ``0..n_movies-1``."""

    movies: pd.DataFrame  # canonical, movie ids 1..n_movies
    users: pd.DataFrame  # canonical, user ids 1..n_users
    counts: np.ndarray  # ratings per user (sums to n_ratings)
    seed: int
    _parts: dict

    @property
    def n_ratings(self) -> int:
        return int(self.counts.sum())

    def chunks(self, chunk_ratings: int = 2_000_000) -> Iterator[tuple[np.ndarray, ...]]:
        """``(user_index, movie_index, rating, timestamp)`` arrays for consecutive users, about
        ``chunk_ratings`` (and at most 16M logits) at a time; the same every call."""
        p = self._parts
        n_users, n_movies = len(self.counts), len(p["log_pop"])
        rng = np.random.default_rng([self.seed, 0x5354])
        day, t0 = 86_400, 874_724_710
        span = 7 * 365 * day
        per_chunk = max(1, min(chunk_ratings // max(1, int(self.counts.mean())), 16_000_000 // n_movies))
        for start in range(0, n_users, per_chunk):
            stop = min(start + per_chunk, n_users)
            counts = self.counts[start:stop]
            logits = p["log_pop"][None, :] + 1.5 * p["user_factors"][start:stop] @ p["movie_factors"].T
            logits += rng.gumbel(size=logits.shape)
            m_idx = np.concatenate(
                [np.argpartition(-logits[r], c - 1)[:c] for r, c in enumerate(counts)]
            ).astype(np.int32)
            del logits
            u_idx = np.repeat(np.arange(start, stop, dtype=np.int32), counts)
            taste = np.einsum("ij,ij->i", p["user_factors"][u_idx], p["movie_factors"][m_idx])
            taste = (taste - p["taste_mean"]) / p["taste_std"]
            raw = 3.45 + p["user_bias"][u_idx] + p["movie_bias"][m_idx] + 0.6 * taste
            raw += rng.normal(0, 0.55, len(raw))
            if p["half_stars"]:
                rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0).astype(np.float32)
            else:
                rating = np.clip(np.round(raw), 1, 5).astype(np.float32)
            # Each user watches roughly in release order across an active window.
            order = np.lexsort((p["years"][m_idx] + rng.normal(0, 3.0, len(m_idx)), u_idx))
            m_idx, rating = m_idx[order], rating[order]
            pos = np.arange(len(u_idx)) - np.repeat(np.cumsum(counts) - counts, counts)
            frac = pos / np.maximum(counts - 1, 1)[u_idx - start]
            u_start = t0 + (rng.random(stop - start) * 0.8 * span).astype(np.int64)
            u_len = (rng.random(stop - start) * 0.2 * span + 30 * day).astype(np.int64)
            timestamp = (
                u_start[u_idx - start] + (frac * u_len[u_idx - start]).astype(np.int64)
                + rng.integers(0, 3600, len(u_idx))
            )  # fmt: skip
            yield u_idx, m_idx, rating, timestamp


def stream_world(
    n_users: int,
    n_movies: int,
    n_ratings: int,
    seed: int = 0,
    *,
    genres: tuple[str, ...] = ML_GENRES,
    dim: int = 8,
    min_ratings_per_user: int = 20,
    half_stars: bool = False,
) -> StreamedWorld:
    """The planted structure of :func:`generate_world` (tastes, genres, demographics, popularity skew,
    release-order watching) for worlds too big to hold: ratings are generated a chunk of users at a time.
    Not the same draws as :func:`generate_world` for a seed (it has its own random streams)."""
    min_per_user = min(min_ratings_per_user, n_movies, n_ratings // max(n_users, 1))
    rng = np.random.default_rng([seed, 0x5357])
    n_genres = len(genres)
    genre_factors = rng.normal(0, 1, (n_genres, dim))
    genre_bias = rng.normal(0, 0.25, n_genres)
    first_real = 1 if genres and genres[0] == "unknown" else 0
    k = rng.choice([1, 2, 3], n_movies, p=[0.5, 0.35, 0.15])
    movie_genres = [tuple(sorted(rng.choice(np.arange(first_real, n_genres), kk, replace=False))) for kk in k]
    movie_factors, years, popularity, log_pop, movie_bias = _movie_traits(
        rng, genre_factors, genre_bias, movie_genres, dim
    )
    movie_bias -= movie_bias.mean()

    ages, genders, occ_idx, user_factors, user_bias = _user_traits(rng, n_users, dim)
    counts = exact_counts(n_ratings, n_users, n_movies, min_per_user, rng.lognormal(0, 1.0, n_users))
    # The taste term is standardised with the statistics of the pairs a pilot sample of users chooses
    # (generate_world uses all chosen pairs), so every chunk uses the same scale.
    pilot = rng.choice(n_users, min(n_users, max(1, 4_000_000 // n_movies)), replace=False)
    logits = (
        log_pop[None, :]
        + 1.5 * user_factors[pilot] @ movie_factors.T
        + rng.gumbel(size=(len(pilot), n_movies))
    )
    sample = np.concatenate(
        [
            movie_factors[np.argpartition(-logits[r], c - 1)[:c]] @ user_factors[u]
            for r, (u, c) in enumerate(zip(pilot, counts[pilot], strict=True))
        ]
    )
    del logits

    zips = [f"{z:05d}" for z in rng.integers(0, 100000, n_users)]
    for i in range(0, n_users, 37):
        zips[i] = f"T{1 + i % 8}H{1 + (i // 37) % 8}N"
    users = _users_frame(ages, genders, occ_idx, zips)
    movies = pd.DataFrame(
        {
            S.MOVIE_ID: np.arange(1, n_movies + 1, dtype=np.int64),
            S.TITLE: _titles(rng, years),
            S.YEAR: years.astype(np.float32),
            S.GENRES: [tuple(genres[g] for g in gs) for gs in movie_genres],
        }
    )
    parts = dict(
        log_pop=log_pop, user_factors=user_factors, movie_factors=movie_factors, years=years,
        user_bias=user_bias, movie_bias=movie_bias, half_stars=half_stars,
        taste_mean=float(sample.mean()), taste_std=float(sample.std() + 1e-9),
    )  # fmt: skip
    return StreamedWorld(movies, users, counts, seed, parts)
