"""VASP (Vančura and Kordík 2021, "Deep Variational Autoencoder with Shallow Parallel Path for Top-N
Recommendation"; reference code in Keras by the authors): a variational autoencoder and a shallow linear
item-item path over the same input row, trained jointly, their sigmoid outputs multiplied.

For a user's binary row ``x`` (B, N) and, in training, a binary mask ``m`` that drops each seen movie
with probability ``input_dropout`` (the same mask for both paths):

    encoder:  mu, log var = RecVAE's dense encoder (swish, layer norm) of the masked row   (B, latent)
    deep:     a = z W + b,  z = mu + eps * exp(log var / 2) in training, mu otherwise    (B, N)
    shallow:  s = (x * m / (1 - input_dropout)) S,  S (N, N) with a zero diagonal           (B, N)
    output:   p = sigmoid(a) * sigmoid(s)                                                 (B, N)

``S`` is a dense (N, N) matrix while the catalogue has at most ``max_dense_items`` movies; above that it
is the low-rank ``U V^T`` (``shallow_rank`` columns each) less its diagonal, so the layer's size and
cost grow with N, not N^2 (the rank that fits is a question of memory, not of the data). The zero
diagonal keeps the path from copying a movie's input to its output (as EASE's constraint does).

Loss per batch of users: the focal loss (Lin et al. 2017) of ``p`` against the full row ``x`` (every
movie is a binary label: the masked-out movies are ones the network must recover), summed over movies,
averaged over users,

    FL = - alpha x (1 - p)^gamma log p - (1 - alpha) (1 - x) p^gamma log(1 - p)

(``focal_gamma`` 2, the authors'; ``focal_alpha`` 0.9, chosen on ML-100K u1 validation over the authors'
0.25, docs/BENCHMARKS.md "VASP"), plus ``beta`` times the Gaussian KL averaged over latent dimensions and
users (the authors' Keras ``add_loss``, weight 1), plus ``shallow_l2 / B`` times ``sum S^2`` (0 in the
reference, which relies on early stopping; 1 here, chosen on the same validation).

A movie's score is ``log p = log sigmoid(a) + log sigmoid(s)`` (the same ranking as ``p``, stable far from
0.5). Left out of the reference, to fit two CPU cores: its five-layer residual decoder (here the
decoder is the linear layer, as in the Mult-VAE that won on validation here) and the popularity-sampled
subset of movies for the shallow path (here the low-rank form above). Training, early stopping, the
refit, fold-in and persistence are :mod:`.rows`'; serving is the scorer form (the product of two
sigmoids is not a dot product), the user's seen row looked up in-graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import tensorflow as tf

from tfrs_movies.models.autoencoders.recvae import RecVAEEncoder
from tfrs_movies.models.autoencoders.rows import (
    ROWS,
    AutoencoderParams,
    RowAutoencoderRecommender,
    RowNetwork,
    check_above,
    check_at_least,
)
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import SeenRows, ServingParts


def focal_loss(log_p: tf.Tensor, rows: tf.Tensor, alpha: float, gamma: float) -> tf.Tensor:
    """Binary focal loss of probabilities ``exp(log_p)`` against binary ``rows``: (B, N) each -> (B,),
    summed over movies (module docstring)."""
    p = tf.exp(log_p)
    log_not_p = tf.math.log1p(-tf.minimum(p, 1.0 - 1e-6))
    positive = alpha * rows * tf.pow(1.0 - p, gamma) * log_p
    negative = (1.0 - alpha) * (1.0 - rows) * tf.pow(p, gamma) * log_not_p
    return -tf.reduce_sum(positive + negative, axis=-1)


def mean_gaussian_kl(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) averaged over latent dimensions and users: (B, d) -> scalar."""
    return tf.reduce_mean(0.5 * (-logvar + tf.exp(logvar) + tf.square(mu) - 1.0))


