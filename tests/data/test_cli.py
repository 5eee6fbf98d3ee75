"""``python -m tfrs_movies.data``: info, synth (every format reads back), split."""

import json

import pytest

from tfrs_movies.data import load_dataset
from tfrs_movies.data.__main__ import main


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_info_on_genuine_ml100k(ml100k_dir, capsys):
    assert main(["info", "--dataset", "ml-100k", "--data-dir", str(ml100k_dir)]) == 0
    info = _json_out(capsys)
    assert (info["ratings"], info["users"], info["movies"], info["genres"]) == (100000, 943, 1682, 19)


@pytest.mark.parametrize(
    "fmt, dataset_name",
    [("ml-100k", "ml-100k"), ("ml-1m", "ml-1m"), ("ml-25m", "ml-25m"), ("ml-latest-small", "ml-latest-small"),
     ("netflix", "netflix")],
)  # fmt: skip
def test_synth_writes_a_format_its_loader_reads(fmt, dataset_name, tmp_path, capsys):
    out = tmp_path / fmt
    assert main(["synth", "--format", fmt, "--out", str(out), "--ratings", "4000", "--seed", "3"]) == 0
    written = _json_out(capsys)
    dataset = load_dataset(dataset_name, out)
    assert len(dataset.ratings) == written["ratings"]
    assert dataset.ratings["user_id"].nunique() == written["users"]
    assert main(["info", "--dataset", dataset_name, "--data-dir", str(out)]) == 0
    assert _json_out(capsys)["ratings"] == written["ratings"]


def test_synth_is_deterministic_by_seed(tmp_path, capsys):
    for name in ("a", "b"):
        main(
            ["synth", "--format", "ml-1m", "--out", str(tmp_path / name), "--ratings", "3000", "--seed", "5"]
        )
    a = (tmp_path / "a" / "ratings.dat").read_bytes()
    assert a == (tmp_path / "b" / "ratings.dat").read_bytes()
    main(["synth", "--format", "ml-1m", "--out", str(tmp_path / "c"), "--ratings", "3000", "--seed", "6"])
    assert a != (tmp_path / "c" / "ratings.dat").read_bytes()


def test_split_writes_files_other_libraries_can_read(tmp_path, capsys):
    data = tmp_path / "ml-100k"
    main(["synth", "--format", "ml-100k", "--out", str(data), "--ratings", "4000", "--seed", "1"])
    written = _json_out(capsys)
    assert main(["split", "--dataset", "ml-100k", "--data-dir", str(data), "--kind", "random",
                 "--out", str(tmp_path / "split")]) == 0  # fmt: skip
    result = _json_out(capsys)
    assert result["train"] + result["valid"] + result["test"] == written["ratings"]
    assert 0.15 < result["test"] / written["ratings"] < 0.25
    lines = (tmp_path / "split" / "test").read_text().splitlines()
    assert len(lines) == result["test"]
    assert len(lines[0].split("\t")) == 4  # u.data layout


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(["info", "--dataset", "ml-1m", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "ml-1m" in err
