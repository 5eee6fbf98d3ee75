"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh and Nikolenko 2020, "RecVAE: a New Variational
Autoencoder for Top-N Recommendations with Implicit Feedback"; reference code ilya-shenbin/RecVAE).

Encoder (rows (B, N) -> ``mu``, ``log var`` (B, latent)): the L2-normalised row, input dropout, then
``depth`` (5) dense layers of ``hidden`` (600) units with swish and layer norm (epsilon 0.1), each fed the
previous layer's output plus the sum of every earlier layer's (dense connections):

    h_1 = LN(swish(x W_1 + b_1)),   h_k = LN(swish(h_(k-1) W_k + b_k + h_1 + ... + h_(k-1)))

and two linear heads. Decoder: one linear layer ``logits = z W + b`` (B, N); at inference ``z = mu``.

Loss per batch: the multinomial negative log-likelihood plus, per user, ``beta_u`` times a one-sample
estimate of ``KL(q(z|x) || p(z|x))`` summed over latent dimensions, where

- the composite prior is, per dimension, the mixture ``w_1 N(0, 1) + w_2 q_old(z|x) + w_3 N(0, e^10)``
  (weights 3/20, 3/4, 1/10), ``q_old`` being the encoder as it was after its last encoder phase (a frozen
  copy, no dropout);
