"""The contract every registered model honours, run on tiny generated data.

A new model gets every test here by registering itself: fitting, ranges, seen-movie exclusion, the
cold start, save -> load without pickle, its serving parts, the SavedModel export served from a fresh
process, and determinism under one seed. A model slow at its defaults declares smaller settings in
``contract_params``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.payloads import PicklePayload
from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import build_model, get_model_class, model_names
from tfrs_movies.models.state import ARRAYS_FILE, MODEL_FILE, ModelFormatError

NAMES = model_names()
USERS = 8  # users compared per model between the in-memory model and its export


def contract_config(name: str, seed: int = 42) -> dict:
    overrides = {"model.name": name, "train.epochs": 3, "train.verbose": 0, "train.batch_size": 256,
                 "seed": seed, "export.enabled": False}  # fmt: skip
    overrides.update({f"model.params.{k}": v for k, v in get_model_class(name).contract_params.items()})
    return load_config(None, overrides)


@pytest.fixture(scope="module")
def world_split(tiny_world, tiny_split):
    return tiny_world.dataset, tiny_split


@pytest.fixture(scope="module")
def fitted(world_split, lazily_fitted):
    """Each model fitted once (lazily) and shared by the tests below."""
    return lazily_fitted(*world_split, contract_config)


def assert_same_top(ids_a, scores_a, ids_b, scores_b, tol: float = 1e-4) -> None:
    """Same top list: the same scores up to a per-user constant, and the same movie at every rank whose
    score is not tied (within ``tol``) with a neighbour's."""
    scores_a, scores_b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    scale = max(1.0, float(np.abs(scores_a).max()))
    np.testing.assert_allclose(scores_a - scores_a[0], scores_b - scores_b[0], atol=tol * scale)
    gaps = np.abs(np.diff(scores_a))
    tied = np.zeros(len(scores_a), bool)
    tied[:-1] |= gaps <= tol * scale
    tied[1:] |= gaps <= tol * scale
    tied[-1] = True  # the last rank may tie with the first movie left out
    np.testing.assert_array_equal(np.asarray(ids_a)[~tied], np.asarray(ids_b)[~tied])


@pytest.mark.parametrize("name", NAMES)
def test_loss_goes_down(name, fitted):
    model = fitted(name)
    loss = model.history.get("loss")
    if not loss:
        pytest.skip(f"{name} is not trained by gradient steps")
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("name", NAMES)
def test_predictions_stay_in_range(name, fitted, world_split):
    model = fitted(name)
    _, split = world_split
    predicted = model.predict(split.test[S.USER_ID].to_numpy(), split.test[S.MOVIE_ID].to_numpy())
    assert predicted.shape == (len(split.test),)
    assert np.isfinite(predicted).all()
    if model.predicts_ratings:
        low, high = model.rating_scale
        assert predicted.min() >= low and predicted.max() <= high


