"""Quiet start-up (:mod:`tfrs_movies.logs`): a training run's output starts with the data and split lines;
TensorFlow's C++ lines, ScaNN's native absl lines and the ``get_config`` warnings come only with
``--verbose``; every other warning is kept."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfrs_movies import logs

REPO = Path(__file__).resolve().parents[1]
# The lines a quiet run must not print: TensorFlow's C++ log ("2026-11-30 02:08:29.139985: E ..."),
# native absl ("I0000 00:00:1796004512.886332 7556 partitioner_factory_base.cc:58] ..." and its
# "before absl::InitializeLog()" notice), the get_config warning, Python absl warnings.
NOISE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ |WARNING: All log "
    r"messages before absl|WARNING:absl:)|non-serializable objects",
    re.MULTILINE,
)


def _train(tmp_path: Path, *extra: str) -> str:
    """A tiny retrieval run (generated data, 1 epoch, exported: the ScaNN index and a Keras save),
    its stdout and stderr together, as a user's terminal would show them."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    argv = [sys.executable, "-m", "tfrs_movies.train", "--dataset", "synthetic", "--model", "retrieval",
            "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--set", "data.synthetic.ratings=6000",
            "--set", "model.embedding_dim=8", "--set", "train.verbose=0", *extra]  # fmt: skip
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout
    return done.stdout


@pytest.mark.slow  # two training processes: about 25 s
def test_a_run_starts_with_the_data_lines_and_verbose_shows_the_rest(tmp_path):
    quiet = _train(tmp_path)
    lines = quiet.splitlines()
    assert lines[0].startswith("data: ") and lines[1].startswith("split: "), quiet
    assert NOISE.search(quiet) is None, quiet
    assert lines[-1].startswith("run: ")
    verbose = _train(tmp_path, "--verbose")
    assert "non-serializable objects" in verbose  # the Keras save's get_config warning


def test_only_the_get_config_warning_is_filtered(caplog):
    logger = logging.getLogger("tensorflow")
    try:
        logs.configure(verbose=False)
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            logger.warning(logs.GET_CONFIG_WARNING + ". Please implement a `get_config()` method ...")
            logger.warning("a real warning")
        assert [r.getMessage() for r in caplog.records] == ["a real warning"]
        caplog.clear()
        logs.configure(verbose=True)
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            logger.warning(logs.GET_CONFIG_WARNING + ".")
        assert len(caplog.records) == 1
    finally:
        logs.configure(verbose=True)
        logging.getLogger("absl").setLevel(logging.NOTSET)
