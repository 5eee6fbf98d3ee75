"""Serving refuses what it cannot answer in one line and says when an answer is shorter than asked
(issue 13: findings 7 and 9, and the serving part of the bad-input list)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfrs_movies.recommend import main
from tfrs_movies.serving import ServingError, load_export
from tfrs_movies.serving.layout import EXPORT_FORMAT


@pytest.fixture
def copy(exported_retrieval, tmp_path):
    """A copy of the shared retrieval export that a test may damage."""
    return shutil.copytree(exported_retrieval, tmp_path / "export")


def _set_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("found, words", [(99, "format 99"), (0, "format 0"), (None, "no format number")])
def test_an_export_of_another_format_is_refused_naming_both(copy, found, words, capsys):
    _set_manifest(copy, format=found)
    with pytest.raises(ServingError, match=rf"has {words}.*this version reads export format {EXPORT_FORMAT}"):
        load_export(copy)
    assert main(["--model", str(copy), "--user", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err


def test_a_manifest_that_is_not_json_is_refused(copy):
    (copy / "manifest.json").write_text('{"format": 1, ')
    with pytest.raises(ServingError, match="corrupted: manifest.json"):
        load_export(copy)


def test_the_current_format_is_served(exported_retrieval):
    assert json.loads((exported_retrieval / "manifest.json").read_text())["format"] == EXPORT_FORMAT
    assert len(load_export(exported_retrieval).recommend(1, 5).frame) == 5


def test_k_beyond_the_unseen_movies_says_so(copy, capsys):
    """A user who has seen all but 3 movies asks for 10: 3 rows and a note saying why."""
    with np.load(copy / "seen.npz") as seen:
        users, indices, indptr = seen["users"], seen["indices"], seen["indptr"]
    n_movies = len(load_export(copy).catalogue)
    user = int(users[0])
    rows = [np.arange(3, n_movies)] + [indices[indptr[i] : indptr[i + 1]] for i in range(1, len(users))]
    new_indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    np.savez(copy / "seen.npz", users=users, indices=np.concatenate(rows), indptr=new_indptr)
    result = load_export(copy).recommend(user, 10, "brute_force")
    assert len(result.frame) == 3
    assert result.note == (
        f"only 3 movies to recommend, not 10: user {user} has seen {n_movies - 3} of the {n_movies} movies"
    )
    assert main(["--model", str(copy), "--user", str(user), "--k", "10", "--index", "brute_force"]) == 0
    assert "only 3 movies to recommend" in capsys.readouterr().out


def test_candidates_without_a_ranking_model_are_refused(exported_retrieval, capsys):
    served = load_export(exported_retrieval)
    for candidates in (0, 50):
        with pytest.raises(ServingError, match="apply to two stages only.*has no ranking model"):
            served.recommend(1, 5, candidates=candidates)
    assert main(["--model", str(exported_retrieval), "--user", "1", "--candidates", "0"]) == 2
    assert "two stages only" in capsys.readouterr().err


@pytest.mark.parametrize("k", [0, -3, 41, 10**6, 2.5, "ten"])
def test_k_zero_negative_or_beyond_the_catalogue_is_one_line(exported_retrieval, k, capsys):
    with pytest.raises(ServingError, match="k must be"):
        load_export(exported_retrieval).recommend(1, k)
    args = ["--model", str(exported_retrieval), "--similar", "1", "--k", str(k)]
    if isinstance(k, int):
        assert main(args) == 2
        assert capsys.readouterr().err.startswith("error: k must be between 1 and 40")
    else:  # not an integer at all: argparse's usage error, status 2 too
        with pytest.raises(SystemExit) as usage:
            main(args)
        assert usage.value.code == 2


def test_an_unknown_user_gets_the_cold_start_and_an_unknown_movie_one_line(exported_retrieval, capsys):
    served = load_export(exported_retrieval)
    result = served.recommend(10**9, 5)
    assert result.cold_start and len(result.frame) == 5 and "unknown to this model" in result.note
    with pytest.raises(ServingError):
        served.similar(10**9, 5)
    assert main(["--model", str(exported_retrieval), "--user", "abc"]) == 2
    assert "ids are integers" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, words", [(b"1\n\xff\xfe\n", "not UTF-8 text (byte 0xff)"), (b"\n\n", "no user ids")]
)
def test_a_users_file_that_is_not_text_or_empty_is_one_line(
    exported_retrieval, tmp_path, content, words, capsys
):
    path = tmp_path / "users.csv"
    path.write_bytes(content)
    assert main(["--model", str(exported_retrieval), "--users-file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: users file") and words in err and "\n" not in err


def test_a_wrong_export_path_is_told_before_tensorflow_loads(tmp_path):
    """A run directory given as ``recommend --model`` or ``serve --model`` is one error line from a fresh
    interpreter that never imported TensorFlow (it answered in 7 s when the check needed the exporter)."""
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "manifest.json").write_text("{}")
    run = tmp_path / "run"
    for command, extra in (("recommend", ["--user", "1"]), ("serve", ["--port", "0"])):
        code = f"""
import sys
from tfrs_movies.{command} import main
status = main(["--model", {str(run)!r}, *{extra!r}])
assert status == 2, status
assert "tensorflow" not in sys.modules
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stderr.strip() == f"error: {run} is a run directory; its export is {run / 'export'}"
