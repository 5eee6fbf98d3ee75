"""The model contract for the TFRS models (retrieval, the ranking heads, rating_classifier, tag_ranking,
multitask, dnn_multi_embedding, sequence), on tiny generated data: serving parts that score as
``model.score`` does, a save folder of arrays and JSON that loads back identical, one-line errors for bad
params, and the ranking / extras writers the export calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.ranking import TowerRecommender
from tfrs_movies.models.registry import build_model
from tfrs_movies.models.state import ARRAYS_FILE, MODEL_FILE

TINY = {"train.verbose": 0, "train.epochs": 1, "train.batch_size": 256, "model.embedding_dim": 8,
        "export.enabled": False}  # fmt: skip
SEQUENCE = {"model.name": "sequence", "model.history_length": 6, "model.params.num_blocks": 1,
            "model.params.rating_layers": [8]}  # fmt: skip
# case -> (config overrides, serving form: "dot" or "scorer")
CASES = {
    "retrieval": ({"model.name": "retrieval", "model.user_features": ["id", "gender", "age"]}, "dot"),
    "ranking_concat": ({"model.name": "ranking", "model.params.head_layers": [8]}, "scorer"),
    "ranking_cosine": (
        {"model.name": "ranking", "model.params.head": "cosine", "model.user_features": ["id", "gender"],
         "model.movie_features": ["id", "genres"]},  # fmt: skip
        "scorer",
    ),
    "ranking_dot_sigmoid": ({"model.name": "ranking", "model.params.head": "dot_sigmoid"}, "scorer"),
    "rating_classifier": ({"model.name": "rating_classifier", "model.params.head_layers": [8]}, "scorer"),
    "tag_ranking": ({"model.name": "tag_ranking", "model.params.head_layers": [8]}, "scorer"),
    "multitask_retrieval": (
        {"model.name": "multitask", "model.params.head_layers": [8], "model.user_features": ["id", "gender"]},
        "dot",
    ),
    "multitask_rating": (
        {"model.name": "multitask", "model.params.head_layers": [8], "model.params.score": "rating"},
        "scorer",
    ),
    "dnn_multi_embedding": (
        {"model.name": "dnn_multi_embedding", "model.params.head_layers": [8], "model.params.joint_dim": 8},
        "scorer",
    ),
    "sequence": (
        {**SEQUENCE, "model.params.pair_epochs": 1, "model.params.pairs_per_movie": 2,
         "model.user_features": ["gender", "age"]},  # fmt: skip
        "dot",
    ),
    "sequence_rating": ({**SEQUENCE, "model.params.heads": "rating"}, "scorer"),
}


@pytest.fixture(scope="module")
def world(tiny_world, tiny_split):
    return tiny_world.dataset, tiny_split


@pytest.fixture(scope="module")
def fitted(world, lazily_fitted):
    return lazily_fitted(*world, lambda case: load_config(None, {**TINY, **CASES[case][0]}))


def _ids(users: np.ndarray) -> tf.Tensor:
    return tf.constant([str(u) for u in users])


def _top10(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


@pytest.mark.parametrize("case", sorted(CASES))
def test_serving_parts_give_the_models_top_10(case, fitted):
    model = fitted(case)
    parts = model.serving_parts()
    assert parts.is_dot == (CASES[case][1] == "dot")
    users = model.users[:30]
    served = parts.catalogue_scorer()(_ids(users)).numpy()
    expected = model.score(users)
    assert served.shape == expected.shape == (len(users), len(model.catalogue))
    np.testing.assert_array_equal(_top10(served), _top10(expected))
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    # What each model hands the export besides its scores.
    assert (parts.ranking is not None) == isinstance(model, TowerRecommender)
    assert set(parts.extras) == ({"explain", "pair"} if case == "sequence" else
                                 {"explain"} if case == "sequence_rating" else set())  # fmt: skip
    cold = case in ("retrieval", "multitask_retrieval", "sequence")  # dot forms with demographics
    assert (parts.feature_query is not None) == cold
    if parts.is_dot:
        np.testing.assert_array_equal(parts.candidates, model.movie_embeddings())


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_then_load_gives_identical_scores_from_arrays_and_json(case, fitted, world, tmp_path):
    _, split = world
    model = fitted(case)
    path = model.save(tmp_path / case)
    assert sorted(p.name for p in Path(path).iterdir()) == sorted([ARRAYS_FILE, MODEL_FILE])
    loaded = Recommender.load(path)
    assert type(loaded) is type(model) and loaded.params == model.params
    users = model.users[:10]
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=0, atol=1e-6)
    pairs = split.test.head(50)
    np.testing.assert_allclose(
        loaded.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        model.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "name, key, value, match",
    [
        ("retrieval", "full_softmax", "yes", "model.params.full_softmax' must be bool"),
        ("ranking", "head", "bilinear", "model.params.head' must be one of"),
        ("ranking", "head", "classification", "rating_classifier"),
        ("ranking", "loss", "huber", "model.params.loss' must be one of"),
        ("ranking", "id_dropout", 1.5, "model.params.id_dropout' must be in"),
        ("ranking", "threshold", 3.0, "unknown config key 'model.params.threshold'"),
        ("rating_classifier", "threshold", "four", "model.params.threshold' must be float"),
        ("tag_ranking", "head_layers", [0], "model.params.head_layers' must hold positive"),
        ("multitask", "score", "both", "model.params.score' must be one of"),
        ("dnn_multi_embedding", "joint_dim", 0, "model.params.joint_dim' must be >= 1"),
        ("sequence", "mode", "lstm", "model.params.mode' must be one of"),
        ("sequence", "num_heads", 0, "model.params.num_heads' is too small"),
    ],
)
def test_bad_params_are_one_line_config_errors(name, key, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        build_model(load_config(None, {"model.name": name, f"model.params.{key}": value}))
    assert "\n" not in str(err.value)


def test_default_params_are_unchanged():
    """The shipped defaults (the published figures were measured with them)."""
    from tfrs_movies.models.registry import get_model_class

    assert get_model_class("ranking").param_fields() == {
        "head": "concat", "loss": "mse", "biases": True, "head_layers": [64, 32], "output_l2": 0.0,
        "id_dropout": 0.0,
    }  # fmt: skip
    assert get_model_class("rating_classifier").param_fields() == {
        "biases": True, "head_layers": [64, 32], "threshold": 4.0, "output_l2": 0.0, "id_dropout": 0.0,
    }  # fmt: skip
    assert get_model_class("tag_ranking").param_fields() == {
        "biases": True, "head_layers": [64, 32], "output_l2": 0.0, "id_dropout": 0.0, "loss": "mse",
    }  # fmt: skip
    assert get_model_class("multitask").param_fields() == {
        "retrieval_weight": 1.0, "rating_weight": 1.0, "head_layers": [64, 32], "biases": True,
        "score": "retrieval", "id_dropout": 0.0,
    }  # fmt: skip
    assert get_model_class("dnn_multi_embedding").param_fields() == {
        "joint_dim": 64, "head_layers": [64], "gamma": 1.0, "margin": 0.0, "threshold": 4.0,
        "id_dropout": 0.0,
    }  # fmt: skip
    assert get_model_class("retrieval").param_fields() == {
        "full_softmax": False, "uniform_negatives": 0, "hard_negatives": 0,
    }  # fmt: skip
    assert get_model_class("sequence").param_fields() == {
        "mode": "causal", "window_length": 4, "window_step": 2, "heads": "both", "num_heads": 2,
        "num_blocks": 2, "dropout": 0.2, "use_ratings": True, "query_layers": [],
        "rating_layers": [256, 128], "head_dropout": 0.1, "head_batch_norm": True,
        "retrieval_weight": 1.0, "rating_weight": 1.0, "repeat": 1, "pair_epochs": 0,
        "pairs_per_movie": 10,
    }  # fmt: skip


def test_no_pickle_in_the_tfrs_models():
    import tfrs_movies

    root = Path(tfrs_movies.__file__).parent
    files = ["models/retrieval.py", "models/ranking.py", "models/multitask.py", "models/sequence.py",
             "models/sequence_net.py", "models/attention.py", "models/towers.py",
             "serving/ranking_export.py", "serving/sequence.py", "features/sequences.py"]  # fmt: skip
    for name in files:
        assert "pickle" not in (root / name).read_text(encoding="utf-8"), name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ranking_concat", "ranking_cosine", "sequence_rating"])
def test_scorers_trace_with_any_batch_and_survive_a_savedmodel(case, fitted, tmp_path):
    """The export saves scorers with a batch of unknown size (the concat head's and the rating-only
    sequence model's per-user loops)."""
    model = fitted(case)
    scorer = model.serving_parts().scorer
    module = tf.Module()
    module.scorer = scorer
    module.serve = tf.function(scorer.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "scorer"))
    restored = tf.saved_model.load(str(tmp_path / "scorer"))
    users = model.users[:7]
    np.testing.assert_allclose(restored.serve(_ids(users)).numpy(), model.score(users), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, output, transform",
    [
        ("ranking_cosine", "rating", "user_normalizer"),
        ("rating_classifier", "probability", "sigmoid"),
        ("dnn_multi_embedding", "probability", "sigmoid"),
        ("multitask_retrieval", "rating", "identity"),
    ],
)
def test_ranking_writer_saves_the_ranking_savedmodel(case, output, transform, fitted, world, tmp_path):
    _, split = world
    model = fitted(case)
    entry = model.serving_parts().ranking(tmp_path)
    assert entry["output"] == output and entry["transform"] == transform
    assert (tmp_path / "saved_model.pb").is_file() and (tmp_path / "ranking.json").is_file()
    loaded = tf.saved_model.load(str(tmp_path))
    assert set(loaded.signatures) == {"serving_default", "from_features"}
    pairs = split.test.head(40)
    out = loaded.signatures["serving_default"](
        user_id=_ids(pairs[S.USER_ID]), movie_id=_ids(pairs[S.MOVIE_ID])
    )
    np.testing.assert_allclose(
        out[output].numpy(), model.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        atol=1e-4,
    )  # fmt: skip


@pytest.mark.slow
def test_sequence_extras_write_explain_and_pair(fitted, tmp_path):
    model = fitted("sequence")
    extras = model.serving_parts().extras
    entries = {name: write(tmp_path / name) for name, write in extras.items()}
    assert entries["explain"]["path"] == "explain" and entries["pair"]["path"] == "pair"
    users, movies = model.users[:4], model.catalogue[:4]
    explain = tf.saved_model.load(str(tmp_path / "explain")).signatures["serving_default"]
    _, weights = model.explain(users, movies)
    got = explain(user_id=_ids(users), movie_id=_ids(movies))["weights"].numpy()
    np.testing.assert_allclose(got, weights, rtol=1e-4, atol=1e-6)
    pair = tf.saved_model.load(str(tmp_path / "pair")).signatures["serving_default"]
    rating = pair(user_a=_ids(users), user_b=_ids(users[::-1]), movie_id=_ids(movies))["rating"].numpy()
    np.testing.assert_allclose(rating, model.predict_pair(users, users[::-1], movies), rtol=1e-4, atol=1e-5)
