"""Progress of a long loop on standard error: a tqdm bar on a terminal, plain lines anywhere else.

Off a terminal (a log file, CI, a pipe) a bar's carriage returns would pile up into one unreadable line,
so there :class:`Progress` prints one line per tenth of the total (per ``every`` units when the total is
unknown) and one at the end. Used by downloads (bytes), the full-ranking evaluator (user batches) and
the tuner (trials).

    with Progress("u.data", total_bytes, unit="B") as shown:
        shown.update(n_bytes)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """``total`` units of work labelled ``label``; ``update(n)`` as they are done.

    Args:
        unit: ``"B"`` counts bytes (shown in MB); anything else names what is counted (``"batches"``).
        enabled: False prints nothing at all.
        stream: where it goes (standard error); a bar only when it is a terminal.
        every: units between lines when ``total`` is 0 (unknown).
        delay: seconds before anything is shown, so that a loop that ends sooner stays silent.
        leave: keep the finished bar on screen (False: the bar is cleared when done).
        lines: False prints no lines off a terminal (the caller prints its own, e.g. one per trial).
    """

    def __init__(self, label: str, total: int, *, unit: str = "B", enabled: bool = True,
                 stream: TextIO | None = None, every: float = 10_000_000, delay: float = 0.0,
                 leave: bool = True, lines: bool = True) -> None:  # fmt: skip
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.shown = 0, -1
        self.step = total / 10 if total else every
        self.delay, self.lines = delay, lines
        self.started = time.monotonic()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total or None, desc=label, file=self.stream, delay=delay, leave=leave,
                **({"unit": "B", "unit_scale": True} if unit == "B" else {"unit": f" {unit}"}),
            )  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self._lines() and self.done // self.step > self.shown // self.step:
            self._line()

    def note(self, text: str, say: Callable[[str], None] = print) -> None:
        """A line of the caller's own (e.g. a trial's result): above the bar on a terminal, else ``say``."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            say(text)

    def _lines(self) -> bool:
        return self.enabled and self.lines and time.monotonic() - self.started >= self.delay

    def _amount(self, n: float) -> str:
        return f"{n / 1e6:.1f}" if self.unit == "B" else f"{int(n):,}"

    def _line(self) -> None:
        unit = " MB" if self.unit == "B" else f" {self.unit}"
        if self.total:
            size = f"/{self._amount(self.total)}{unit} ({100 * self.done / self.total:3.0f}%)"
        else:
            size = unit
        print(f"{self.label}: {self._amount(self.done)}{size}", file=self.stream, flush=True)
        self.shown = self.done

    def close(self, completed: bool = True) -> None:
        """Close the bar, or print the last line (``completed``: the loop ended without an error)."""
        if self.bar is not None:
            self.bar.close()
        elif self._lines() and completed and self.shown != self.done:
            self._line()

    def __exit__(self, *exc: object) -> None:
        self.close(completed=exc[0] is None)
