"""Bad input gets a one-line error or a documented, reported handling; nothing is silently replaced,
lost or changed (issue 13: findings 1, 3, 6, 9 and the bad-input list). docs/RELIABILITY.md lists each
case with its test here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tfrs_movies.data as data_module
from tests.payloads import PicklePayload
from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.data import DatasetNotFoundError, load_dataset, resolve_dataset
from tfrs_movies.data import download as download_module
from tfrs_movies.data.errors import DataError, DataFormatError

ITEM = "{id}|Movie {id} (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
USER = "{id}|24|M|technician|85711\n"


def write_ml100k(folder: Path, ratings: str | bytes, movies: int = 5, users: int = 4) -> Path:
    """A minimal ML-100K folder: ``u.data`` as given (text or bytes), ``movies`` items, ``users`` users."""
    folder.mkdir(parents=True, exist_ok=True)
    data = ratings.encode("latin-1") if isinstance(ratings, str) else ratings
    (folder / "u.data").write_bytes(data)
    (folder / "u.item").write_text(
        "".join(ITEM.format(id=i) for i in range(1, movies + 1)), encoding="latin-1"
    )
    (folder / "u.user").write_text(
        "".join(USER.format(id=i) for i in range(1, users + 1)), encoding="latin-1"
    )
    return folder


GOOD = "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n3\t3\t1\t881250952\n"


def _refuse_download(monkeypatch):
    def no(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(download_module, "download", no)


# ----- finding 1: a folder the user named is used or refused ----------------------------------------


def test_a_named_folder_without_the_data_is_refused_not_replaced(ml100k_dir, tmp_path, monkeypatch):
    """Another copy on disk ($TFRS_MOVIES_DATA holds the genuine ML-100K) is never taken instead."""
    monkeypatch.setenv("TFRS_MOVIES_DATA", str(ml100k_dir.parent))
    with pytest.raises(DatasetNotFoundError, match="not found in the folder given"):
        load_dataset("ml-100k", tmp_path / "typo")


def test_a_named_folder_is_neither_downloaded_into_nor_swapped_for_generated_data(tmp_path, monkeypatch):
    _refuse_download(monkeypatch)
    config = load_config(None, {"data.dir": str(tmp_path / "typo")})
    with pytest.raises(DatasetNotFoundError, match="typo"):
        resolve_dataset(config, say=lambda line: None)
    assert config["data"]["name"] == "ml-100k"  # not switched to "synthetic"
    assert not (tmp_path / "typo").exists()


def test_train_with_a_wrong_data_dir_is_one_line_and_no_run(tmp_path, monkeypatch, capsys):
    from tfrs_movies.train import main

    _refuse_download(monkeypatch)
    run_dir = tmp_path / "run"
    assert main(["--data-dir", str(tmp_path / "typo"), "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ml-100k not found in the folder given") and "\n" not in err
    assert not run_dir.exists()


def test_a_named_folder_is_used(tmp_path):
    dataset = load_dataset("ml-100k", write_ml100k(tmp_path / "mine", GOOD))
    assert len(dataset.ratings) == 4 and dataset.report["path"] == str(tmp_path / "mine")


def test_the_generated_fallback_says_where_it_looked_and_how_to_get_the_data(monkeypatch, tmp_path):
    """Only with no data named at all: the default dataset, nowhere on disk, download offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TFRS_MOVIES_DATA", raising=False)
    monkeypatch.setattr(data_module, "_REPO_ROOT", tmp_path / "repo")

    def offline(name, data_dir, **kwargs):
        raise download_module.DownloadError("Name or service not known")

    monkeypatch.setattr(download_module, "download", offline)
    said: list[str] = []
    dataset = resolve_dataset(load_config(None, {"data.synthetic.ratings": 500}), say=said.append)
    assert dataset.name == "synthetic" and len(said) == 1
    line = said[0]
    assert "looked in" in line and str(tmp_path / "data" / "ml-100k") in line
    assert "Name or service not known" in line and "python -m tfrs_movies.data download ml-100k" in line


# ----- finding 3: duplicate (user, movie) pairs keep the latest rating, counted --------------------


