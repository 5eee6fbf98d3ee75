"""``python -m tfrs_movies.eda --dataset NAME [--data-dir DIR] [--out runs/eda]``: exploratory plots.

Loads the dataset and writes the PNG files of :func:`tfrs_movies.data.eda.write_eda_plots` (genres, user
genres, occupation x genre, ratings), printing their paths.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.data.eda import DEFAULT_OUT, write_eda_plots
from tfrs_movies.data.registry import DATASET_NAMES


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the paths written; an error is one line (exit 1: the data; 2: a setting)."""
    parser = command_parser("eda", __doc__)
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name, e.g. ml-100k")
    parser.add_argument(
        "--data-dir", default=None, help="folder holding the dataset (loader default if unset)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return guarded(lambda: _eda(args), args.debug)


def _eda(args: argparse.Namespace) -> int:
    import tfrs_movies.data

    dataset = tfrs_movies.data.load_dataset(args.dataset, args.data_dir)
    written: list[Path] = write_eda_plots(dataset, args.out)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