- ``beta_u = gamma * |x_u|`` (the user's number of movies; gamma 0.005), or ``beta`` for every user when
  ``gamma`` is 0.

Alternating updates: one Keras epoch is ``encoder_epochs`` (3) passes over the users updating only the
encoder (input dropout on), the old encoder then set to the new one, and ``decoder_epochs`` (1) passes
updating only the decoder (no dropout), each with its own optimizer (``train.optimizer``). Early
stopping and its evaluation come after each such epoch, as in the authors' code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import scipy.sparse as sp
import tensorflow as tf

from tfrs_movies.models.autoencoders.rows import (
    ROWS,
    AutoencoderParams,
    RowAutoencoderRecommender,
    RowNetwork,
    check_above,
    check_at_least,
    multinomial_nll,
    normalised_input,
)
from tfrs_movies.models.registry import register

DECODER_PHASE = "decoder_phase"  # bool per batch: update the decoder (else the encoder)
SYNC_PRIOR = "sync_prior"  # bool per batch: copy the encoder into the prior's old encoder first


def log_normal(x: tf.Tensor, mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """Element-wise ``log N(x; mu, exp(logvar))`` (broadcast shapes)."""
    return -0.5 * (logvar + math.log(2.0 * math.pi) + tf.square(x - mu) / tf.exp(logvar))


def composite_prior(z: tf.Tensor, old_mu: tf.Tensor, old_logvar: tf.Tensor,
                    weights: tuple[float, float, float], wide_logvar: float) -> tf.Tensor:  # fmt: skip
    """Per-dimension log density of RecVAE's prior at ``z`` (B, d) -> (B, d): the mixture of N(0, 1),
    the old encoder's posterior N(old_mu, exp(old_logvar)) and the wide N(0, exp(wide_logvar))."""
    zeros = tf.zeros_like(z)
    parts = [
        log_normal(z, zeros, zeros) + math.log(weights[0]),
        log_normal(z, old_mu, old_logvar) + math.log(weights[1]),
        log_normal(z, zeros, zeros + wide_logvar) + math.log(weights[2]),
    ]
    return tf.reduce_logsumexp(tf.stack(parts, axis=-1), axis=-1)


def composite_kl(z: tf.Tensor, mu: tf.Tensor, logvar: tf.Tensor, old_mu: tf.Tensor, old_logvar: tf.Tensor,
                 weights: tuple[float, float, float], wide_logvar: float) -> tf.Tensor:  # fmt: skip
    """One-sample ``log q(z|x) - log p(z|x)`` summed over dimensions: (B, d) each -> (B,)."""
    prior = composite_prior(z, old_mu, old_logvar, weights, wide_logvar)
    return tf.reduce_sum(log_normal(z, mu, logvar) - prior, axis=-1)


class RecVAEEncoder(tf.keras.layers.Layer):
    """Rows (B, N) -> ``(mu, logvar)`` (B, latent) each; see the module docstring."""

    def __init__(self, hidden: int, latent: int, depth: int, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = [tf.keras.layers.Dense(hidden) for _ in range(depth)]
        self.norms = [tf.keras.layers.LayerNormalization(epsilon=epsilon) for _ in range(depth)]
        self.mu = tf.keras.layers.Dense(latent)
        self.logvar = tf.keras.layers.Dense(latent)

    def call(self, rows: tf.Tensor, dropout_rate: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
        x = normalised_input(rows)
        if dropout_rate > 0:
            x = tf.nn.dropout(x, rate=dropout_rate)
        previous, total = x, None
        for dense, norm in zip(self.dense, self.norms, strict=True):
            pre = dense(previous) if total is None else dense(previous) + total
            previous = norm(tf.nn.silu(pre))
            total = previous if total is None else total + previous
        return self.mu(previous), self.logvar(previous)


class RecVAENetwork(RowNetwork):
    """RecVAE; inputs ``{ROWS: (B, N), DECODER_PHASE: bool, SYNC_PRIOR: bool}`` per batch."""

    def __init__(self, n_items: int, hidden: int, latent: int, depth: int, input_dropout: float,
                 gamma: float, beta: float, mixture: tuple[float, float, float], wide_logvar: float,
                 epsilon: float) -> None:  # fmt: skip
        super().__init__(n_items)
        self.encoder = RecVAEEncoder(hidden, latent, depth, epsilon, name="encoder")
        self.old_encoder = RecVAEEncoder(hidden, latent, depth, epsilon, name="old_encoder", trainable=False)
        self.input_dropout = float(input_dropout)
        self.gamma = float(gamma)
        self.beta = float(beta)
        self.mixture = tuple(float(w) for w in mixture)
        self.wide_logvar = float(wide_logvar)
        self.kl_tracker = tf.keras.metrics.Mean(name="kl")
        # The decoder's own optimizer; the compiled one (``self.optimizer``) updates the encoder. Held in a
        # list so that Keras does not track its slots as the network's weights.
        self._decoder_optimizer: list[tf.keras.optimizers.Optimizer] = []

    @property
    def metrics(self) -> list[tf.keras.metrics.Metric]:
        return [self.loss_tracker, self.kl_tracker]

    @property
    def decoder_optimizer(self) -> tf.keras.optimizers.Optimizer:
        return self._decoder_optimizer[0]

    def set_decoder_optimizer(self, optimizer: tf.keras.optimizers.Optimizer) -> None:
        self._decoder_optimizer[:] = [optimizer]

    def represent(self, rows: tf.Tensor) -> tf.Tensor:
        return self.encoder(rows)[0]

    def sync_prior(self) -> tf.Tensor:
        """Set the prior's old encoder to the current encoder; returns True (for ``tf.cond``)."""
        for old, new in zip(self.old_encoder.weights, self.encoder.weights, strict=True):
            old.assign(new)
        return tf.constant(True)

    def kl_weights(self, rows: tf.Tensor) -> tf.Tensor:
        """(B,) per-user KL weights: ``gamma * |x_u|``, or ``beta`` when gamma is 0."""
        if self.gamma > 0:
            return self.gamma * tf.reduce_sum(rows, axis=-1)
        return tf.fill(tf.shape(rows)[:1], self.beta)

    def loss_terms(self, rows: tf.Tensor, dropout_rate: float) -> tuple[tf.Tensor, tf.Tensor]:
        """``(nll, weighted kl)``, batch means (scalars), with ``z`` sampled."""
        mu, logvar = self.encoder(rows, dropout_rate)
        z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu))
        nll = tf.reduce_mean(multinomial_nll(self.output_layer(z), rows))
        old_mu, old_logvar = self.old_encoder(rows)
        kl = composite_kl(z, mu, logvar, old_mu, old_logvar, self.mixture, self.wide_logvar)
        return nll, tf.reduce_mean(self.kl_weights(rows) * kl)

    def _step(self, rows: tf.Tensor, dropout_rate: float, variables: list[tf.Variable],
              optimizer: tf.keras.optimizers.Optimizer) -> tuple[tf.Tensor, tf.Tensor]:  # fmt: skip
        with tf.GradientTape() as tape:
            nll, kl = self.loss_terms(rows, dropout_rate)
            loss = nll + kl
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss, kl

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = batch[ROWS]
        tf.cond(batch[SYNC_PRIOR], self.sync_prior, lambda: tf.constant(False))
        loss, kl = tf.cond(
            batch[DECODER_PHASE],
            lambda: self._step(rows, 0.0, self.output_layer.trainable_variables, self.decoder_optimizer),
            lambda: self._step(rows, self.input_dropout, self.encoder.trainable_variables, self.optimizer),
        )
        self.loss_tracker.update_state(loss)
        self.kl_tracker.update_state(kl)
        return {"loss": self.loss_tracker.result(), "kl": self.kl_tracker.result()}


@register
class RecVAERecommender(RowAutoencoderRecommender):
    """RecVAE (``recvae``); see the module docstring."""

    name = "recvae"
    contract_params: ClassVar[dict[str, Any]] = {"hidden": 16, "latent": 8, "depth": 2, "epoch_batches": 2}

    @dataclass(frozen=True)
    class Params(AutoencoderParams):
        hidden: int = 600
        depth: int = 5
        gamma: float = 0.005
        beta: float = 0.2
        encoder_epochs: int = 3
        decoder_epochs: int = 1
        mixture: tuple[float, ...] = (0.15, 0.75, 0.1)
        wide_logvar: float = 10.0
        layer_norm_epsilon: float = 0.1

        def validate(self) -> None:
            super().validate()
            check_at_least(self, 1, "hidden", "depth", "encoder_epochs", "decoder_epochs")
            check_at_least(self, 0, "gamma", "beta")
            check_above(self, 0, "layer_norm_epsilon")
            if len(self.mixture) != 3 or min(self.mixture) <= 0 or abs(sum(self.mixture) - 1) > 1e-6:
                raise ValueError(
                    f"config key 'model.params.mixture' must be 3 positive weights summing to 1, "
                    f"got {list(self.mixture)!r}"
                )

    def _build_network(self) -> RecVAENetwork:
        p = self.params
        network = RecVAENetwork(len(self.catalogue), p.hidden, p.latent, p.depth, p.input_dropout, p.gamma,
                                p.beta, tuple(p.mixture), p.wide_logvar, p.layer_norm_epsilon)  # fmt: skip
        network.compile(optimizer=self._optimizer())
        network.set_decoder_optimizer(self._optimizer())
        network(tf.zeros([1, len(self.catalogue)]))
        network.old_encoder(tf.zeros([1, len(self.catalogue)]))
        network.sync_prior()
        # Both optimizers' slots exist before training: the phase is chosen in-graph (tf.cond).
        network.optimizer.build(network.encoder.trainable_variables)
        network.decoder_optimizer.build(network.output_layer.trainable_variables)
        return network

    def _batches(self, rows: sp.csr_matrix) -> tf.data.Dataset:
        """One Keras epoch: ``encoder_epochs`` then ``decoder_epochs`` shuffled passes over the users,
        each batch tagged with its phase; the first decoder batch also syncs the prior."""
        p = self.params
        steps = self.steps_per_epoch()
        switch = p.encoder_epochs * steps

        def tag(index: tf.Tensor, rows: tf.Tensor) -> dict[str, tf.Tensor]:
            return {ROWS: rows, DECODER_PHASE: index >= switch, SYNC_PRIOR: tf.equal(index, switch)}

        passes = self._user_batches(rows).repeat(p.encoder_epochs + p.decoder_epochs)
        return passes.enumerate().map(tag).prefetch(tf.data.AUTOTUNE)
