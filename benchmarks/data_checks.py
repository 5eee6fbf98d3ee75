"""What the checks every loaded dataset passes cost (``tfrs_movies.data.checks.check_dataset``): time and
peak memory on N generated ratings at the Netflix id ranges (480,189 users x 17,770 movies), without
duplicates and with a share of repeated (user, movie) pairs.

    python benchmarks/data_checks.py --ratings 10000000 25000000 --duplicates 0 0.01

Each case runs in a fresh process; it prints one line per case: seconds, the ratings dropped, and the
process's peak RSS before and after the check (the frame itself is built first).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

N_USERS, N_MOVIES = 480_189, 17_770


def one(n: int, share: float) -> str:
    from tfrs_movies import schema as S
    from tfrs_movies.data.checks import check_dataset

    rng = np.random.default_rng(0)
    keys = rng.choice(N_USERS * N_MOVIES, size=n, replace=False)
    users, movies = keys // N_MOVIES + 1, keys % N_MOVIES + 1
    repeated = int(n * share)
    if repeated:
        users[-repeated:], movies[-repeated:] = users[:repeated], movies[:repeated]
    frame = pd.DataFrame({
        S.USER_ID: users, S.MOVIE_ID: movies, S.RATING: rng.integers(1, 6, n).astype(np.float32),
        S.TIMESTAMP: rng.integers(0, 10**9, n),
    })  # fmt: skip
    catalogue = pd.DataFrame({
        S.MOVIE_ID: np.arange(1, N_MOVIES + 1), S.TITLE: "", S.YEAR: np.nan, S.GENRES: [()] * N_MOVIES,
    })  # fmt: skip
    dataset = S.Dataset("bench", S.canonical_ratings(frame), catalogue)
    del frame, keys
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    start = time.perf_counter()
    checked = check_dataset(dataset)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    dropped = checked.report.get("duplicate_ratings", 0)
    return (f"{n:>11,} ratings, {share:.0%} repeated pairs: {seconds:.2f} s, dropped {dropped:,}, "
            f"peak RSS {before:.2f} GB before, {after:.2f} GB after")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--duplicates", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one(int(args.one[0]), float(args.one[1])))
        return
    for n in args.ratings:
        for share in args.duplicates:
            subprocess.run([sys.executable, __file__, "--one", str(n), str(share)], check=True)


if __name__ == "__main__":
    main()
