"""Mult-VAE, Mult-DAE and RecVAE (tfrs_movies.models.autoencoders): smoke fits on tiny data, the fold-in
of a user given only a watched list, and one property of each model checked by hand.

Tests that fit (3 to 10 s each on the 2-core machine, most of it tracing) are slow-marked; the contract
suite fits each model in the fast lane.

The contract suite (tests/models/test_contract.py) covers save/load, the serving parts and the export
(brute force and ScaNN) for each of them, as for every registered model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from scipy.stats import norm

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.autoencoders.mult import gaussian_kl
from tfrs_movies.models.autoencoders.recvae import DECODER_PHASE, SYNC_PRIOR, composite_kl, composite_prior
from tfrs_movies.models.autoencoders.rows import ROWS
from tfrs_movies.models.registry import build_model

SMALL = {
    "mult_vae": {"model.params.hidden": [16], "model.params.latent": 8},
    "mult_dae": {"model.params.hidden": [16], "model.params.latent": 8},
    "recvae": {"model.params.hidden": 16, "model.params.latent": 8, "model.params.depth": 2},
}


def small_config(name: str, **overrides) -> dict:
    settings = {"model.name": name, "train.epochs": 2, "train.verbose": 0, "train.optimizer": "adam",
                "train.learning_rate": 0.003, "train.early_stopping.metric": "ndcg@10",
                "model.params.epoch_batches": 4, "export.enabled": False}  # fmt: skip
    settings.update(SMALL[name])
    settings.update(overrides)
    return load_config(None, settings)


@pytest.fixture(scope="module")
def fitted(tiny_world, tiny_split, lazily_fitted):
    return lazily_fitted(tiny_world.dataset, tiny_split, small_config)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mult_vae", "mult_dae", "recvae"])
def test_fits_on_tiny_data_and_scores_every_movie(name, fitted):
    model = fitted(name)
    assert np.isfinite(model.history["loss"]).all() and len(model.history["loss"]) == 2
    scores = model.score(model.users[:7])
    assert scores.shape == (7, len(model.catalogue)) and np.isfinite(scores).all()
    parts = model.serving_parts()
    assert parts.is_dot and parts.approximate_index  # brute force and ScaNN
    assert parts.candidates.shape == (len(model.catalogue), model.movie_embeddings().shape[1] + 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mult_vae", "mult_dae", "recvae"])
def test_fold_in_scores_a_user_given_only_a_watched_list(name, fitted, tiny_split):
    """A watched list is scored like a known user with that row; unknown ids are ignored; an empty list
    gets the empty-row (popularity-like) scores an unknown user gets."""
    model = fitted(name)
    user = model.users[3]
    watched = model.catalogue[model.seen[3].indices]
    folded = model.score_histories([list(watched), [*watched, 10**9], []])
    np.testing.assert_allclose(folded[0], model.score([user])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(folded[1], folded[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(folded[2], model.score([10**9])[0], rtol=1e-6, atol=1e-6)
    # The validation ratings folded into the seen table change the user's scores without retraining.
    before = model.score([user])
    model.update_seen(pd.concat([tiny_split.train, tiny_split.valid]))
    try:
        after = model.score([user])
        grown = model.catalogue[model.seen[3].indices]
        np.testing.assert_allclose(after[0], model.score_histories([list(grown)])[0], rtol=1e-5, atol=1e-5)
        assert len(grown) == len(watched) or not np.allclose(before, after)
    finally:
        model.update_seen(tiny_split.train)


@pytest.mark.slow
def test_batch_of_users_scales_with_the_data(fitted):
    model = fitted("mult_vae")
    users = len(model.users)
    assert model.batch_users() == math.ceil(users / 4)  # epoch_batches 4, below train.batch_size
    assert model.steps_per_epoch() == 4
    big = small_config("mult_vae", **{"model.params.epoch_batches": 1, "train.batch_size": 32})
    capped = build_model(big)
    capped.seen = model.seen
    assert capped.batch_users() == 32


def test_mult_vae_kl_by_hand():
    mu = np.array([[0.5, -1.0]], np.float32)
    logvar = np.array([[0.2, -0.3]], np.float32)
    by_hand = 0.5 * np.sum(-logvar + np.exp(logvar) + mu**2 - 1)
    assert gaussian_kl(tf.constant(mu), tf.constant(logvar)).numpy()[0] == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.slow
def test_mult_vae_kl_weight_is_annealed_over_epochs_of_updates(fitted):
    network = fitted("mult_vae").model
    steps_done = int(network.optimizer.iterations.numpy())
    expected = 0.2 * min(1.0, steps_done / network.anneal_steps)
    assert network.beta().numpy() == pytest.approx(expected, rel=1e-6)
    assert network.anneal_steps == 20.0 * 4  # anneal_epochs x steps per epoch


@pytest.mark.slow
def test_mult_dae_has_no_kl_and_a_deterministic_code(fitted):
    network = fitted("mult_dae").model
    rows = tf.constant(fitted("mult_dae").seen[:5].toarray())
    nll, kl = network.loss_terms(rows, training=True)
    assert float(kl) == 0.0 and np.isfinite(float(nll))
    assert fitted("mult_dae").history["kl"] == [0.0, 0.0]
    nll_eval, _ = network.loss_terms(rows, training=False)
    by_hand = -np.mean(np.sum(tf.nn.log_softmax(network.scores(rows)).numpy() * rows.numpy(), axis=1))
    assert float(nll_eval) == pytest.approx(by_hand, rel=1e-5)


def test_recvae_composite_prior_kl_by_hand():
    """The mixture 3/20 N(0, 1) + 3/4 N(old_mu, e^old_logvar) + 1/10 N(0, e^10), per dimension."""
    z = np.array([[0.3, -1.2]], np.float32)
    mu, logvar = np.array([[0.1, -1.0]], np.float32), np.array([[-0.5, 0.4]], np.float32)
    old_mu, old_logvar = np.array([[0.0, -0.8]], np.float32), np.array([[0.1, -0.2]], np.float32)
    weights = (0.15, 0.75, 0.1)
    prior = np.log(
        weights[0] * norm.pdf(z, 0, 1)
        + weights[1] * norm.pdf(z, old_mu, np.exp(old_logvar / 2))
        + weights[2] * norm.pdf(z, 0, np.exp(10 / 2))
    )
    posterior = norm.logpdf(z, mu, np.exp(logvar / 2))
    got_prior = composite_prior(*map(tf.constant, (z, old_mu, old_logvar)), weights, 10.0).numpy()
    np.testing.assert_allclose(got_prior, prior, rtol=1e-5)
    got = composite_kl(*map(tf.constant, (z, mu, logvar, old_mu, old_logvar)), weights, 10.0).numpy()
    assert got[0] == pytest.approx(float(np.sum(posterior - prior)), rel=1e-5)


@pytest.mark.slow
def test_recvae_alternates_encoder_and_decoder_updates_with_a_user_specific_beta(fitted):
    model = fitted("recvae")
    network = model.model
    # Every epoch ends with decoder passes, which leave the encoder as the prior's copy took it.
    for old, new in zip(network.old_encoder.weights, network.encoder.weights, strict=True):
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    rows = tf.constant(model.seen[:6].toarray())
    np.testing.assert_allclose(network.kl_weights(rows).numpy(), 0.005 * model.seen[:6].sum(1).A.ravel())

    def moved(before: list[np.ndarray], layer: tf.keras.layers.Layer) -> bool:
        return any(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.weights, strict=True))

    def one_step(decoder_phase: bool) -> tuple[bool, bool]:
        encoder = [w.numpy() for w in network.encoder.weights]
        decoder = [w.numpy() for w in network.output_layer.weights]
        batch = {ROWS: rows, DECODER_PHASE: tf.constant(decoder_phase), SYNC_PRIOR: tf.constant(False)}
        network.train_step(batch)
        return moved(encoder, network.encoder), moved(decoder, network.output_layer)

    saved = network.get_weights()
    try:
        assert one_step(decoder_phase=True) == (False, True)
        assert one_step(decoder_phase=False) == (True, False)
    finally:
        network.set_weights(saved)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [("mult_vae", "hidden", [0]), ("mult_vae", "beta_max", -0.1), ("mult_dae", "input_dropout", 1.0),
     ("recvae", "mixture", [0.5, 0.5, 0.5]), ("recvae", "depth", 0), ("recvae", "latent", 0)],
)  # fmt: skip
def test_settings_out_of_range_are_one_line_errors(name, key, value):
    with pytest.raises(ConfigError, match=f"model.params.{key}") as caught:
        build_model(load_config(None, {"model.name": name, f"model.params.{key}": value}))
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_refit_trains_afresh_on_train_and_validation_for_the_best_epoch_count(
    tiny_world, tiny_split, tmp_path
):
    config = small_config("mult_dae", **{"model.params.refit": True, "train.epochs": 3})
    # With a run directory (checkpoints), as the runner fits it: the refit still trains.
    model = build_model(config).fit(tiny_split.train, tiny_world.dataset, tiny_split.valid, run_dir=tmp_path)
    assert len(model.history["refit_loss"]) == model.history["best_epoch"][0]
    assert not any(key.startswith("refit_val_") for key in model.history)  # no validation to stop on
    single = build_model(small_config("mult_dae", **{"train.epochs": 3}))
    single.fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert not np.allclose(model.score(model.users[:5]), single.score(model.users[:5]))
