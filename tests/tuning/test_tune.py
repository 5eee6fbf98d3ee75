"""The tuner: grid files, resume of an interrupted run, choice on validation, HParams, plots, Optuna."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.tune import main
from tfrs_movies.tuning.grid import SearchSpace, expand_grid, load_space, overrides_for, parse_space, trial_id
from tfrs_movies.tuning.runner import TuneOptions, choose_winner, tune
from tfrs_movies.tuning.store import TuningDir

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
        "data.synthetic.ratings=3000"]  # fmt: skip
TINY_ARGS = [arg for item in TINY for arg in ("--set", item)]
SVD = SearchSpace(axes={"model.params.rank": [2, 5]}, fixed={"model.name": "svd"})
QUIET = lambda _: None  # noqa: E731


def test_seed000_grid_has_150_trials_with_a_shared_final_dimension():
    space = load_space(REPO / "configs/grids/seed000.yaml")
    points = expand_grid(space)
    assert len(points) == space.size() == 3 * 5 * 5 * 2
    ids = {trial_id(overrides_for(space, p)) for p in points}
    assert len(ids) == 150
    point = {"model.embedding_dim": 16, "user_dense": 8, "movie_dense": 128, "final_dim": 64}
    overrides = overrides_for(space, point)
    assert overrides == {
        "model.embedding_dim": 16,
        "model.movie_layers": [128, 64],
        "model.user_layers": [8, 64],
    }
    load_config(REPO / "configs/seed000_cosine_normalized.yaml", overrides)  # every key exists
    budget = load_space(REPO / "configs/grids/seed000_budget.yaml")
    budget_ids = {trial_id(overrides_for(budget, p)) for p in expand_grid(budget)}
    assert len(budget_ids) == 54 and budget_ids < ids  # the subset's trials are the full grid's trials


def test_trial_id_ignores_key_order_and_int_float_spelling():
    assert trial_id({"a.b": 1, "c.d": [8, 64]}) == trial_id({"c.d": [8, 64], "a.b": 1.0})
    assert trial_id({"a.b": 1}) != trial_id({"a.b": 2})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"grid": {"model.embedding_dim": [8]}, "typo": 1}, "unknown section 'typo'"),
        ({"grid": {"width": [8, 16]}}, "axis 'width' is not a config key"),
        ({"grid": {"model.embedding_dim": []}}, "non-empty list"),
        ({"grid": {"w": [8]}, "derived": {"model.user_layers": ["${w}", "${v}"]}}, "${v}"),
        ({"metric": "rmse"}, "needs a 'grid' or an 'optuna' section"),
    ],
)
def test_grid_file_mistakes_are_named(raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_space(raw)


def test_a_bad_config_key_stops_before_any_trial(tmp_path):
    space = SearchSpace(axes={"model.embeding_dim": [8]})
    with pytest.raises(ConfigError, match="did you mean 'model.embedding_dim'"):
        tune(load_config(None, TINY), space, TuneOptions(tmp_path / "t", "rmse"), say=QUIET)
    assert not list((tmp_path / "t").glob("trials/*"))


def test_an_unknown_metric_stops_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="unknown metric 'nddcg@10'; known: recall@K"):
        tune(load_config(None, TINY), SVD, TuneOptions(tmp_path / "t", "nddcg@10"), say=QUIET)
    assert not (tmp_path / "t").exists()


def test_winner_is_chosen_on_validation_whatever_test_says():
    ok = {"status": "ok", "params": {}}
    records = [
        {**ok, "trial_id": "a", "valid": {"rmse": 0.90, "ndcg@10": 0.2}, "test": {"rmse": 0.1}},
        {**ok, "trial_id": "b", "valid": {"rmse": 0.85, "ndcg@10": 0.1}, "test": {"rmse": 9.0}},
        {"trial_id": "c", "status": "failed", "params": {}, "valid": {}},
    ]
    assert choose_winner(records, "rmse")["trial_id"] == "b"  # lower is better
    assert choose_winner(records, "ndcg@10")["trial_id"] == "a"  # higher is better
    with pytest.raises(ValueError, match="no finished trial has validation 'auc'"):
        choose_winner(records, "auc")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The tiny grid (6 SVD trials), stopped after 2 trials, then resumed by the same command."""
    root = tmp_path_factory.mktemp("tune") / "tiny"
    command = [*TINY_ARGS, "--grid", str(REPO / "configs/grids/tiny.yaml"), "--tune-dir", str(root),
               "--workers", "1", "--heatmap", "model.params.rank", "model.params.reg_user"]  # fmt: skip
    assert main([*command, "--max-trials", "2"]) == 0
    first = {r["trial_id"]: r for r in TuningDir(root).records()}
    first_csv = pd.read_csv(root / "results.csv")
    stamps = {tid: (root / "trials" / tid / "result.json").stat().st_mtime_ns for tid in first}
    best_before = (root / "best.json").exists()
    # A trial killed half-way leaves a folder without result.json: resuming must run it afresh.
    space = load_space(REPO / "configs/grids/tiny.yaml")
    pending = [trial_id(overrides_for(space, p)) for p in expand_grid(space)]
    pending = [tid for tid in pending if tid not in first]
    (root / "trials" / pending[0]).mkdir(parents=True)
    (root / "trials" / pending[0] / "half-written").write_text("x")
    assert main(command) == 0
    return {"root": root, "first": first, "first_csv": first_csv, "stamps": stamps,
            "best_before": best_before, "killed": pending[0]}  # fmt: skip


