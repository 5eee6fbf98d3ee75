"""Progress (:mod:`tfrs_movies.progress`): a tqdm bar on a terminal, one line per tenth elsewhere, nothing
when disabled or before its delay; the full-ranking evaluator's progress over user batches."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from tfrs_movies import progress as P
from tfrs_movies.evaluation import ranking
from tfrs_movies.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_counts_get_one_line_per_tenth():
    out = io.StringIO()
    with Progress("trials", 20, unit="trials", stream=out) as shown:
        for _ in range(20):
            shown.update(1)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 11  # the first, then each tenth
    assert lines[0] == "trials: 1/20 trials (  5%)" and lines[-1] == "trials: 20/20 trials (100%)"


def test_nothing_is_printed_when_disabled_or_before_the_delay(monkeypatch):
    for stream in (io.StringIO(), Terminal()):
        with Progress("x", 10, unit="batches", stream=stream, enabled=False) as shown:
            shown.update(10)
        assert stream.getvalue() == ""
    clock = iter([0.0, 0.5, 1.0, 1.5, 2.5, 3.0, 3.5])
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with Progress("x", 4, unit="batches", stream=out, delay=2.0) as shown:  # started at 0.0
        for _ in range(4):
            shown.update(1)  # at 0.5, 1.0, 1.5: too early; at 2.5: shown
    assert out.getvalue().splitlines() == ["x: 4/4 batches (100%)"]


def test_a_terminal_gets_a_bar_and_notes_go_above_it():
    out = Terminal()
    said: list[str] = []
    with Progress("trials", 3, unit="trials", stream=out, lines=False) as shown:
        shown.update(1)
    assert "\r" in out.getvalue() and "1/3" in out.getvalue()
    plain = io.StringIO()
    with Progress("trials", 3, unit="trials", stream=plain, lines=False) as shown:
        shown.update(3)
        shown.note("trial abc: validation rmse 0.9", said.append)
    assert plain.getvalue() == "" and said == ["trial abc: validation rmse 0.9"]  # lines=False: notes only


def _evaluator() -> ranking.FullRankingEvaluator:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(40), 5), "movie_id": rng.integers(0, 30, 200),
                          "rating": 5.0, "timestamp": 0})  # fmt: skip
    return ranking.FullRankingEvaluator(frame.iloc[::2], frame.iloc[1::2], np.arange(30), ks=[5])


def test_a_long_evaluation_prints_lines_and_a_short_or_unwanted_one_nothing(capsys, monkeypatch):
    evaluator = _evaluator()
    score = lambda users: np.random.default_rng(1).random((len(users), 30))  # noqa: E731
    quiet = evaluator.evaluate(score, batch_size=2)  # 20 batches, done long before the delay
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(ranking, "PROGRESS_DELAY_S", 0.0)
    shown = evaluator.evaluate(score, batch_size=2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"ranking {len(evaluator.users)} users: 1/20 batches (  5%)" and len(lines) == 11
    assert shown == quiet
    evaluator.evaluate(score, batch_size=2, progress=False)
    evaluator.evaluate(score, batch_size=4)  # 10 batches (one line each): still shown; 5 would not be
    assert len(capsys.readouterr().err.splitlines()) == 10
    evaluator.evaluate(score, batch_size=8)
    assert capsys.readouterr().err == ""
