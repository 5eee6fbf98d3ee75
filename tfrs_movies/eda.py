"""``python -m tfrs_movies.eda --dataset NAME [--data-dir DIR] [--out runs/eda]``: exploratory plots.

Loads the dataset and writes the PNG files of :func:`tfrs_movies.data.eda.write_eda_plots` (genres, user
genres, occupation x genre, ratings), printing their paths.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from tfrs_movies.data.eda import DEFAULT_OUT, write_eda_plots


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m tfrs_movies.eda", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. ml-100k")
    parser.add_argument(
        "--data-dir", default=None, help="folder holding the dataset (loader default if unset)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import tfrs_movies.data

    dataset = tfrs_movies.data.load_dataset(args.dataset, args.data_dir)
    written = write_eda_plots(dataset, args.out)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
