"""The ``tfrs-movies`` command: one entry point, a subcommand per task.

    tfrs-movies train --config configs/ml100k_retrieval.yaml
    tfrs-movies recommend --model runs/<run>/export --user 42
    tfrs-movies --version

Each subcommand hands the rest of the command line to its module's ``main(argv)`` (the same function as
``python -m tfrs_movies.<subcommand>``, which keeps working). The table below names modules as strings:
``tfrs-movies --help`` imports none of them, and a subcommand imports only its own module, whose
``--help`` answers before TensorFlow is loaded.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import tfrs_movies
from tfrs_movies.cli import invoke_as_command

NAME = "tfrs-movies"

# subcommand -> (module whose main(argv) runs it, one line for the command's --help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("tfrs_movies.train", "train, evaluate and save a model as a config says"),
    "recommend": ("tfrs_movies.recommend", "top-N recommendations from a saved export"),
    "serve": ("tfrs_movies.serve", "serve an export over HTTP (JSON, TensorFlow Serving's REST, a page)"),
    "tune": ("tfrs_movies.tune", "grid or Optuna search over config keys, on validation only"),
    "report": ("tfrs_movies.report", "compare runs in one Markdown table and one chart"),
    "data": ("tfrs_movies.data.__main__", "download, generate, describe or split a dataset"),
    "eda": ("tfrs_movies.eda", "exploratory plots of a dataset"),
}


def _parser() -> argparse.ArgumentParser:
    width = max(map(len, SUBCOMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=NAME,
        description="Movie recommendation with TensorFlow Recommenders.",
        epilog=f"subcommands:\n{listing}\n\n{NAME} <subcommand> --help describes one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{NAME} {tfrs_movies.__version__}")
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), metavar="SUBCOMMAND", help="see below")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tfrs-movies SUBCOMMAND [ARGS...]``; the subcommand's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0].startswith("-"):  # --help, --version, or nothing: the command's own parser
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    parser.parse_args([name])  # an unknown subcommand: usage and exit status 2
    invoke_as_command(NAME)
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
