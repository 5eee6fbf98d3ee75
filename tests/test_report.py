"""The comparison report on small runs: Markdown rows, the PNG chart, runs on different splits refused."""

from __future__ import annotations

import json

import pytest

from tfrs_movies.config import load_config
from tfrs_movies.evaluation.report import (
    chart,
    collect_runs,
    human_bytes,
    load_run,
    markdown_table,
    model_settings,
    split_problems,
)
from tfrs_movies.report import main
from tfrs_movies.training.experiment import run_experiment

TINY = ["data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
        "data.synthetic.ratings=3000", "train.verbose=0", "export.enabled=false"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two models on the same split, and one on another random split (its seed differs)."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, extra in (("biases", []), ("popularity", []), ("svd_other_split", ["data.split.seed=1"])):
        model = name.split("_")[0]
        config = load_config(None, [*TINY, f"model.name={model}", f"run_dir={root / name}", *extra])
        run_experiment(config, say=lambda _: None)
        made[name] = root / name
    return made


def test_table_has_one_row_per_run_with_rating_topn_time_and_size(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(runs["biases"]), str(runs["popularity"]), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["run", "rmse", "mae"]
    assert {"recall@10", "ndcg@10", "coverage@10", "novelty@10", "gini@10"} <= set(header)
    assert header[-4:] == ["train s", "model size", "weights", "params"]
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert set(rows) == {"biases", "popularity"}
    cells = [c.strip() for c in rows["biases"].strip("|").split("|")]
    metrics = json.loads((runs["biases"] / "metrics.json").read_text())
    assert cells[header.index("rmse")] == f"{metrics['rmse']:.4f}"
    assert cells[header.index("model size")].endswith("B")  # KiB / MiB
    popularity = [c.strip() for c in rows["popularity"].strip("|").split("|")]
    assert popularity[header.index("rmse")] == ""  # not a rating model: blank, not zero
    assert popularity[header.index("params")] == "defaults"  # the fixture sets nothing for the model
    assert "test split" in text
    png = out / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "| biases |" in capsys.readouterr().out


def test_runs_on_different_splits_are_refused_unless_allowed(runs, tmp_path, capsys):
    paths = [str(runs["biases"]), str(runs["svd_other_split"])]
    assert main([*paths, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "data.split.seed is 1, not 42" in err and "not comparable" in err
    assert not (tmp_path / "a" / "report.md").exists()
    assert main([*paths, "--out", str(tmp_path / "b"), "--allow-mixed-splits"]) == 0
    assert "warning:" in capsys.readouterr().err
    text = (tmp_path / "b" / "report.md").read_text()
    assert "MIXED SPLITS" in text and "| split |" in text


def test_validation_figures_are_not_mixed_with_test_figures(runs, tmp_path):
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "config.yaml").write_text((runs["biases"] / "config.yaml").read_text())
    metrics = json.loads((runs["biases"] / "metrics.json").read_text())
    (trial / "metrics.json").write_text(json.dumps({**metrics, "evaluated_on": "validation"}))
    problems = split_problems([load_run(runs["biases"]), load_run(trial)])
    assert len(problems) == 1 and "evaluated_on is 'validation', not 'test'" in problems[0]


def test_a_folder_of_runs_and_recorded_parameters(runs, tmp_path):
    found = collect_runs([runs["biases"].parent])
    assert [r.label for r in found] == ["biases", "popularity", "svd_other_split"]
    run = load_run(runs["biases"], "biases (ALS)")
    run.metrics["parameters"] = 12345
    table = markdown_table([run], ["rmse"])
    assert "| biases (ALS) |" in table and "12,345" in table
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        collect_runs([tmp_path])
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(None) == ""


def test_params_column_is_what_the_config_sets_for_the_model():
    config = load_config(None, ["model.name=ease", "model.params.l2=400", "model.embedding_dim=32",
                                "train.epochs=2", "train.verbose=0"])  # fmt: skip
    assert model_settings(config) == "l2=400 embedding_dim=32 epochs=2"  # verbose is not the model's
    assert model_settings(load_config(None, ["model.name=svd"])) == "defaults"


def test_chart_has_a_panel_per_figure_some_run_has_and_no_legend(runs):
    """Top-N runs only: no rating panel (it would be empty); coverage, novelty and Gini drawn; every
    panel has a bar of real height; no legend anywhere (the runs are named on the y axis)."""
    import matplotlib.pyplot as plt

    popularity = load_run(runs["popularity"])
    fig = chart([popularity, popularity])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    plt.close(fig)
    assert not any(t.startswith(("rmse", "mae")) for t in titles)
    assert {"coverage@10 (higher is better)", "novelty@10 (bits) (higher is better)",
            "gini@10 (lower is better)"} <= set(titles)  # fmt: skip
    both = chart([load_run(runs["biases"]), popularity])
    visible = [ax for ax in both.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible][:2] == ["rmse (lower is better)", "mae (lower is better)"]
    assert all(ax.get_legend() is None for ax in both.axes)
    for ax in visible:  # each panel: a bar per run, at least one of them a figure (not n/a)
        assert len(ax.patches) == 2 and any(t.get_text() != "n/a" for t in ax.texts), ax.get_title()
    rmse_labels = [t.get_text() for t in visible[0].texts]
    assert rmse_labels[1] == "n/a" and rmse_labels[0] != "n/a"
    assert [t.get_text() for t in visible[0].get_yticklabels()] == ["biases", "popularity"]
    plt.close(both)
