"""The one experiment runner: the same rules for a training run (test) and a tuning trial (validation)."""

from __future__ import annotations

import json

import pytest

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.training.experiment import run, run_experiment
from tfrs_movies.tuning.trial import run_trial

QUIET = lambda _: None  # noqa: E731
BASE = ["data.name=synthetic", "train.verbose=0", "export.enabled=false", "train.epochs=1"]
TINY = ["data.synthetic.users=80", "data.synthetic.movies=60", "data.synthetic.ratings=3000"]


def _config(model: str, *extra: str) -> dict:
    return load_config(None, [*BASE, f"model.name={model}", *extra])


def _metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def test_without_early_stopping_validation_fits_train_only_and_test_refits_on_train_and_valid(
    tiny_world, tmp_path
):
    valid = run(_config("biases"), "valid", QUIET, tmp_path / "valid", dataset=tiny_world.dataset)
    split = valid.split
    assert not valid.model.uses_validation
    assert valid.model.seen.nnz == len(split.train)  # validation is what is measured: never fitted on
    assert valid.metrics["users"] == split.valid["user_id"].nunique()
    written = _metrics(tmp_path / "valid")
    assert written["evaluated_on"] == "validation" and written["rmse"] == pytest.approx(valid.metrics["rmse"])
    assert (tmp_path / "valid" / "model" / "model.json").exists()
    assert not (tmp_path / "valid" / "tensorboard" / "test").exists()  # test scalars only for test runs

    test = run(_config("biases"), "test", QUIET, tmp_path / "test", dataset=tiny_world.dataset)
    assert test.model.seen.nnz == len(split.train) + len(split.valid)  # refitted on train + validation
    assert test.metrics["users"] == test.split.test["user_id"].nunique()
    assert _metrics(tmp_path / "test")["evaluated_on"] == "test"
    assert (tmp_path / "test" / "tensorboard" / "test").is_dir()


def test_with_early_stopping_validation_drives_the_fit_and_is_seen_only_for_test(tiny_world, tmp_path):
    for on, seen in (("valid", "train"), ("test", "train+valid")):
        result = run(_config("retrieval"), on, QUIET, tmp_path / on, dataset=tiny_world.dataset)
        split = result.split
        assert result.model.uses_validation and result.metrics["best_epoch"] == 1  # early stopping ran
        expected = len(split.train) + (len(split.valid) if seen == "train+valid" else 0)
        assert result.model.seen.nnz == expected


def test_run_experiment_is_the_runner_on_test(tmp_path):
    config = _config("popularity", *TINY, f"run_dir={tmp_path / 'a'}")
    alias = run_experiment(config, say=QUIET)
    direct = run(_config("popularity", *TINY), "test", QUIET, tmp_path / "b")
    assert alias.evaluated_on == "test" and alias.run_dir == tmp_path / "a"
    for name in ("recall@10", "ndcg@10", "users"):
        assert alias.metrics[name] == direct.metrics[name]


def test_a_trial_is_the_runner_on_validation_plus_its_train_figures(tmp_path):
    config = _config("biases", *TINY)
    outcome = run_trial(config, tmp_path / "trial")
    assert set(outcome) == {"valid", "train", "train_seconds", "parameters"}
    assert set(outcome["train"]) == {"rmse", "mae"} and outcome["parameters"] > 0
    assert "train_seconds" not in outcome["valid"] and "rmse" in outcome["valid"]
    written = _metrics(tmp_path / "trial")
    assert written["evaluated_on"] == "validation" and written["sizes"]["valid"] > 0
    assert written["train_rmse"] == outcome["train"]["rmse"]
    assert written["parameters"] == outcome["parameters"]
    assert (tmp_path / "trial" / "config.yaml").exists()
    assert (tmp_path / "trial" / "model" / "model.json").exists()

    same = run(_config("biases", *TINY), "valid", QUIET, tmp_path / "runner")
    assert outcome["valid"]["rmse"] == pytest.approx(same.metrics["rmse"])  # one protocol, one figure


def test_runner_refuses_what_it_cannot_measure(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="evaluate_on must be one of"):
        run(_config("popularity"), "train", QUIET, tmp_path / "x", dataset=tiny_world.dataset)
    no_valid = _config("popularity", "data.split.validation_fraction=0")
    with pytest.raises(ConfigError, match="validation_fraction"):
        run(no_valid, "valid", QUIET, tmp_path / "y", dataset=tiny_world.dataset)


def test_a_worker_that_is_not_the_chief_leaves_the_run_directory_alone(tiny_world, tmp_path, monkeypatch):
    """Multi-worker runs: every worker runs the same command with the same --run-dir; only the chief's
    files land there, another worker's go to a temporary folder that is gone when the run ends."""
    from tfrs_movies.training import distribute

    monkeypatch.setattr(distribute, "is_chief", lambda strategy: False)
    monkeypatch.setattr(distribute, "_task", lambda strategy: ("worker", 1, {"worker": ["a:1", "b:2"]}))
    result = run(_config("popularity"), "test", QUIET, tmp_path / "shared", dataset=tiny_world.dataset)
    assert not (tmp_path / "shared").exists()
    assert result.run_dir != tmp_path / "shared" and not result.run_dir.exists()
    assert result.metrics["evaluated_on"] == "test"  # the worker still computed the whole run