@pytest.mark.parametrize("name", NAMES)
def test_recommendations_exclude_seen_movies(name, fitted):
    model = fitted(name)
    users = model.users[:20]
    top, scores = model.recommend(users, k=10)
    assert top.shape == (20, 10)
    seen = model.seen_mask(users)
    for row, user_top in enumerate(top):
        seen_ids = set(model.catalogue[seen[row].indices])
        assert not seen_ids & set(user_top)
        assert len(set(user_top)) == 10
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("name", NAMES)
def test_unknown_users_and_similar_movies_never_crash(name, fitted):
    model = fitted(name)
    top, _ = model.recommend(np.array([10**9]), k=5)
    assert top.shape == (1, 5)
    movie = model.catalogue[0]
    similar, _ = model.similar_movies(np.array([movie]), k=5)
    assert similar.shape == (1, 5) and movie not in similar[0]


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_the_same_outputs_without_pickle(name, fitted, world_split, tmp_path):
    model = fitted(name)
    _, split = world_split
    model.save(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted([MODEL_FILE, ARRAYS_FILE])
    loaded = Recommender.load(tmp_path / name)
    assert type(loaded) is type(model)
    users = model.users[:10]
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    pairs = split.test.head(50)
    np.testing.assert_allclose(
        loaded.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        model.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(loaded.recommend(users, 5)[0], model.recommend(users, 5)[0])


@pytest.mark.parametrize("name", NAMES)
def test_serving_parts_rank_like_the_model(name, fitted):
    import tensorflow as tf

    model = fitted(name)
    users = model.users[:USERS]
    scores = model.score(users)
    served = model.serving_parts().catalogue_scorer()(tf.constant([str(u) for u in users])).numpy()
    assert served.shape == scores.shape
    for row in range(len(users)):
        top = np.argsort(-scores[row], kind="stable")[:10]
        mine = np.argsort(-served[row], kind="stable")[:10]
        assert_same_top(top, scores[row, top], mine, served[row, mine])


@pytest.mark.parametrize("name", NAMES)
def test_params_are_typed_and_checked(name):
    cls = get_model_class(name)
    with pytest.raises(ConfigError, match="model.params.no_such_key"):
        build_model(load_config(None, {"model.name": name, "model.params.no_such_key": 1}))
    for key, default in cls.param_fields().items():
        if isinstance(default, (bool, int, float)) and not isinstance(default, bool):
            with pytest.raises(ConfigError, match=f"model.params.{key}") as caught:
                build_model(load_config(None, {"model.name": name, f"model.params.{key}": "not a number"}))
            assert "\n" not in str(caught.value)
            break


def test_other_format_versions_are_refused_with_one_line(fitted, tmp_path):
    path = fitted("popularity").save(tmp_path / "model")
    meta = json.loads((path / MODEL_FILE).read_text())
    (path / MODEL_FILE).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ModelFormatError, match="format 99; this release reads format") as caught:
        Recommender.load(path)
    assert "\n" not in str(caught.value)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model.yaml").write_text("name: ease\n")
    (legacy / "state.pkl").write_bytes(b"not unpickled")
    with pytest.raises(ModelFormatError, match="format 1"):
        Recommender.load(legacy)


def test_loading_never_unpickles(fitted, tmp_path):
    """An arrays file holding a pickled object is refused, not executed."""
    path = fitted("popularity").save(tmp_path / "model")
    marker = tmp_path / "pwned"
    np.savez(path / ARRAYS_FILE, a0=np.array([PicklePayload(marker)], dtype=object))
    with pytest.raises(ModelFormatError):
        Recommender.load(path)
    assert not marker.exists()


# ----- export: every model serves its top-N from SavedModels ---------------------------------------
@pytest.fixture(scope="module")
def exports(fitted, tmp_path_factory):
    """Every model exported, and each export's top-10 for a few users answered by a fresh process."""
    from tfrs_movies.serving.export import export_model

    root = tmp_path_factory.mktemp("exports")
    for name in NAMES:
        export_model(fitted(name), None, root / name, k_max=20)
    users = {name: [int(u) for u in fitted(name).users[:USERS]] for name in NAMES}
    script = textwrap.dedent(
        """
        import json, sys
        from tfrs_movies.serving import load_export
        root, users = sys.argv[1], json.loads(sys.argv[2])
        out = {}
        for name, ids in users.items():
            served = load_export(f"{root}/{name}")
            out[name] = {"indexes": served.indexes, "top": [
                [served.recommend(u, 10, index="brute_force", rerank=False).frame[c].tolist()
                 for c in ("movie_id", "score")] for u in ids]}
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), json.dumps(users)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root, users, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_export_serves_the_same_top10_in_a_fresh_process(name, fitted, exports):
    model = fitted(name)
    root, users, answers = exports
    top, scores = model.recommend(np.asarray(users[name]), k=10)  # seen movies excluded, as served
    for row, (ids, served_scores) in enumerate(answers[name]["top"]):
        assert_same_top(top[row], scores[row], ids, served_scores)
    assert "brute_force" in answers[name]["indexes"]
    card = (root / name / "MODEL_CARD.md").read_text()  # every export says what it is and how to load it
    assert card.startswith(f"# Model card: `{name}`")
    assert f"tfrs-movies recommend --model {root / name}" in card


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_the_same_model(name, fitted, world_split):
    dataset, split = world_split
    again = build_model(contract_config(name))
    again.fit(split.train, dataset, split.valid)
    users = again.users[:10]
    np.testing.assert_allclose(again.score(users), fitted(name).score(users), rtol=1e-4, atol=1e-5)
