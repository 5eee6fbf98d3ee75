"""Every command line answers the project's own errors with one ``error:`` line and an exit status
(2: a setting or the command line, 1: the data, a download, a saved run or the training), the traceback
only with ``--debug`` or ``TFRS_MOVIES_DEBUG=1``; a config error stops before any data is read or any
run directory is made (issue 13, findings 2 and 8)."""

from __future__ import annotations

import json
import math

import pytest

import tfrs_movies.data
from tfrs_movies import cli
from tfrs_movies.data import download as download_module
from tfrs_movies.training import experiment

TINY = ["--dataset", "synthetic", "--set", "data.synthetic.users=60", "--set", "data.synthetic.movies=40",
        "--set", "data.synthetic.ratings=1500", "--set", "train.verbose=0",
        "--set", "export.enabled=false"]  # fmt: skip


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if anything tries to load data."""

    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded although the config was wrong")

    monkeypatch.setattr(experiment, "resolve_dataset", refuse)


@pytest.mark.parametrize(
    "args, key",
    [
        (["--model", "nosuch"], "model.name"),
        (["--set", "train.early_stopping.metric=foo@10"], "train.early_stopping.metric"),
        (["--set", "train.early_stopping.metric=rmse"], "train.early_stopping.metric"),  # retrieval
        (["--model", "mf", "--set", "model.params.bogus=1"], "model.params.bogus"),
        (["--set", "seed=-1"], "seed"),
        (["--set", "eval.ks=[0]"], "eval.ks"),
        (["--set", "eval.ks=[]"], "eval.ks"),
        (["--set", "train.learning_rate=.nan"], "train.learning_rate"),
        (["--set", "train.learning_rate=.inf"], "train.learning_rate"),
        (["--lr", "-0.1"], "train.learning_rate"),
        (["--set", "model.temperature=0"], "model.temperature"),
        (["--set", "model.l2=-0.5"], "model.l2"),
        (["--set", "model.dropout=1.5"], "model.dropout"),
        (["--set", "model.user_layers=[32, -1]"], "model.user_layers"),
        (["--set", "export.rerank_weight=.nan"], "export.rerank_weight"),
        (["--set", "train.epochs=many"], "train.epochs"),
        (["--set", "train.nosuch=1"], "train.nosuch"),
    ],
)
def test_config_errors_stop_before_data_and_leave_no_run_dir(args, key, no_data, tmp_path, capsys):
    from tfrs_movies.train import main

    run_dir = tmp_path / "run"
    assert main([*args, "--run-dir", str(run_dir)]) == 2
    assert key in _one_error_line(capsys)
    assert not run_dir.exists()


def test_every_shipped_config_passes_the_checks_made_before_data_loads():
    """The names each config refers to exist and fit (model, its params, the early-stopping metric)."""
    from pathlib import Path

    from tfrs_movies.config import check_names, load_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) > 10
    for path in configs:
        check_names(load_config(path))


@pytest.mark.parametrize(
    "content, words",
    [
        (b"train:\n  epochs: [1, 2\n", "not valid YAML at line"),
        ("train:\n  epochs: 3  # r\xe9glage\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 2)"),
        (b"train: 5\n", "'train' is a section"),
        (b"- a\n- b\n", "mapping at the top level"),
    ],
)
def test_a_broken_config_file_is_one_line(content, words, no_data, tmp_path, capsys):
    from tfrs_movies.train import main

    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert words in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_debug_flag_and_environment_show_the_traceback(no_data, monkeypatch, capsys):
    from tfrs_movies.train import main

    assert main(["--model", "nosuch", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    monkeypatch.setenv("TFRS_MOVIES_DEBUG", "1")
    assert main(["--model", "nosuch"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the project's own errors become one line: anything else is a bug and is not hidden."""
    with pytest.raises(ZeroDivisionError):
        cli.guarded(lambda: 1 // 0)
    assert cli.exit_status(KeyError("x")) is None


def test_a_nan_loss_is_an_error_and_writes_no_metrics(monkeypatch, tmp_path, capsys):
    """The runner refuses a fit whose loss became NaN: exit 1, one line naming the epoch, no metrics."""
    from tfrs_movies.train import main

    real_fit = experiment.fit

    def diverging_fit(model, *args, **kwargs):
        seconds = real_fit(model, *args, **kwargs)
        model.history = {"loss": [0.7, math.nan]}
        return seconds

    monkeypatch.setattr(experiment, "fit", diverging_fit)
    run_dir = tmp_path / "run"
    assert main([*TINY, "--model", "popularity", "--run-dir", str(run_dir)]) == 1
    assert "loss = nan at epoch 2; no metrics or model were written" in _one_error_line(capsys)
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()


@pytest.mark.slow  # about 6 s: one real epoch that diverges
def test_a_learning_rate_that_blows_up_the_loss_is_an_error(tmp_path, capsys):
    """For real: plain SGD at 1e30 makes the matrix factorisation's loss NaN in its first epoch."""
    from tfrs_movies.train import main

    run_dir = tmp_path / "run"
    args = [*TINY, "--model", "mf", "--set", "train.optimizer=sgd", "--lr", "1e30", "--epochs", "1"]
    assert main([*args, "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: training diverged: model 'mf' had loss = nan at epoch 1")
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()


def test_exponent_numbers_are_numbers_on_the_command_line_and_in_files(tmp_path):
    """YAML 1.1 reads 1e-3 as text; --lr 0.00001 became "1e-05" on its way to the config and was refused."""
    from tfrs_movies.config import load_config
    from tfrs_movies.train import config_from_args, parse_args

    assert config_from_args(parse_args(["--lr", "0.00001"]))["train"]["learning_rate"] == 1e-5
    assert load_config(None, ["train.learning_rate=1e-3"])["train"]["learning_rate"] == 1e-3
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 5E-4\n")
    assert load_config(path)["train"]["learning_rate"] == 5e-4


def test_a_full_disk_is_one_line_and_leaves_no_half_file(monkeypatch, no_data, tmp_path, capsys):
    """The rename of config.yaml fails with ENOSPC: exit 1, one line, neither config.yaml nor a temporary."""
    import errno
    import os

    from tfrs_movies.train import main

    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).endswith("config.yaml"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    monkeypatch.setattr(experiment, "resolve_dataset", lambda config, say: _tiny_dataset())
    run_dir = tmp_path / "run"
    assert main(["--model", "popularity", "--run-dir", str(run_dir)]) == 1
    assert "No space left on device" in _one_error_line(capsys)
    assert [p.name for p in run_dir.iterdir() if "config" in p.name] == []


def _tiny_dataset():
    from tfrs_movies.data.synthetic import generate_world

    return generate_world(n_users=30, n_movies=20, n_ratings=400, seed=1).dataset


def test_data_errors_are_status_1_in_train_info_and_eda(tmp_path, capsys):
    from tfrs_movies.data.__main__ import main as data_main
    from tfrs_movies.eda import main as eda_main
    from tfrs_movies.train import main as train_main

    (tmp_path / "u.data").write_text("1,2,3,881250949\n")  # commas: not the ML-100K layout
    for name in ("u.item", "u.user"):
        (tmp_path / name).write_text("")
    assert train_main(["--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")]) == 1
    assert "u.data:1: expected 4 fields separated by tab" in _one_error_line(capsys)
    assert data_main(["info", "--dataset", "ml-100k", "--data-dir", str(tmp_path)]) == 1
    assert "u.data:1" in _one_error_line(capsys)
    assert eda_main(["--dataset", "ml-100k", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "u.data:1" in _one_error_line(capsys)


def test_download_error_is_one_line(monkeypatch, tmp_path, capsys):
    from tfrs_movies.data.__main__ import main as data_main

    def offline(name, data_dir, **kwargs):
        raise download_module.DownloadError("https://files.grouplens.org/...: Name or service not known")

    monkeypatch.setattr(download_module, "download", offline)
    assert data_main(["download", "ml-100k", "--data-dir", str(tmp_path)]) == 1
    assert "Name or service not known" in _one_error_line(capsys)
    assert download_module.main(["ml-100k", "--data-dir", str(tmp_path)]) == 1  # its own entry point
    assert "Name or service not known" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as usage:  # an unknown name is a usage error (argparse: status 2)
        data_main(["download", "ml-nosuch"])
    assert usage.value.code == 2


def test_report_on_a_corrupt_metrics_file_is_one_line(tmp_path, capsys):
    from tfrs_movies.report import main as report_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"recall@10": 0.3,')  # cut off mid-write
    (run / "config.yaml").write_text("seed: 1\n")
    assert report_main([str(run), "--out", str(tmp_path / "report")]) == 1
    assert "metrics.json" in _one_error_line(capsys)


def test_tune_with_a_bad_config_is_one_line(tmp_path, capsys):
    from tfrs_movies.tune import main as tune_main

    grid = tmp_path / "g.yaml"
    grid.write_text("grid:\n  model.embedding_dim: [8, 16]\n")
    args = ["--grid", str(grid), "--set", "model.temperature=-1", "--tune-dir", str(tmp_path / "t")]
    assert tune_main([*args, "--workers", "1"]) == 2
    assert "model.temperature" in _one_error_line(capsys)


def test_recommend_on_a_missing_export_is_one_line(tmp_path, capsys):
    from tfrs_movies.recommend import main as recommend_main

    assert recommend_main(["--model", str(tmp_path / "nosuch"), "--user", "1"]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_info_prints_json(tmp_path, capsys, tiny_world, monkeypatch):
    """The happy path still prints one JSON line (the table refactoring kept it)."""
    from tfrs_movies.data.__main__ import main as data_main

    monkeypatch.setattr(tfrs_movies.data, "load_dataset", lambda *a, **k: tiny_world.dataset)
    assert data_main(["info", "--dataset", "ml-100k"]) == 0
    assert json.loads(capsys.readouterr().out)["ratings"] == len(tiny_world.dataset.ratings)
