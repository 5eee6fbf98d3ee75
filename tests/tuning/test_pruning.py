"""Pruning (:mod:`tfrs_movies.tuning.pruning`): a trial worse than the finished trials' median after an
epoch is stopped, recorded as pruned, never rerun, and told to a rebuilt Optuna study as PRUNED."""

from __future__ import annotations

import json

import pytest

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.tuning.grid import parse_space
from tfrs_movies.tuning.pruning import PrunerSpec, Pruning, TrialPruned, local_trial, parse_pruner
from tfrs_movies.tuning.runner import TuneOptions, tune
from tfrs_movies.tuning.store import TuningDir

TINY = ["data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
        "data.synthetic.ratings=3000"]  # fmt: skip
QUIET = lambda _: None  # noqa: E731


def test_the_pruner_section_is_read_and_checked():
    assert parse_pruner(None) is None
    assert parse_pruner("none") == PrunerSpec("none")
    assert parse_pruner({"name": "median", "n_warmup_steps": 0}) == PrunerSpec("median", 5, 0)
    bad_sections = [("hyperband", "pruner must be one of"), ({"name": "median", "warmup": 1}, "'warmup'"),
                    ({"name": "median", "n_startup_trials": -1}, "integer >= 0")]  # fmt: skip
    for bad, message in bad_sections:
        with pytest.raises(ConfigError, match=message):
            parse_pruner(bad)
    space = parse_space({"grid": {"model.embedding_dim": [8]}, "pruner": "median"})
    assert space.pruner == PrunerSpec("median")


def test_the_median_pruner_stops_a_curve_below_the_finished_ones():
    pytest.importorskip("optuna")
    finished = ({0: 1.0, 1: 0.9, 2: 0.8}, {0: 1.1, 1: 0.95, 2: 0.85})
    trial = local_trial(Pruning(PrunerSpec("median", 2, 1), "rmse", finished))
    trial.report(3.0, 0)
    assert not trial.should_prune()  # epoch 0 is a warm-up step
    trial.report(2.5, 1)
    assert trial.should_prune()
    early = local_trial(Pruning(PrunerSpec("median", 3, 0), "rmse", finished))
    early.report(9.0, 0)
    assert not early.should_prune()  # only 2 finished trials, 3 needed


@pytest.mark.slow  # three MF trials, then a resume: about 15 s
def test_a_bad_trial_is_pruned_recorded_and_not_rerun(tmp_path):
    pytest.importorskip("optuna")
    base = load_config(None, TINY)
    space = parse_space({
        "fixed": {"model.name": "mf", "model.embedding_dim": 4, "train.epochs": 3, "train.batch_size": 256,
                  "train.early_stopping.metric": "rmse", "train.early_stopping.patience": 5},
        "grid": {"model.params.init_std": [0.01, 0.02, 3.0]},  # the last: huge random factors
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
    })  # fmt: skip
    options = TuneOptions(tmp_path, "rmse", final_test=False)
    lines: list[str] = []
    result = tune(base, space, options, lines.append)
    assert len(result.ran) == 2 and len(result.pruned) == 1 and not result.failed and result.complete
    records = {r["params"]["model.params.init_std"]: r for r in TuningDir(tmp_path).records()}
    bad = records[3.0]
    assert bad["status"] == "pruned" and bad["pruned_at_epoch"] == 1 and bad["valid"] == {}
    assert list(bad["intermediate"]["values"]) == ["0"] and bad["intermediate"]["metric"] == "rmse"
    good = records[0.01]
    assert good["status"] == "ok" and len(good["intermediate"]["values"]) == 3
    assert bad["intermediate"]["values"]["0"] > good["intermediate"]["values"]["0"]
    assert any("pruned after epoch 1" in line for line in lines)
    assert not (tmp_path / "trials" / bad["trial_id"] / "checkpoints").exists()
    stamp = (tmp_path / "trials" / bad["trial_id"] / "result.json").stat().st_mtime_ns
    again = tune(base, space, options, QUIET)
    assert again.ran == [] and again.pruned == [] and again.reused == 3 and again.complete
    assert (tmp_path / "trials" / bad["trial_id"] / "result.json").stat().st_mtime_ns == stamp
    assert "pruned" in (tmp_path / "results.csv").read_text()


def test_a_rebuilt_optuna_study_holds_pruned_trials_as_pruned(tmp_path):
    optuna = pytest.importorskip("optuna")
    from tfrs_movies.tuning.runner import _OptunaSource

    l2 = {"model.params.l2": {"choices": [0.1, 0.2]}}
    space = parse_space({"fixed": {"model.name": "mf"}, "optuna": l2})
    curve = {"metric": "rmse", "values": {"0": 1.0, "1": 0.9}}
    finished = {"a": {"trial_id": "a", "status": "ok", "params": {"model.params.l2": 0.1},
                      "valid": {"rmse": 0.9}, "intermediate": curve}}  # fmt: skip
    pruned = {"b": {"trial_id": "b", "status": "pruned", "params": {"model.params.l2": 0.2}, "valid": {},
                    "intermediate": {"metric": "rmse", "values": {"0": 2.0}}}}  # fmt: skip
    source = _OptunaSource(space, finished, pruned, "rmse", budget=2, seed=0)
    states = [t.state for t in source.search.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert source.search.study.trials[1].intermediate_values == {0: 2.0}
    assert source.reused == 2 and source.complete() and source.next(set()) is None  # nothing is rerun
    json.dumps(pruned)  # what result.json holds


def test_trial_pruned_carries_its_curve():
    err = TrialPruned(2, {0: 1.0, 1: 1.2, 2: 1.4})
    assert str(err) == "pruned after epoch 3" and err.curve[2] == 1.4