def test_duplicate_pairs_keep_the_latest_rating_and_are_counted(tmp_path, capsys):
    from tfrs_movies.data.__main__ import main as data_main

    rows = GOOD + "1\t1\t2\t881250999\n" + "2\t1\t1\t881250000\n"  # (1,1) re-rated later; (2,1) earlier
    folder = write_ml100k(tmp_path / "ml-100k", rows)
    dataset = load_dataset("ml-100k", folder)
    pairs = dataset.ratings.set_index([S.USER_ID, S.MOVIE_ID])[S.RATING]
    assert not pairs.index.duplicated().any()
    assert pairs[(1, 1)] == 2.0 and pairs[(2, 1)] == 4.0  # the latest by timestamp, not the last line
    assert dataset.report["duplicate_ratings"] == 2
    assert data_main(["info", "--dataset", "ml-100k", "--data-dir", str(folder)]) == 0
    assert '"duplicate_ratings": 2' in capsys.readouterr().out


def test_equal_timestamps_keep_the_later_line():
    from tfrs_movies.data.checks import keep_latest_ratings

    columns = {S.USER_ID: [1, 1, 1], S.MOVIE_ID: [7, 7, 8], S.RATING: [1.0, 5.0, 3.0], S.TIMESTAMP: [10] * 3}
    frame = S.canonical_ratings(pd.DataFrame(columns))
    kept, dropped = keep_latest_ratings(frame)
    assert dropped == 1 and kept[S.RATING].tolist() == [5.0, 3.0]
    same, none = keep_latest_ratings(kept)
    assert none == 0 and same is kept  # no duplicate: the frame itself, no copy


def test_no_pair_lands_in_both_train_and_test(tmp_path):
    """The probe of the issue: with duplicates kept, a split put the same pair in train and test."""
    from tfrs_movies.data.splits import random_split

    rng = np.random.default_rng(0)
    users, movies = rng.integers(1, 30, 3000), rng.integers(1, 40, 3000)  # ~1,100 pairs, many repeated
    lines = "".join(f"{u}\t{m}\t{rng.integers(1, 6)}\t{880000000 + i}\n"
                    for i, (u, m) in enumerate(zip(users, movies, strict=True)))  # fmt: skip
    dataset = load_dataset("ml-100k", write_ml100k(tmp_path / "d", lines, movies=40, users=30))
    assert dataset.report["duplicate_ratings"] > 1000
    split = random_split(dataset.ratings, 0.2, seed=42)
    both = split.train.merge(split.test, on=[S.USER_ID, S.MOVIE_ID])
    assert len(both) == 0


def test_train_says_what_the_loader_dropped(tmp_path):
    rows = GOOD + "1\t1\t2\t881250999\n"
    config = load_config(None, {"data.dir": str(write_ml100k(tmp_path / "d", rows))})
    said: list[str] = []
    resolve_dataset(config, say=said.append)
    assert "1 duplicate (user, movie) ratings dropped, the latest kept" in said[0]


# ----- finding 6: skip mode is reported; nothing usable is an error -------------------------------


