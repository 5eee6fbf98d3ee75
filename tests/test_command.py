"""The ``tfrs-movies`` console command and the Python API re-exported by ``tfrs_movies``: the installed
script runs, ``--version`` prints the package version, and every ``--help`` answers without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tfrs_movies
from tfrs_movies.commands import SUBCOMMANDS

SCRIPT = Path(sys.executable).with_name("tfrs-movies")
REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_the_installed_script_prints_the_version_and_lists_every_subcommand():
    assert SCRIPT.exists(), f"{SCRIPT} missing: pip install -e . installs it (setup.cfg console_scripts)"
    version = _run(str(SCRIPT), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tfrs-movies {tfrs_movies.__version__}"
    listing = _run(str(SCRIPT), "--help")
    assert listing.returncode == 0
    for name in ("train", "recommend", "serve", "tune", "report", "data", "eda"):
        assert f"\n  {name} " in listing.stdout, name
    unknown = _run(str(SCRIPT), "trian")
    assert unknown.returncode == 2 and "invalid choice: 'trian'" in unknown.stderr


@pytest.mark.slow
def test_a_subcommand_runs_its_module_and_returns_its_exit_status(tmp_path):
    info = _run(str(SCRIPT), "data", "synth", "--format", "ml-100k", "--out", str(tmp_path / "ml"),
                "--ratings", "500")  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert (tmp_path / "ml" / "u.data").exists()
    missing = _run(str(SCRIPT), "report", str(tmp_path / "no-such-run"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error:")


HELP_ARGVS = [["--help"], ["--version"]] + [[name, "--help"] for name in SUBCOMMANDS]


@pytest.mark.slow  # one interpreter imports pandas and matplotlib: 3-4 s
def test_help_answers_without_importing_tensorflow_in_plain_words():
    """Every --help (and --version) in one fresh interpreter: none imports TensorFlow, none shows
    reStructuredText markup, each subcommand's usage line names the command."""
    code = f"""
import contextlib, io, sys
from tfrs_movies.commands import main
for argv in {HELP_ARGVS!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as stop:
            assert stop.code in (0, None), (argv, stop.code)
    text = out.getvalue()
    assert text.strip(), argv
    assert '``' not in text and ':mod:' not in text and ':func:' not in text, (argv, text)
    if len(argv) == 2:
        assert text.startswith('usage: tfrs-movies ' + argv[0]), (argv, text[:80])
assert 'tensorflow' not in sys.modules, 'tensorflow imported'
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_python_dash_m_keeps_its_own_usage_line():
    done = _run(sys.executable, "-m", "tfrs_movies.report", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m tfrs_movies.report")


def test_the_api_names_are_there_and_import_tfrs_movies_stays_light():
    code = """
import os, sys
import tfrs_movies
assert os.environ['TF_USE_LEGACY_KERAS'] == '1'
from tfrs_movies import build_model, load_config, load_dataset, load_export, run
for f in (build_model, load_config, load_dataset, load_export, run):
    assert callable(f) and '>>>' in f.__doc__, f
assert 'tensorflow' not in sys.modules
config = load_config(None, {'train.epochs': 3})
assert config['train']['epochs'] == 3
dataset = load_dataset('synthetic', synthetic={'users': 30, 'movies': 20, 'ratings': 300, 'seed': 1})
assert len(dataset.ratings) > 0 and 'tensorflow' not in sys.modules
try:
    tfrs_movies.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError('no AttributeError')
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(tfrs_movies.__all__) >= {"build_model", "load_config", "load_dataset", "load_export", "run"}


@pytest.mark.slow
def test_the_api_trains_exports_and_answers(tmp_path):
    from tfrs_movies import build_model, load_config, load_export, run

    config = load_config(None, {"data.name": "synthetic", "data.synthetic.users": 60,
                                "data.synthetic.movies": 40, "data.synthetic.ratings": 2000,
                                "model.name": "popularity"})  # fmt: skip
    result = run(config, run_dir=tmp_path / "run", say=lambda _: None)
    assert 0.0 <= result.metrics["recall@10"] <= 1.0
    exported = load_export(result.run_dir / "export")
    user = int(result.split.train["user_id"].iloc[0])
    assert len(exported.recommend(user, k=5).frame) == 5
    assert build_model(config).name == "popularity"
