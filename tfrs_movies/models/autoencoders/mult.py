"""Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman and Jebara 2018, "Variational Autoencoders for
Collaborative Filtering"; reference code dawenl/vae_cf).

The network, for ``hidden = (600,)`` and ``latent = 200`` (the paper's ``[N -> 600 -> 200 -> 600 -> N]``):

    x = dropout(x_u / |x_u|_2)                   input (B, N), dropout rate ``input_dropout`` (0.5)
    e = tanh(x W1 + b1)                          (B, 600), one layer per ``hidden`` width
    VAE: [mu, log var] = e Wq + bq (B, 2 x 200);  z = mu + eps * exp(log var / 2) in training, mu otherwise
    DAE: z = tanh(e Wq + bq) (B, 200)
    h = tanh(z W2 + b2)                          (B, 600), ``hidden`` mirrored
    logits = h W + b                             (B, N)

Loss per batch of users: the multinomial negative log-likelihood ``-sum_i x_ui log softmax(logits)_i``
(the raw binary row, not the normalised one), averaged over the batch, plus for the VAE ``beta`` times
the Gaussian KL ``sum_d 0.5 (-log var + var + mu^2 - 1)``, and ``l2 / B * sum |W|^2`` over the weight
matrices (Liang's ``lam``: 0 for the VAE, 0.01 / batch for the DAE; ``l2: 0.01`` here is that).
``beta`` rises linearly from 0 to ``beta_max`` (0.2) over ``anneal_epochs`` epochs of updates (an epoch's
update count comes from the number of users and the batch, so the schedule means the same on any
dataset), then stays there; ``anneal_epochs: 0`` is ``beta_max`` from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import tensorflow as tf

from tfrs_movies.models.autoencoders.rows import (
    ROWS,
    AutoencoderParams,
    RowAutoencoderRecommender,
    RowNetwork,
    check_at_least,
    multinomial_nll,
    normalised_input,
)
from tfrs_movies.models.registry import register


def gaussian_kl(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: (B, d) each -> (B,)."""
    return tf.reduce_sum(0.5 * (-logvar + tf.exp(logvar) + tf.square(mu) - 1.0), axis=-1)


class MultNetwork(RowNetwork):
    """Mult-VAE (``variational``) or Mult-DAE; see the module docstring. Inputs: ``{ROWS: (B, N)}``."""

    def __init__(self, n_items: int, hidden: tuple[int, ...], latent: int, input_dropout: float,
                 variational: bool, beta_max: float = 0.0, anneal_steps: float = 0.0,
                 l2: float = 0.0) -> None:  # fmt: skip
        super().__init__(n_items)
        self.variational = variational
        self.dropout = tf.keras.layers.Dropout(input_dropout)
        self.encoder_layers = [tf.keras.layers.Dense(w, activation="tanh") for w in hidden]
        self.code = tf.keras.layers.Dense(2 * latent if variational else latent,
                                          activation=None if variational else "tanh")  # fmt: skip
        self.decoder_layers = [tf.keras.layers.Dense(w, activation="tanh") for w in reversed(hidden)]
        self.beta_max = float(beta_max)
        self.anneal_steps = float(anneal_steps)
        self.l2 = float(l2)
        self.kl_tracker = tf.keras.metrics.Mean(name="kl")

    @property
    def metrics(self) -> list[tf.keras.metrics.Metric]:
        return [self.loss_tracker, self.kl_tracker]

    def encode(self, rows: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(B, N) rows -> ``(mu, log var)`` (B, latent) each for the VAE, ``(code, None)`` for the DAE."""
        x = self.dropout(normalised_input(rows), training=training)
        for layer in self.encoder_layers:
            x = layer(x)
        code = self.code(x)
        if not self.variational:
            return code, None
        mu, logvar = tf.split(code, 2, axis=-1)
        return mu, logvar

    def decode_hidden(self, z: tf.Tensor) -> tf.Tensor:
        """(B, latent) -> (B, d): the decoder up to its linear output layer."""
        for layer in self.decoder_layers:
            z = layer(z)
        return z

    def represent(self, rows: tf.Tensor) -> tf.Tensor:
        return self.decode_hidden(self.encode(rows)[0])

    def beta(self) -> tf.Tensor:
        """The KL weight at the current update: ``beta_max * min(1, step / anneal_steps)``."""
        if self.anneal_steps <= 0:
            return tf.constant(self.beta_max)
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return self.beta_max * tf.minimum(1.0, step / self.anneal_steps)

    def loss_terms(self, rows: tf.Tensor, training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
        """``(nll, kl)``, each the batch mean (scalars); the DAE's ``kl`` is 0."""
        mu, logvar = self.encode(rows, training=training)
        if self.variational:
            z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu)) if training else mu
            kl = tf.reduce_mean(gaussian_kl(mu, logvar))
        else:
            z, kl = mu, tf.constant(0.0)
        logits = self.output_layer(self.decode_hidden(z))
        return tf.reduce_mean(multinomial_nll(logits, rows)), kl

    def penalty(self) -> tf.Tensor:
        """``sum |W|^2`` over the weight matrices (biases left out)."""
        layers = [*self.encoder_layers, self.code, *self.decoder_layers, self.output_layer]
        return tf.add_n([tf.reduce_sum(tf.square(layer.kernel)) for layer in layers])

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = batch[ROWS]
        beta = self.beta()
        with tf.GradientTape() as tape:
            nll, kl = self.loss_terms(rows, training=True)
            loss = nll + beta * kl
            if self.l2 > 0:
                loss += self.l2 / tf.cast(tf.shape(rows)[0], tf.float32) * self.penalty()
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables),
                                           self.trainable_variables, strict=True))  # fmt: skip
        self.loss_tracker.update_state(loss)
        self.kl_tracker.update_state(kl)
        return {"loss": self.loss_tracker.result(), "kl": self.kl_tracker.result(), "beta": beta}


