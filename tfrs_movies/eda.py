"""``python -m tfrs_movies.eda [--dataset NAME] [--data-dir DIR] [--out runs/eda]``: exploratory plots.

Finds the dataset the way ``train`` does (``--dataset`` defaults to the config's ``data.name``,
ml-100k; ``--data-dir``, else ``$TFRS_MOVIES_DATA``, ``data/``, ``../shared/data``, a download, else for
ML-100K a generated sample, with a line on standard error saying which data it used), then writes the
PNG files of :func:`tfrs_movies.data.eda.write_eda_plots` (genres, user genres, occupation x genre
shares, ratings) and prints their paths.
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
    names = ", ".join(DATASET_NAMES)
    parser.add_argument("--dataset", choices=DATASET_NAMES, metavar="NAME",
                        help=f"dataset name (default: ml-100k, as train); one of {names}")  # fmt: skip
    parser.add_argument(
        "--data-dir", default=None, help="folder holding the dataset (default: found as train finds it)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return guarded(lambda: _eda(args), args.debug, args.verbose)


def _eda(args: argparse.Namespace) -> int:
    import tfrs_movies.data
    from tfrs_movies.config import load_config

    overrides = {"data.name": args.dataset, "data.dir": args.data_dir}
    config = load_config(None, {key: value for key, value in overrides.items() if value is not None})
    dataset = tfrs_movies.data.resolve_dataset(config, say=lambda line: print(line, file=sys.stderr))
    written: list[Path] = write_eda_plots(dataset, args.out)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