def test_skip_mode_is_reported_by_train(tmp_path):
    rows = GOOD + "1,4,3,881250953\nnot a line\n"
    folder = write_ml100k(tmp_path / "d", rows)
    config = load_config(None, {"data.dir": str(folder), "data.on_bad_lines": "skip"})
    said: list[str] = []
    dataset = resolve_dataset(config, say=said.append)
    assert len(dataset.ratings) == 4
    assert f"skipped 2 bad lines ({folder / 'u.data'}: 2)" in said[0]


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_file_where_every_line_is_bad_is_a_data_error(mode, tmp_path, capsys):
    """A comma-separated u.data: under skip it used to load as 0 ratings."""
    from tfrs_movies.data.__main__ import main as data_main
    from tfrs_movies.train import main as train_main

    folder = write_ml100k(tmp_path / "d", GOOD.replace("\t", ","))
    args = ["--data-dir", str(folder)]
    assert data_main(["info", "--dataset", "ml-100k", *args, "--on-bad-lines", mode]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("every rating line was bad" in err if mode == "skip" else "u.data:1" in err)
    run_dir = tmp_path / "run"
    assert train_main([*args, "--set", f"data.on_bad_lines={mode}", "--run-dir", str(run_dir)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not run_dir.exists()


def test_an_empty_ratings_file_is_a_data_error_in_info_and_train(tmp_path, capsys):
    from tfrs_movies.data.__main__ import main as data_main
    from tfrs_movies.train import main as train_main

    folder = write_ml100k(tmp_path / "d", "")
    assert data_main(["info", "--dataset", "ml-100k", "--data-dir", str(folder)]) == 1
    assert "no ratings (the ratings file is empty)" in capsys.readouterr().err
    assert train_main(["--data-dir", str(folder), "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no ratings" in err and "\n" not in err


def test_an_empty_file_of_a_files_split_is_a_data_error(tmp_path):
    from tfrs_movies.data.splits import build_split

    folder = write_ml100k(tmp_path / "d", GOOD)
    (folder / "u1.base").write_text(GOOD)
    (folder / "u1.test").write_text("")
    config = load_config(None, {"data.dir": str(folder), "data.split.kind": "files",
                                "data.split.train": "u1.base", "data.split.test": "u1.test"})  # fmt: skip
    with pytest.raises(DataError, match="u1.test: no usable ratings"):
        build_split(config, load_dataset("ml-100k", folder))


# ----- finding 9: fractional ML-100K ratings; ratings of movies u.item does not list ----------------


def test_a_fractional_rating_in_ml100k_is_a_bad_line(tmp_path):
    folder = write_ml100k(tmp_path / "d", GOOD + "4\t2\t3.5\t881250960\n")
    with pytest.raises(DataFormatError, match=r"u.data:5: expected field 3 \(rating\) .* whole steps"):
        load_dataset("ml-100k", folder)
    assert len(load_dataset("ml-100k", folder, "skip").ratings) == 4


def test_ratings_of_unlisted_movies_are_an_error_or_dropped_and_counted(tmp_path):
    folder = write_ml100k(tmp_path / "d", GOOD + "4\t99\t3\t881250960\n4\t98\t3\t881250961\n")
    with pytest.raises(
        DataError, match=r"2 ratings are of movies its movie file does not list \(first: movie 99\)"
    ):
        load_dataset("ml-100k", folder)
    dataset = load_dataset("ml-100k", folder, "skip")
    assert len(dataset.ratings) == 4 and dataset.report["unknown_movie_ratings"] == 2


# ----- the bad-input list: separators, bytes, scale, non-finite numbers, ids ------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("5;3;4;881250960", "4 fields separated by tab"),  # wrong separator
        ("5\t3\t6\t881250960", r"field 3 \(rating\) to be a number from 1 to 5"),  # above the scale
        ("5\t3\t0\t881250960", r"field 3 \(rating\) to be a number from 1 to 5"),  # below the scale
        ("5\t3\tnan\t881250960", r"field 3 \(rating\) to be a number"),
        ("5\t3\tinf\t881250960", r"field 3 \(rating\) to be a number"),
        ("5\t3\t1e999\t881250960", r"field 3 \(rating\) to be a number"),
        ("5.5\t3\t4\t881250960", r"field 1 \(user id\) to be an integer"),
        ("5\tabc\t4\t881250960", r"field 2 \(item id\) to be an integer"),
        ("5\t3\t4\t", r"field 4 \(timestamp\) to be an integer"),
    ],
)
def test_a_bad_ratings_line_names_file_line_and_what_was_expected(line, expected, tmp_path):
    folder = write_ml100k(tmp_path / "d", GOOD + line + "\n")
    with pytest.raises(DataFormatError, match=rf"u.data:5: expected {expected}"):
        load_dataset("ml-100k", folder)


def test_non_utf8_bytes_in_a_csv_ratings_file_name_the_line(tmp_path):
    from tfrs_movies.data.movielens import read_ratings_file

    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\n1,2,3.5,100\n1,3,\xff\xfe,101\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:3: expected field 3 \(rating\)"):
        read_ratings_file(path, "csv")
    assert len(read_ratings_file(path, "csv", "skip")) == 1


def test_the_genuine_ml100k_loads_unchanged(ml100k_dir):
    """The checks drop nothing from the real data: 100,000 ratings, no duplicates, every movie listed."""
    dataset = load_dataset("ml-100k", ml100k_dir)
    assert len(dataset.ratings) == 100_000
    assert not {"duplicate_ratings", "unknown_movie_ratings", "unknown_user_ratings"} & set(dataset.report)


def test_copied_folder_is_still_found_under_its_name(ml100k_dir, tmp_path):
    """--data-dir may name the dataset folder or the folder above it."""
    parent = tmp_path / "datasets"
    shutil.copytree(ml100k_dir, parent / "ml-100k", ignore=shutil.ignore_patterns("u[1-5a-b].*", "*.base"))
    assert len(load_dataset("ml-100k", parent).ratings) == 100_000


# ----- no code from data: archives, YAML, pickle --------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_an_archive_bomb_is_refused_before_a_byte_is_written(tmp_path):
    from tfrs_movies.data.download import UnsafeArchiveError, extraction_limit, safe_extract_zip

    archive = _zip(tmp_path / "bomb.zip", {"ml-100k/u.data": b"\0" * (64 << 20)})  # 64 MiB in ~64 KB
    assert archive.stat().st_size < 1 << 20 and extraction_limit(archive.stat().st_size) < 64 << 20
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="would unpack to 67,108,864 bytes, over the limit"):
        safe_extract_zip(archive, dest)
    assert list(dest.iterdir()) == []
    ordinary = _zip(tmp_path / "ok.zip", {"ml-100k/u.data": GOOD.encode()})
    assert [p.name for p in safe_extract_zip(ordinary, dest)] == ["u.data"]


def test_an_archive_whose_header_lies_about_its_size_is_a_damaged_download(tmp_path):
    import struct

    from tfrs_movies.data.download import DownloadError, safe_extract_zip

    archive = _zip(tmp_path / "liar.zip", {"u.data": b"\0" * (4 << 20)})
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, 22, 1000)  # the local header's uncompressed size
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 1000)  # the central directory's
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="damaged archive .*Bad CRC-32"):
        safe_extract_zip(archive, tmp_path)