class ShallowPath(tf.keras.layers.Layer):
    """Rows (B, N) -> (B, N) logits ``x S`` with ``S``'s diagonal zero: a dense (N, N) ``S`` when
    ``rank`` is 0, else ``U V^T`` with ``U``, ``V`` (N, rank)."""

    def __init__(self, n_items: int, rank: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_items = n_items
        self.rank = rank
        if rank == 0:
            self.kernel = self.add_weight(name="kernel", shape=(n_items, n_items), initializer="zeros")
        else:
            # One initializer each: a shared unseeded one would draw the same values for both.
            self.left = self.add_weight(
                name="left",
                shape=(n_items, rank),
                initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
            )
            self.right = self.add_weight(
                name="right",
                shape=(n_items, rank),
                initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
            )

    def call(self, rows: tf.Tensor) -> tf.Tensor:
        if self.rank == 0:
            return tf.matmul(rows, tf.linalg.set_diag(self.kernel, tf.zeros([self.n_items])))
        diagonal = tf.reduce_sum(self.left * self.right, axis=1)
        return tf.matmul(tf.matmul(rows, self.left), self.right, transpose_b=True) - rows * diagonal

    def penalty(self) -> tf.Tensor:
        """``sum S^2`` (dense) or ``sum U^2 + sum V^2`` (low rank)."""
        if self.rank == 0:
            return tf.reduce_sum(tf.square(self.kernel))
        return tf.reduce_sum(tf.square(self.left)) + tf.reduce_sum(tf.square(self.right))


class VASPNetwork(RowNetwork):
    """VASP (module docstring); inputs ``{ROWS: (B, N)}`` per batch. ``represent`` is the code ``mu``
    the deep path's linear output layer reads; ``scores`` adds the shallow path."""

    def __init__(self, n_items: int, hidden: int, latent: int, depth: int, epsilon: float, rank: int,
                 input_dropout: float, beta: float, alpha: float, gamma: float,
                 shallow_l2: float) -> None:  # fmt: skip
        super().__init__(n_items)
        self.encoder = RecVAEEncoder(hidden, latent, depth, epsilon, name="encoder")
        self.shallow = ShallowPath(n_items, rank, name="shallow")
        self.input_dropout = float(input_dropout)
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.shallow_l2 = float(shallow_l2)
        self.kl_tracker = tf.keras.metrics.Mean(name="kl")

    @property
    def metrics(self) -> list[tf.keras.metrics.Metric]:
        return [self.loss_tracker, self.kl_tracker]

    def represent(self, rows: tf.Tensor) -> tf.Tensor:
        return self.encoder(rows)[0]

    def log_output(self, code: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """(B, latent) code and (B, N) shallow input -> (B, N) ``log p``."""
        return tf.math.log_sigmoid(self.output_layer(code)) + tf.math.log_sigmoid(self.shallow(rows))

    def scores(self, rows: tf.Tensor) -> tf.Tensor:
        return self.log_output(self.represent(rows), rows)

    def loss_terms(self, rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(focal, kl)``, batch means (scalars), with the input masked and ``z`` sampled."""
        keep = 1.0 - self.input_dropout
        dropped = rows * tf.cast(tf.random.uniform(tf.shape(rows)) < keep, rows.dtype)
        mu, logvar = self.encoder(dropped)
        z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu))
        log_p = self.log_output(z, dropped / keep)
        focal = tf.reduce_mean(focal_loss(log_p, rows, self.alpha, self.gamma))
        return focal, mean_gaussian_kl(mu, logvar)

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        rows = batch[ROWS]
        with tf.GradientTape() as tape:
            focal, kl = self.loss_terms(rows)
            loss = focal + self.beta * kl
            if self.shallow_l2 > 0:
                loss += self.shallow_l2 / tf.cast(tf.shape(rows)[0], tf.float32) * self.shallow.penalty()
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.kl_tracker.update_state(kl)
        return {"loss": self.loss_tracker.result(), "kl": self.kl_tracker.result()}


class RowScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: the user's seen row (:class:`SeenRows`, in-graph) through the
    network's ``scores``."""

    def __init__(self, rows: SeenRows, network: RowNetwork):
        super().__init__()
        self.rows = rows
        self.network = network

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        return self.network.scores(self.rows(user_id))


@register
class VASPRecommender(RowAutoencoderRecommender):
    """VASP (``vasp``); see the module docstring."""

    name = "vasp"
    contract_params: ClassVar[dict[str, Any]] = {"hidden": 16, "latent": 8, "depth": 2, "epoch_batches": 2}

    @dataclass(frozen=True)
    class Params(AutoencoderParams):
        hidden: int = 600
        depth: int = 3
        layer_norm_epsilon: float = 0.1
        beta: float = 1.0
        focal_alpha: float = 0.9
        focal_gamma: float = 2.0
        shallow_l2: float = 1.0
        max_dense_items: int = 4096
        shallow_rank: int = 512

        def validate(self) -> None:
            super().validate()
            check_at_least(self, 1, "hidden", "depth", "max_dense_items", "shallow_rank")
            check_at_least(self, 0, "beta", "focal_gamma", "shallow_l2")
            if not 0 < self.focal_alpha < 1:
                alpha = self.focal_alpha
                raise ValueError(f"config key 'model.params.focal_alpha' must be in (0, 1), got {alpha!r}")
            check_above(self, 0, "layer_norm_epsilon")

    def shallow_rank(self) -> int:
        """0 (a dense item-item matrix) up to ``max_dense_items`` movies, else ``params.shallow_rank``."""
        return 0 if len(self.catalogue) <= self.params.max_dense_items else self.params.shallow_rank

    def _build_network(self) -> VASPNetwork:
        p = self.params
        network = VASPNetwork(len(self.catalogue), p.hidden, p.latent, p.depth, p.layer_norm_epsilon,
                              self.shallow_rank(), p.input_dropout, p.beta, p.focal_alpha, p.focal_gamma,
                              p.shallow_l2)  # fmt: skip
        network.compile(optimizer=self._optimizer())
        network(tf.zeros([1, len(self.catalogue)]))
        return network

    def serving_parts(self) -> ServingParts:
        """Scorer form: ``log p`` over the catalogue from the user's current seen row, in-graph."""
        return ServingParts(scorer=RowScorer(SeenRows(self.users, self.seen), self.model))
