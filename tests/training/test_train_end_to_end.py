"""One end-to-end train on a tiny generated dataset, through the command-line entry point."""

import json

import numpy as np
import pytest
import yaml

from tfrs_movies.models.base import Recommender
from tfrs_movies.train import main

TINY = ["--dataset", "synthetic", "--set", "data.synthetic.users=80", "--set", "data.synthetic.movies=60",
        "--set", "data.synthetic.ratings=3000", "--set", "train.verbose=0"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main([*TINY, "--epochs", "3", "--batch-size", "256", "--run-dir", str(out)]) == 0
    return out


def test_run_dir_holds_config_metrics_tensorboard_and_model(run_dir):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["epochs"] == 3 and config["train"]["batch_size"] == 256
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("recall@10", "recall@20", "precision@10", "ndcg@10", "map@10", "hr@10", "coverage@10"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["users"] == 80
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= {"train", "validation", "test"}
    assert (run_dir / "model" / "model.yaml").exists()


def test_model_beats_popularity_on_planted_structure(run_dir):
    """The generated world has taste structure; a trained two-tower model must find some of it."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = Recommender.load(run_dir / "model")
    assert model.name == "retrieval"
    assert metrics["recall@20"] > 0.0
    # Personalised: two different users get different top lists.
    top, _ = model.recommend(model.users[:2], k=10)
    assert set(top[0]) != set(top[1])


def test_saved_model_reloads_with_the_same_scores(run_dir):
    model = Recommender.load(run_dir / "model")
    again = Recommender.load(run_dir / "model")
    users = model.users[:5]
    np.testing.assert_allclose(model.score(users), again.score(users), rtol=1e-6)


def test_recommend_excludes_seen_and_falls_back_for_unknown_users(run_dir):
    model = Recommender.load(run_dir / "model")
    user = model.users[0]
    seen = set(model.catalogue[model.seen[0].indices])
    top, scores = model.recommend([user], k=10)
    assert not seen & set(top[0])
    assert (np.diff(scores[0]) <= 0).all()
    top_all, _ = model.recommend([user], k=len(model.catalogue), exclude_seen=False)
    assert seen <= set(top_all[0])
    unknown, _ = model.recommend([10**9], k=5)  # popularity fallback, never a crash
    assert len(unknown[0]) == 5


def test_bad_config_is_a_one_line_error(capsys):
    assert main(["--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err