class MultRecommender(RowAutoencoderRecommender):
    """What Mult-VAE and Mult-DAE share; ``variational`` says which network."""

    variational: ClassVar[bool] = True
    contract_params: ClassVar[dict[str, Any]] = {"hidden": [16], "latent": 8}

    def _network_settings(self) -> dict[str, float]:
        """The loss settings beyond the layers (KL schedule, weight decay)."""
        return {"l2": self.params.l2}

    def _build_network(self) -> MultNetwork:
        p = self.params
        network = MultNetwork(len(self.catalogue), tuple(p.hidden), p.latent, p.input_dropout,
                              self.variational, **self._network_settings())  # fmt: skip
        network.compile(optimizer=self._optimizer())
        network(tf.zeros([1, len(self.catalogue)]))
        return network


@register
class MultVAERecommender(MultRecommender):
    """Mult-VAE (``mult_vae``); see the module docstring."""

    name = "mult_vae"

    @dataclass(frozen=True)
    class Params(AutoencoderParams):
        hidden: tuple[int, ...] = (600,)
        beta_max: float = 0.2
        anneal_epochs: float = 20.0
        l2: float = 0.0

        def validate(self) -> None:
            super().validate()
            check_widths(self.hidden)
            check_at_least(self, 0, "beta_max", "anneal_epochs", "l2")

    def _network_settings(self) -> dict[str, float]:
        p = self.params
        steps = p.anneal_epochs * self.steps_per_epoch()
        return {"beta_max": p.beta_max, "anneal_steps": steps, "l2": p.l2}


@register
class MultDAERecommender(MultRecommender):
    """Mult-DAE (``mult_dae``): the same network with a deterministic tanh code and no KL term."""

    name = "mult_dae"
    variational: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params(AutoencoderParams):
        hidden: tuple[int, ...] = (600,)
        l2: float = 0.01

        def validate(self) -> None:
            super().validate()
            check_widths(self.hidden)
            check_at_least(self, 0, "l2")


def check_widths(hidden: tuple[int, ...]) -> None:
    """ValueError naming ``model.params.hidden`` unless every width is at least 1."""
    if any(width < 1 for width in hidden):
        raise ValueError(f"config key 'model.params.hidden' must hold widths >= 1, got {list(hidden)!r}")
