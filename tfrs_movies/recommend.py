"""Top-N recommendations from a serving export.

    python -m tfrs_movies.recommend --model runs/<run>/export --user 42 --k 10
    python -m tfrs_movies.recommend --model runs/<run>/export --similar 50 --format json
    python -m tfrs_movies.recommend --model runs/<run>/export --pair 42 77 --aggregation least_misery
    python -m tfrs_movies.recommend --model runs/<run>/export --users-file users.csv --out recs.csv

Seen movies (those the user rated in train) are left out unless ``--include-seen``; an unknown user
gets the most popular movies with one line saying so; errors are one ``error: ...`` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from tfrs_movies.io import atomic_write_text
from tfrs_movies.serving.load import AGGREGATIONS, ServingError, load_export, read_user_ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfrs_movies.recommend", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, help="an export directory (<run_dir>/export)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="recommend for this user id")
    who.add_argument("--similar", metavar="MOVIE_ID", help="movies similar to this movie id")
    who.add_argument("--pair", nargs=2, metavar=("USER_A", "USER_B"), help="two users watching together")
    who.add_argument("--users-file", help="a file of user ids (one per line, or a CSV with a user_id column)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="average", help="for --pair")
    parser.add_argument("--out", help="with --users-file: write the CSV here (default: standard output)")
    parser.add_argument("--k", type=int, default=10, help="how many movies (default 10)")
    parser.add_argument("--index", choices=("scann", "brute_force"), default="scann")
    parser.add_argument("--include-seen", action="store_true", help="keep movies the user rated in train")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    return parser


def render(frame, fmt: str) -> str:
    if fmt == "json":
        rows = [
            {"movie_id": int(r.movie_id), "title": r.title, "year": None if r.year is None or r.year != r.year
             else int(r.year), "score": float(r.score)}
            for r in frame.astype(object).itertuples(index=False)
        ]  # fmt: skip
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    out = frame.copy()
    out["score"] = out["score"].map(lambda s: f"{s:.4f}")
    out["year"] = out["year"].astype(object).where(out["year"].notna(), "")
    out.index = range(1, len(out) + 1)
    return out.to_string()


def _batch(exported, args: argparse.Namespace) -> int:
    table = exported.recommend_many(read_user_ids(args.users_file), args.k, args.index, args.include_seen)
    text = table.to_csv(index=False)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"{table['user_id'].nunique()} users -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        exported = load_export(args.model)
        if args.users_file is not None:
            return _batch(exported, args)
        if args.similar is not None:
            result = exported.similar(args.similar, args.k)
        elif args.pair is not None:
            result = exported.recommend_pair(*args.pair, args.k, args.aggregation, args.index)
        else:
            result = exported.recommend(args.user, args.k, args.index, args.include_seen)
    except ServingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.note:
        print(result.note, file=sys.stderr if args.format != "table" else sys.stdout)
    print(render(result.frame, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
