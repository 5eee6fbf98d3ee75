"""The one table of datasets: every entry is complete, every place that names datasets reads it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import tfrs_movies.data as data
from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.data import download as dl
from tfrs_movies.data import movielens
from tfrs_movies.data.registry import (
    DATASET_NAMES,
    DATASETS,
    SPLIT_KINDS,
    DatasetSpec,
    dataset_spec,
    unsupported_split,
)
from tfrs_movies.data.splits import build_split
from tfrs_movies.data.synth_formats import SYNTH_FORMATS


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_entry_is_complete(name, tmp_path):
    spec = DATASETS[name]
    assert spec.name == name and callable(spec.loader)
    assert set(spec.split_kinds) <= set(SPLIT_KINDS) and "random" in spec.split_kinds
    assert (spec.download is not None) != bool(spec.not_downloadable)
    if spec.generated:
        assert "files" not in spec.split_kinds
        return
    assert spec.markers and spec.ratings_layout == movielens.ratings_layout(name)
    assert "files" in spec.split_kinds
    for marker in spec.markers:  # any one marker makes a folder hold the dataset
        folder = tmp_path / marker.replace(".", "_")
        (folder / marker).mkdir(parents=True)
        assert data.find_data_dir(name, folder) == folder


def test_every_place_reads_the_table():
    assert S.DATASET_NAMES == DATASET_NAMES
    load_config(None, [f"data.name={DATASET_NAMES[-1]}"])  # the config's choices are the table's names
    with pytest.raises(ConfigError, match="data.name"):
        load_config(None, ["data.name=ml-5m"])
    downloadable = {n for n, s in DATASETS.items() if s.download is not None}
    assert set(dl.DATASETS) == downloadable | {"imdb"}
    assert set(dl.NOT_DOWNLOADABLE) == set(DATASETS) - downloadable
    assert set(SYNTH_FORMATS) == {n for n, s in DATASETS.items() if s.synth is not None} | {"imdb"}
    with pytest.raises(ValueError, match="unknown dataset 'ml-5m'; known: ml-100k, ml-1m"):
        data.load_dataset("ml-5m")


def test_adding_a_dataset_is_one_entry(tiny_world, tmp_path, monkeypatch):
    def load_toy(path, on_bad_lines, options):
        return dataclasses.replace(
            tiny_world.dataset, name="toy", report={"rows": (path / "toy.txt").read_text()}
        )

    monkeypatch.setitem(
        DATASETS, "toy", DatasetSpec("toy", load_toy, markers=("toy.txt",), not_downloadable="x")
    )
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.txt").write_text("42")
    dataset = data.load_dataset("toy", tmp_path)
    assert dataset.name == "toy" and dataset.report == {"rows": "42", "path": str(tmp_path / "toy")}
    config = load_config(None, ["data.split.kind=leave_last_out"])
    assert build_split(config, dataset).kind == "leave_last_out"


@pytest.mark.parametrize(
    "name, kind", [("synthetic", "probe"), ("synthetic", "files"), ("ml-100k", "probe"), ("ml-25m", "probe")]
)
def test_an_unsupported_split_kind_is_refused_in_one_line(tiny_world, name, kind):
    dataset = dataclasses.replace(tiny_world.dataset, name=name)
    config = load_config(None, [f"data.split.kind={kind}"])
    with pytest.raises(ConfigError) as err:
        build_split(config, dataset)
    message = str(err.value)
    assert "\n" not in message and f"'{kind}'" in message and f"dataset {name}" in message
    assert ", ".join(DATASETS[name].split_kinds) in message
    assert unsupported_split("netflix", "probe") is None


def test_entries_are_checked_when_written():
    with pytest.raises(ValueError, match="probe"):
        DatasetSpec(
            "x", lambda *a: None, markers=("x",), split_kinds=("random", "probe"), not_downloadable="x"
        )
    with pytest.raises(ValueError, match="not_downloadable"):
        DatasetSpec("x", lambda *a: None, markers=("x",))
    with pytest.raises(ValueError, match="unknown dataset 'x'"):
        dataset_spec("x")


def test_the_data_command_line_does_not_import_training(tmp_path):
    synth = ["synth", "--format", "ml-100k", "--out", str(tmp_path / "d"), "--ratings", "3000"]
    split = ["split", "--dataset", "ml-100k", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "s")]
    code = (
        "import sys\n"
        "from tfrs_movies.data.__main__ import main\n"
        f"assert main({synth!r}) == 0 and main({split!r}) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('tfrs_movies.training', 'tensorflow')))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "s" / "test").is_file()
