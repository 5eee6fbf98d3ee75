"""Test helpers shared by the "no code from data" tests."""

from __future__ import annotations

from pathlib import Path


class PicklePayload:
    """An object whose unpickling creates ``marker``: if the file exists, loading ran code from data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