def test_resume_redoes_no_finished_trial(resumed):
    root = resumed["root"]
    assert len(resumed["first"]) == 2 and len(resumed["first_csv"]) == 2
    assert not resumed["best_before"]  # no test figure while the search is incomplete
    records = {r["trial_id"]: r for r in TuningDir(root).records()}
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())
    for tid, record in resumed["first"].items():
        assert (root / "trials" / tid / "result.json").stat().st_mtime_ns == resumed["stamps"][tid]
        assert records[tid]["finished_at"] == record["finished_at"]
    assert not (root / "trials" / resumed["killed"] / "half-written").exists()
    csv = pd.read_csv(root / "results.csv")
    assert len(csv) == 6 and csv["trial_id"].is_unique and set(csv["trial_id"]) == set(records)
    for column in ("model.params.rank", "model.params.reg_user", "valid_rmse", "valid_ndcg@10", "train_rmse",
                   "train_mae", "train_seconds", "status"):  # fmt: skip
        assert column in csv.columns


def test_resume_after_the_end_runs_nothing(resumed, capsys):
    root = resumed["root"]
    before = (root / "best.json").stat().st_mtime_ns
    assert main([*TINY_ARGS, "--grid", str(REPO / "configs/grids/tiny.yaml"), "--tune-dir", str(root),
                 "--workers", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "6 already finished, 0 to run" in out and "already computed" in out
    assert (root / "best.json").stat().st_mtime_ns == before  # test was read once


def test_winner_is_the_best_validation_trial_and_test_comes_from_its_refit(resumed):
    root = resumed["root"]
    csv = pd.read_csv(root / "results.csv")
    best = json.loads((root / "best.json").read_text())
    assert best["trial_id"] == csv.loc[csv["valid_rmse"].idxmin(), "trial_id"]
    assert best["valid"]["rmse"] == pytest.approx(csv["valid_rmse"].min())
    assert 0 < best["test"]["rmse"] < 5 and best["metric"] == "rmse" and best["direction"] == "lower"
    refit = json.loads((root / "best" / "metrics.json").read_text())
    assert refit["evaluated_on"] == "test" and refit["rmse"] == pytest.approx(best["test"]["rmse"])
    trial = json.loads((root / "trials" / best["trial_id"] / "metrics.json").read_text())
    assert trial["evaluated_on"] == "validation" and trial["sizes"]["valid"] > 0


def _hparams_tags(path: Path) -> set[str]:
    import tensorflow as tf

    tags = set()
    for event_file in path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    tags.add(value.tag)
    return tags


def test_hparams_config_at_the_root_and_one_session_per_trial(resumed):
    logdir = resumed["root"] / "tensorboard"
    assert "_hparams_/experiment" in _hparams_tags(logdir)
    sessions = [p for p in logdir.iterdir() if p.is_dir()]
    assert len(sessions) == 6
    for session in sessions:
        assert "_hparams_/session_start_info" in _hparams_tags(session)


def test_plots_are_png_files(resumed):
    plots = resumed["root"] / "plots"
    names = {p.name for p in plots.glob("*.png")}
    assert names == {"train_valid_rmse_mae.png", "heatmap_model.params.rank__model.params.reg_user.png",
                     "param_importance.png"}  # fmt: skip
    for path in plots.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def _drawn(monkeypatch) -> list:
    """The figures the plot functions save (kept open for inspection)."""
    from tfrs_movies.tuning import plots

    figures: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    return figures


def _trial(tid: str, rank: int, reg: float, rmse: float) -> dict:
    params = {"model.params.rank": rank, "model.params.reg_user": reg}
    return {"trial_id": tid, "status": "ok", "params": params, "valid": {"rmse": rmse},
            "train": {"rmse": rmse - 0.1}}  # fmt: skip


def test_the_line_plot_names_trials_by_their_hyperparameter_values(monkeypatch, tmp_path):
    from tfrs_movies.tuning.plots import plot_curves

    figures = _drawn(monkeypatch)
    records = [_trial("aaaaaaaaaaaa", 2, 5.0, 0.95), _trial("bbbbbbbbbbbb", 10, 5.0, 0.90),
               _trial("cccccccccccc", 10, 2.0, 0.99)]  # fmt: skip
    plot_curves(records, tmp_path / "x.png", "rmse")
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks == ["rank=10 reg_user=5.0", "rank=2 reg_user=5.0", "rank=10 reg_user=2.0"]  # best first
    one_axis = [_trial(t, rank, 5.0, v) for t, rank, v in [("a", 10, 0.9), ("b", 2, 0.95), ("c", 5, 0.92)]]
    plot_curves(one_axis, tmp_path / "y.png", "rmse")
    ax = figures[1].axes[0]
    assert ax.get_xlabel() == "model.params.rank"  # one numeric axis varied: over its values
    assert list(ax.lines[-1].get_xdata()) == [2.0, 5.0, 10.0]
    assert list(ax.lines[-1].get_ydata()) == [0.95, 0.92, 0.9]


def test_parameter_importance_needs_two_trials_and_a_varied_parameter(monkeypatch, tmp_path):
    pytest.importorskip("optuna")
    from tfrs_movies.tuning.plots import param_importances, plot_importance

    grid = [(2, 2.0), (2, 5.0), (5, 2.0), (5, 5.0), (10, 2.0), (10, 5.0)]
    records = [_trial(str(i), rank, reg, 1.0 - rank / 100 + reg / 1000) for i, (rank, reg) in enumerate(grid)]
    importances = param_importances(records, "rmse")
    assert list(importances) == ["model.params.rank", "model.params.reg_user"]  # rank moves rmse most
    assert sum(importances.values()) == pytest.approx(1.0)
    figures = _drawn(monkeypatch)
    plot_importance(importances, 6, "rmse", tmp_path / "i.png")
    assert [t.get_text() for t in figures[0].axes[0].get_yticklabels()][-1] == "model.params.rank"  # on top
    with pytest.raises(ValueError, match="1 finished trials"):
        param_importances(records[:1], "rmse")
    with pytest.raises(ValueError, match="0 varied"):
        param_importances([records[0], {**records[0], "trial_id": "x", "valid": {"rmse": 0.5}}], "rmse")


def test_another_base_config_is_refused_in_the_same_tuning_dir(resumed):
    other = load_config(None, [*TINY, "seed=7"])
    with pytest.raises(ConfigError, match="seed: 42 there, 7 now"):
        tune(other, SVD, TuneOptions(resumed["root"], "rmse"), say=QUIET)


def test_optuna_search_keeps_its_budget_and_resumes(tmp_path):
    pytest.importorskip("optuna")
    space = parse_space(
        {"fixed": {"model.name": "svd"}, "optuna": {"model.params.rank": {"low": 1, "high": 12}}}
    )
    base = load_config(None, TINY)
    options = dict(search="optuna", final_test=False)
    first = tune(base, space, TuneOptions(tmp_path, "rmse", trials=3, **options), QUIET)
    assert first.complete and len(first.ran) == 3
    again = tune(base, space, TuneOptions(tmp_path, "rmse", trials=5, **options), QUIET)
    assert again.reused == 3 and len(again.ran) == 2
    records = TuningDir(tmp_path).records()
    assert len(records) == 5 and len({r["trial_id"] for r in records}) == 5
    assert all(1 <= r["params"]["model.params.rank"] <= 12 for r in records)


@pytest.mark.slow
def test_trials_run_in_spawned_worker_processes(tmp_path):
    base = load_config(None, TINY)
    result = tune(base, SVD, TuneOptions(tmp_path, "rmse", workers=2, threads=1, final_test=False), QUIET)
    assert result.complete and len(result.ran) == 2 and not result.failed
    assert all((tmp_path / "trials" / tid / "model" / "model.json").exists() for tid in result.ran)
