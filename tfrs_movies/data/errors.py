"""Errors and bad-line accounting shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ON_BAD_LINES = ("error", "skip")


class DataError(ValueError):
    """The data cannot be used as it is (a named folder without the dataset, an empty ratings file, a file
    where every line is bad, ratings of movies the movie file does not list). The message is one line."""


class DataFormatError(DataError):
    """A line of a data file does not match its format. Names the file, the line and what was expected."""

    def __init__(self, path: str | Path, line_number: int, expected: str, got: str | None = None):
        self.path = str(path)
        self.line_number = line_number
        self.expected = expected
        msg = f"{self.path}:{line_number}: expected {expected}"
        if got is not None:
            shown = got if len(got) <= 80 else got[:77] + "..."
            msg += f", got {shown!r}"
        super().__init__(msg)


class MissingDataFileError(FileNotFoundError):
    """A file the format needs is not there."""

    def __init__(self, path: str | Path, fmt: str):
        self.path = str(path)
        super().__init__(f"{fmt} needs {self.path}, which does not exist")


@dataclass
class BadLines:
    """Counts lines skipped under ``on_bad_lines: skip``, per file, with the first few for the report."""

    mode: str = "error"
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in ON_BAD_LINES:
            raise ValueError(f"on_bad_lines must be one of {ON_BAD_LINES}, got {self.mode!r}")

    def bad(self, path: str | Path, line_number: int, expected: str, got: str | None = None) -> None:
        """Raise, or count the line, depending on the mode."""
        if self.mode == "error":
            raise DataFormatError(path, line_number, expected, got)
        key = str(path)
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(str(DataFormatError(path, line_number, expected, got)))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> dict:
        return {"skipped_lines": self.total, "skipped_by_file": dict(self.counts)} if self.total else {}