def test_a_python_tag_in_a_config_executes_nothing(tmp_path):
    from tfrs_movies.config import ConfigError

    marker = tmp_path / "pwned"
    path = tmp_path / "c.yaml"
    path.write_text(
        f"seed: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()


def test_no_module_unpickles_or_loads_unsafe_yaml():
    """A grep over the package: pickle must not come back to model, export or data loading."""
    import re

    import tfrs_movies

    root = Path(tfrs_movies.__file__).parent
    unsafe = re.compile(
        r"\bimport pickle\b|\bpickle\.loads?\(|allow_pickle\s*=\s*True|\byaml\.(?:unsafe_)?load\(|"
        r"yaml\.(?:Unsafe|Full)?Loader\b|\bimport (?:dill|joblib|cloudpickle)\b|\bpd\.read_pickle\("
    )
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if unsafe.search(line)
    ]
    assert found == []


def test_a_pickled_payload_in_an_export_is_refused_not_run(exported_retrieval, tmp_path):
    from tfrs_movies.serving import ServingError, load_export

    export = shutil.copytree(exported_retrieval, tmp_path / "export")
    marker = tmp_path / "pwned"
    np.save(export / "popularity.npy", np.array([PicklePayload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ServingError, match="corrupted"):
        load_export(export)
    assert not marker.exists()


# ----- finding 9: artifacts are readable like every other file (0644 less the umask) ----------------


def test_config_metrics_and_manifest_are_written_0644(exported_retrieval, tmp_path):
    import os

    from tfrs_movies.train import main

    mask = os.umask(0)
    os.umask(mask)
    run_dir = tmp_path / "run"
    args = ["--dataset", "synthetic", "--set", "data.synthetic.ratings=500", "--model", "popularity"]
    assert main([*args, "--set", "export.enabled=false", "--run-dir", str(run_dir)]) == 0
    for path in (run_dir / "config.yaml", run_dir / "metrics.json", exported_retrieval / "manifest.json"):
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~mask), path  # not mkstemp's 0600
