"""One end-to-end train on a tiny generated dataset, through the command-line entry point."""

import json

import numpy as np
import pytest
import yaml

from tfrs_movies.models.base import Recommender
from tfrs_movies.train import main

TINY = ["--dataset", "synthetic", "--set", "data.synthetic.users=80", "--set", "data.synthetic.movies=60",
        "--set", "data.synthetic.ratings=3000", "--set", "train.verbose=0",
        "--set", "export.enabled=false"]  # export is tested in tests/serving  # fmt: skip


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
    assert (run_dir / "model" / "model.json").exists()
    projector = run_dir / "tensorboard" / "projector"
    assert (projector / "projector_config.pbtxt").exists()
    metadata = (projector / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert metadata[0] == "movie_id\ttitle\tgenres" and len(metadata) == 1 + 60
    assert metadata[1].split("\t")[1].endswith(")")  # a title with its year


@pytest.mark.slow
def test_two_tower_finds_the_planted_taste_structure(tmp_path):
    """On the default generated world (taste factors drive choices), retrieval must beat popularity."""
    from tfrs_movies.config import load_config
    from tfrs_movies.training.experiment import run_experiment

    figures = {}
    for name in ("popularity", "retrieval"):
        config = load_config(None, ["data.name=synthetic", f"model.name={name}", "train.epochs=5",
                                    "train.verbose=0", "export.enabled=false",
                                    f"run_dir={tmp_path / name}"])  # fmt: skip
        figures[name] = run_experiment(config, say=lambda _: None).metrics
    assert figures["retrieval"]["recall@20"] > figures["popularity"]["recall@20"] + 0.02
    assert figures["retrieval"]["ndcg@10"] > figures["popularity"]["ndcg@10"]


def test_recommendations_are_personalised(run_dir):
    model = Recommender.load(run_dir / "model")
    assert model.name == "retrieval"
    top, _ = model.recommend(model.users[:2], k=10)
    assert set(top[0]) != set(top[1])


def test_offline_without_ml100k_falls_back_to_a_generated_sample(monkeypatch):
    import tfrs_movies.data as data_module
    from tfrs_movies.config import load_config
    from tfrs_movies.data import DatasetNotFoundError
    from tfrs_movies.data import download as download_module
    from tfrs_movies.training import experiment

    def not_found(name, data_dir=None):
        raise DatasetNotFoundError(name)

    def offline(name, data_dir, **kwargs):
        raise download_module.DownloadError("Name or service not known")

    monkeypatch.setattr(data_module, "find_data_dir", not_found)
    monkeypatch.setattr(download_module, "download", offline)
    said = []
    dataset = experiment.resolve_dataset(load_config(), say=said.append)
    assert dataset.name == "synthetic" and len(dataset.ratings) > 0
    assert len(said) == 1 and "generated sample" in said[0]
    with pytest.raises(DatasetNotFoundError):  # an explicit other dataset is never silently replaced
        experiment.resolve_dataset(load_config(None, ["data.name=ml-1m"]), say=said.append)


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


def test_a_model_too_large_for_memory_is_a_one_line_error(capsys, tmp_path):
    """EASE on the data states the memory it needs and stops before fitting: one line, exit status 2."""
    args = [*TINY, "--model", "ease", "--set", "model.params.memory_gb=0.000001", "--run-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: EASE on") and "\n" not in err
