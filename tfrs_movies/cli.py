"""What every command line does with the project's own errors: one ``error:`` line and an exit status.

Exit status 2: the command line or a setting is wrong (a config error, a request the export cannot
answer); 1: the data, a download, a saved run or the training itself is (a missing or damaged file, a
loss that became NaN). ``--debug`` (or ``TFRS_MOVIES_DEBUG=1``) prints the traceback above the line.
Anything else is a bug and keeps its traceback.

The table names classes by module and name, so that classifying an error imports nothing: an error of a
module that was never imported cannot have been raised.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable

USAGE = 2
DATA = 1

# "module.Class" -> exit status; the most specific class of an error's MRO that is listed wins.
EXIT_STATUS: dict[str, int] = {
    "tfrs_movies.config.ConfigError": USAGE,
    "tfrs_movies.serving.load.ServingError": USAGE,
    "tfrs_movies.data.errors.DataError": DATA,
    "tfrs_movies.data.errors.MissingDataFileError": DATA,
    "tfrs_movies.data.DatasetNotFoundError": DATA,
    "tfrs_movies.data.download.DownloadError": DATA,
    "tfrs_movies.training.guards.TrainingDivergedError": DATA,
    "tfrs_movies.evaluation.report.RunReadError": DATA,
    # A fault of the machine rather than of the project (a full disk, a folder without permission).
    "builtins.OSError": DATA,
}


def exit_status(err: BaseException) -> int | None:
    """The exit status of one of the project's own errors; None for anything else (a bug)."""
    for cls in type(err).__mro__:
        status = EXIT_STATUS.get(f"{cls.__module__}.{cls.__qualname__}")
        if status is not None:
            return status
    return None


def one_line(err: BaseException) -> str:
    """The first line of the error's message (its class name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# How the user started the command: "python -m tfrs_movies" (each module's own ``__main__``) or the
# console command, which sets it (:mod:`tfrs_movies.commands`), so usage lines and examples say what to type.
_invoked_as = "python -m tfrs_movies."


def invoke_as_command(name: str) -> None:
    """Let every parser made after this call name itself ``<name> <subcommand>`` (the console command)."""
    global _invoked_as
    _invoked_as = f"{name} "


def plain(text: str) -> str:
    """Docstring text as a person reads it in ``--help``: reStructuredText roles and double backticks
    dropped (``:func:`x.y``` -> x.y), the way the command was started in every example line."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    text = text.replace("``", "")
    return text.replace("python -m tfrs_movies.", _invoked_as)


def command_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``train``, ``data`` ...): its usage line says how it was started
    (``tfrs-movies train`` or ``python -m tfrs_movies.train``); the module docstring's first line, in plain
    words, is the description and the rest (examples, notes) the epilog."""
    first, _, rest = (doc or "").strip().partition("\n")
    description = re.sub(r"^``[^`]*``:\s*", "", first)  # the "``python -m ...``: " prefix
    description = plain(description[:1].upper() + description[1:])
    return argparse.ArgumentParser(
        prog=f"{_invoked_as}{name}", description=description, epilog=plain(rest.strip("\n")) or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """The options every command shares: ``--debug`` and ``--verbose`` (read by :func:`guarded`)."""
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also TFRS_MOVIES_DEBUG=1)")  # fmt: skip
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines and warnings")  # fmt: skip


def debug_wanted(flag: bool = False) -> bool:
    return flag or os.environ.get("TFRS_MOVIES_DEBUG", "").strip() not in ("", "0")


def guarded(body: Callable[[], int], debug: bool = False, verbose: bool = False) -> int:
    """Run a command's body: its own return value, or one ``error:`` line and :func:`exit_status` for a
    project error (the traceback first when :func:`debug_wanted`). TensorFlow's start-up log lines are
    hidden first unless ``verbose`` (:func:`tfrs_movies.logs.configure`)."""
    from tfrs_movies import logs

    logs.configure(verbose)
    try:
        return body()
    except Exception as err:
        status = exit_status(err)
        if status is None:
            raise
        if debug_wanted(debug):
            traceback.print_exc()
        print(f"error: {one_line(err)}", file=sys.stderr)
        return status
