"""MODEL_CARD.md: written into every export from its manifest, with what a receiver needs to know."""

from __future__ import annotations

import copy
import json

import pytest

from tfrs_movies.config import load_config
from tfrs_movies.serving.card import CARD_FILE, REFERENCE_FIGURES, model_card

# What a training run on ML-100K's u1 files records in metrics.json (the figures are EASE's on u1).
U1_METRICS = {
    "recall@10": 0.1912, "recall@20": 0.3072, "precision@10": 0.5139, "ndcg@10": 0.5659, "map@10": 0.4316,
    "hr@10": 0.9586, "mrr@10": 0.8025, "coverage@10": 0.1683, "novelty@10": 1.9515, "gini@10": 0.9414,
    "dataset": "ml-100k", "model": "retrieval", "split": "files", "evaluated_on": "test", "users": 459,
    "sizes": {"train": 71997, "valid": 8003, "test": 20000}, "train_seconds": 11.04, "best_epoch": 3,
}  # fmt: skip


@pytest.fixture(scope="module")
def manifest(exported_retrieval):
    """The manifest of a real export (the shared two-tower retrieval with gender, age and history)."""
    return json.loads((exported_retrieval / "manifest.json").read_text())


def as_u1_run(manifest: dict, **split) -> dict:
    """The real manifest as if its run had been trained and tested on u1.base / u1.test."""
    run = copy.deepcopy(manifest)
    run["config"] = load_config(None, {"data.split.kind": "files", "data.split.train": "u1.base",
                                       "data.split.test": "u1.test", "train.epochs": 3, **split})  # fmt: skip
    run["metrics"] = dict(U1_METRICS)
    return run


def test_the_export_holds_a_card_written_from_its_manifest(exported_retrieval, manifest, fitted_retrieval):
    card = (exported_retrieval / CARD_FILE).read_text()
    assert card.startswith("# Model card: `retrieval`")
    assert f"tfrs-movies recommend --model {exported_retrieval} --user 42" in card
    assert f'load_export("{exported_retrieval}")' in card and "tensorflow_model_server" in card
    assert manifest["parameters"] == fitted_retrieval.parameter_count() > 0
    assert f"Learned weights: {manifest['parameters']:,}." in card
    assert manifest["description"] in card and "``" not in manifest["description"]
    # exported outside a run: no figures, and the card does not pretend otherwise
    assert "written without test figures" in card and "| figure |" not in card
    # its cold start, as serving/load.py does it: the tower's request fields, the history input
    assert "through its query tower (`--gender`, `--age`)" in card
    assert "the query tower over those movies as the user's history" in card
    assert card == model_card(manifest, str(exported_retrieval))


def test_figures_sit_beside_the_baselines_measured_on_the_same_split(manifest):
    card = model_card(as_u1_run(manifest), "runs/u1/export")
    source, systems = REFERENCE_FIGURES[("ml-100k", "files", "u1.base", "u1.test")]
    head = next(line for line in card.splitlines() if line.startswith("| figure |"))
    assert head == "| figure | this model | EASE (l2 400) | implicit ALS (32 factors) | popularity |"
    assert "| ndcg@10 (higher is better) | 0.5659 | 0.5659 | 0.5360 | 0.3253 |" in card
    assert "| coverage@10 (higher is better) | 0.1683 |  |  |  |" in card
    assert "| gini@10 (lower is better) | 0.9414 |" in card
    assert source in card and "Surprise" not in head  # rating baselines only beside rating figures
    assert "Split `files`: the dataset's own files: train `u1.base`, test `u1.test`" in card
    assert "Ratings: train 71,997, valid 8,003, test 20,000." in card
    assert "11.0 s of fitting; best epoch 3 of at most 3" in card
    assert "Settings: `embedding_dim=16 user_features=[id,gender,age,history]" not in card  # config replaced
    assert "top-10 lists for the test users use 17% of the catalogue, Gini 0.94" in card


def test_without_baselines_on_its_split_the_card_says_so(manifest):
    for other in (
        {"data.split.train": "u2.base", "data.split.test": "u2.test"},
        {"eval.relevance_threshold": 4},
    ):
        card = model_card(as_u1_run(manifest, **other))
        assert "| figure | this model |\n" in card  # no baseline column is invented
        assert "This run recorded no baseline figures" in card and "tfrs-movies report" in card
    random = as_u1_run(manifest, **{"data.split.kind": "random"})
    card = model_card(random)
    assert "no baseline figures" in card
    assert "per user, a random 20% of ratings to test (seed 42" in card


def test_a_run_writes_the_card_with_its_figures(tmp_path):
    """Through the pipeline: a run's export card has the run's own figures and split sizes."""
    from tfrs_movies.training.experiment import run_experiment

    config = load_config(None, ["data.name=synthetic", "data.synthetic.users=60", "data.synthetic.movies=50",
                                "data.synthetic.ratings=2000", "model.name=popularity",
                                f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    result = run_experiment(config, say=lambda _: None)
    card = (result.run_dir / "export" / CARD_FILE).read_text()
    assert card.startswith("# Model card: `popularity`")
    assert f"| recall@10 (higher is better) | {result.metrics['recall@10']:.4f} |" in card
    assert "a generated sample: its figures say nothing about real people" in card
    sizes = result.metrics["sizes"]
    assert f"Ratings: train {sizes['train']:,}, valid {sizes['valid']:,}, test {sizes['test']:,}." in card
    assert "A user id it never saw gets the most popular movies of training" in card
    assert "no baseline figures" in card
