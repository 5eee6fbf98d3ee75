"""Download progress: tqdm's bar on a terminal, one line per tenth of the file anywhere else."""

from __future__ import annotations

import io

from tfrs_movies.data.download import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_line_per_tenth_and_one_at_the_end():
    out = io.StringIO()
    with Progress("u.data", 5_000_000, stream=out) as shown:
        for _ in range(50):  # 100 kB chunks
            shown.update(100_000)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 11  # the first chunk, then each tenth
    assert lines[0] == "u.data: 0.1/5.0 MB (  2%)" and lines[-1] == "u.data: 5.0/5.0 MB (100%)"


def test_an_unknown_size_gives_a_line_per_10_mb_and_the_total():
    out = io.StringIO()
    with Progress("x.tsv.gz", 0, stream=out) as shown:
        for _ in range(25):
            shown.update(1_000_000)
    assert out.getvalue().splitlines() == ["x.tsv.gz: 1.0 MB", "x.tsv.gz: 10.0 MB", "x.tsv.gz: 20.0 MB",
                                           "x.tsv.gz: 25.0 MB"]  # fmt: skip


def test_a_terminal_gets_a_tqdm_bar_and_disabled_progress_prints_nothing():
    out = Terminal()
    with Progress("u.data", 2_000_000, stream=out) as shown:
        shown.update(2_000_000)
    assert "\r" in out.getvalue() and "100%" in out.getvalue() and "2.00M/2.00M" in out.getvalue()
    quiet = Terminal()
    with Progress("u.data", 10, stream=quiet, enabled=False) as shown:
        shown.update(10)
    assert quiet.getvalue() == ""
