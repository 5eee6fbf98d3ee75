"""Full-ranking evaluation at MovieLens 25M size (162,541 users x 59,047 movies), timed, memory bounded.

    /usr/bin/time -v nice -n 10 python benchmarks/eval_scale.py [--max-users N] [--ease]

Generates an ML-25M-shaped problem: 162,541 users with a long-tailed number of ratings each (at least
20, as MovieLens keeps), 59,047 movies drawn by a Zipf-like popularity, 25,000,000 distinct train
(user, movie) pairs and 2,500,000 distinct test pairs (none of them in train). The model is a cheap dot
product through the model contract (``Recommender.fit`` builds the catalogue, the 25M-entry seen table
and popularity; ``score`` = seeded random 64-d user factors @ 64-d movie factors), so the time measured
is the evaluator's (seen movies masked, top 20, sparse hits, every metric at 10 and 20, coverage) plus
one (users x 64) @ (64 x 59,047) product per batch. ``--max-users N`` ranks a seeded sample of N test
users (``eval.max_users``) instead of all; ``--ease`` also fits EASE on the same data to show it refuses
in one line, before allocating its matrices, where they would not fit (on a machine with the ~42 GB
it needs, it would fit it, for hours); ``--ease-movies N`` fits the
documented approximation (EASE on the N most-rated movies) and ranks the same users with it.

Prints one JSON line: the sizes, seconds per stage, the figures and the process's peak RSS (GB; the
same number ``/usr/bin/time -v`` reports as Maximum resident set size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

import tfrs_movies  # noqa: F401
from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.state import State

USERS, MOVIES, TRAIN, TEST = 162_541, 59_047, 25_000_000, 2_500_000


def generate(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) frames of exactly TRAIN and TEST distinct (user, movie) pairs, disjoint."""
    rng = np.random.default_rng(seed)
    total = TRAIN + TEST
    weight = rng.lognormal(0.0, 1.2, USERS)
    counts = 20 + np.floor(weight / weight.sum() * (total - 20 * USERS)).astype(np.int64)
    counts[: total - counts.sum()] += 1  # exactly `total` before duplicates are dropped
    popularity = 1.0 / np.arange(1, MOVIES + 1) ** 0.9
    cumulative = np.cumsum(popularity / popularity.sum())
    users = np.repeat(np.arange(USERS, dtype=np.int64), counts)
    movies = np.minimum(np.searchsorted(cumulative, rng.random(len(users))), MOVIES - 1)
    keys = np.unique(users * MOVIES + movies)
    while len(keys) < total:  # the pairs lost as duplicates again, movies now uniform (few collide)
        draw = int((total - len(keys)) * 1.2) + 1000
        extra = rng.choice(users, draw) * MOVIES + rng.integers(0, MOVIES, draw)
        keys = np.unique(np.concatenate([keys, extra]))
    keys = keys[np.sort(rng.choice(len(keys), total, replace=False))] if len(keys) > total else keys
    is_test = np.zeros(total, dtype=bool)
    is_test[rng.choice(total, TEST, replace=False)] = True
    user, movie = np.divmod(keys, MOVIES)

    def frame(mask: np.ndarray, t: int) -> pd.DataFrame:
        n = int(mask.sum())
        return pd.DataFrame({
            S.USER_ID: user[mask] + 1, S.MOVIE_ID: movie[mask] + 1,
            S.RATING: rng.integers(1, 11, n).astype(np.float32) / 2, S.TIMESTAMP: np.full(n, t, np.int64),
        }).astype(S.RATINGS_DTYPES)  # fmt: skip

    return frame(~is_test, 0), frame(is_test, 1)


class RandomFactors(Recommender):
    """A dot product of seeded random 64-d factors: a stand-in with a real model's scoring cost."""

    name = "random_factors"
    uses_validation = False

    def _fit(self, train: pd.DataFrame, dataset: S.Dataset, valid: Any, **kwargs: Any) -> None:
        rng = np.random.default_rng(self.config.get("seed", 0))
        self.user_factors = rng.standard_normal((len(self.users), 64), dtype=np.float32)
        # Movie vectors leaning towards the popular ones, so the figures are not all zero.
        self.movie_factors = rng.standard_normal((len(self.catalogue), 64), dtype=np.float32)
        self.movie_factors[:, 0] += 20 * np.sqrt(self.popularity / self.popularity.max())
        self.user_factors[:, 0] = np.abs(self.user_factors[:, 0]) + 1

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_factors[user_index] @ self.movie_factors.T

    def _state(self) -> State:
        return State.of({"user_factors": self.user_factors, "movie_factors": self.movie_factors})

    def _restore(self, state: State) -> None:
        self.user_factors, self.movie_factors = state["user_factors"], state["movie_factors"]

    def serving_parts(self):  # not exported here
        raise NotImplementedError


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-users", type=int, default=0, help="0: every test user (eval.max_users)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--block-mb", type=int, default=256, help="the evaluator's score block bound")
    parser.add_argument("--ease", action="store_true", help="also show EASE's refusal at this size")
    parser.add_argument("--ease-movies", type=int, default=0, help="also fit EASE on the N most-rated")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0]}

    start = time.perf_counter()
    train, test = generate()
    movies = pd.DataFrame({S.MOVIE_ID: np.arange(1, MOVIES + 1, dtype=np.int64)})
    dataset = S.Dataset(name="synthetic", ratings=train, movies=movies, rating_scale=(0.5, 5.0))
    out["generate_s"] = round(time.perf_counter() - start, 1)
    out.update(users=int(train[S.USER_ID].nunique()), movies=MOVIES, train=len(train), test=len(test))
    out["peak_gb_after_data"] = round(peak_gb(), 2)

    start = time.perf_counter()
    model = RandomFactors(load_config(None, {"seed": 0})).fit(train, dataset)
    out["fit_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    evaluator = FullRankingEvaluator(train, test, model.catalogue, ks=[10, 20], max_users=args.max_users,
                                     seed=0)  # fmt: skip
    out["evaluator_setup_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    block = args.block_mb * 2**20
    figures = evaluator.evaluate(model.score, batch_size=args.batch_size, block_bytes=block)
    seconds = time.perf_counter() - start
    out["evaluate_s"] = round(seconds, 1)
    out["users_ranked"] = figures["users"]
    out["users_per_s"] = round(figures["users"] / seconds)
    out["figures"] = {k: round(v, 4) for k, v in figures.items() if k != "users"}
    out["peak_gb_after_eval"] = round(peak_gb(), 2)

    if args.ease:
        from tfrs_movies.models.baselines.memory import TooLargeError
        from tfrs_movies.models.registry import build_model

        start = time.perf_counter()
        try:
            build_model(load_config(None, {"model.name": "ease"})).fit(train, dataset)
            out["ease"] = "fitted"
        except TooLargeError as err:
            out["ease"] = str(err)
        out["ease_refusal_s"] = round(time.perf_counter() - start, 1)
        out["peak_gb_after_ease"] = round(peak_gb(), 2)
    if args.ease_movies:
        from tfrs_movies.models.registry import build_model

        start = time.perf_counter()
        config = load_config(None, {"model.name": "ease", "model.params.max_movies": args.ease_movies})
        ease = build_model(config).fit(train, dataset)
        out["ease_top_fit_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        figures = evaluator.evaluate(ease.score, batch_size=args.batch_size, block_bytes=block)
        out["ease_top_evaluate_s"] = round(time.perf_counter() - start, 1)
        out["ease_top_figures"] = {k: round(v, 4) for k, v in figures.items() if k != "users"}
        out["peak_gb_after_ease_top"] = round(peak_gb(), 2)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
