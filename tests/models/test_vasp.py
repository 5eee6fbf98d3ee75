"""VASP (tfrs_movies.models.autoencoders.vasp): the focal loss and the shallow path checked by hand, a
smoke fit on tiny data with the fold-in, and one-line errors for out-of-range settings.

The contract suite (tests/models/test_contract.py) covers save/load, the serving parts (scorer form) and
the export for it, as for every registered model.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.autoencoders.vasp import ShallowPath, focal_loss
from tfrs_movies.models.registry import build_model


def small_config(**overrides) -> dict:
    settings = {"model.name": "vasp", "train.epochs": 2, "train.verbose": 0, "train.optimizer": "adam",
                "train.learning_rate": 0.003, "train.early_stopping.metric": "ndcg@10",
                "model.params.epoch_batches": 4, "model.params.hidden": 16, "model.params.latent": 8,
                "model.params.depth": 2, "export.enabled": False}  # fmt: skip
    settings.update(overrides)
    return load_config(None, settings)


def test_focal_loss_by_hand():
    p = np.array([[0.9, 0.2, 0.6]], np.float32)
    rows = np.array([[1.0, 0.0, 1.0]], np.float32)
    alpha, gamma = 0.25, 2.0
    by_hand = -np.sum(
        alpha * rows * (1 - p) ** gamma * np.log(p) + (1 - alpha) * (1 - rows) * p**gamma * np.log(1 - p)
    )
    got = focal_loss(tf.constant(np.log(p)), tf.constant(rows), alpha, gamma).numpy()
    assert got[0] == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("rank", [0, 3])
def test_shallow_path_never_passes_a_movie_to_itself(rank):
    """Logits are ``x S`` with S's diagonal zero, dense or low rank: a movie's own input never moves its
    logit, and the other inputs do, through S."""
    layer = ShallowPath(6, rank)
    layer(tf.zeros([1, 6]))
    for weight in layer.weights:
        weight.assign(tf.random.normal(weight.shape, seed=1))
    full = layer.left.numpy() @ layer.right.numpy().T if rank else layer.kernel.numpy()
    np.fill_diagonal(full, 0.0)
    rows = np.eye(6, dtype=np.float32)[[0, 2]] + np.eye(6, dtype=np.float32)[[3, 3]]
    np.testing.assert_allclose(layer(tf.constant(rows)).numpy(), rows @ full, rtol=1e-5, atol=1e-5)
    alone = layer(tf.constant(np.eye(6, dtype=np.float32))).numpy()
    np.testing.assert_allclose(np.diag(alone), 0.0, atol=1e-6)


@pytest.mark.slow
def test_fits_on_tiny_data_scores_every_movie_and_folds_in(tiny_world, tiny_split):
    model = build_model(small_config()).fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert np.isfinite(model.history["loss"]).all() and len(model.history["loss"]) == 2
    assert model.model.shallow.rank == 0  # 150 movies: the dense item-item matrix
    scores = model.score(model.users[:7])
    assert scores.shape == (7, len(model.catalogue)) and np.isfinite(scores).all()
    assert (scores < 0).all()  # log p, the log of a product of two sigmoids
    assert not model.serving_parts().is_dot  # scorer form
    watched = model.catalogue[model.seen[3].indices]
    folded = model.score_histories([list(watched), []])
    np.testing.assert_allclose(folded[0], model.score([model.users[3]])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(folded[1], model.score([10**9])[0], rtol=1e-6, atol=1e-6)
    # Above max_dense_items the shallow path is low rank (its size grows with N, not N^2).
    small = build_model(small_config(**{"model.params.max_dense_items": 100, "model.params.shallow_rank": 4}))
    small.fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert small.model.shallow.rank == 4 and small.model.shallow.left.shape == (len(small.catalogue), 4)


@pytest.mark.parametrize(
    ("key", "value"),
    [("focal_alpha", 1.0), ("focal_gamma", -1.0), ("shallow_l2", -0.1), ("shallow_rank", 0), ("depth", 0)],
)
def test_settings_out_of_range_are_one_line_errors(key, value):
    with pytest.raises(ConfigError, match=f"model.params.{key}") as caught:
        build_model(load_config(None, {"model.name": "vasp", f"model.params.{key}": value}))
    assert "\n" not in str(caught.value)
