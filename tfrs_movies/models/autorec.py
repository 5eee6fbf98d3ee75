"""AutoRec (Sedhain et al. 2015): an autoencoder over rating vectors.

I-AutoRec (``model.params.kind: item``, the default) encodes each movie's vector of ratings over the
users; U-AutoRec (``kind: user``) each user's vector over the movies. The network is
``h = sigmoid(V r + b)`` (``hidden`` units, ``depth`` such layers) and ``r_hat = W h + c`` (identity
output). Unobserved entries are zeroed at the input (whatever the placeholder) and left out of the loss:

    loss = sum over observed (r - r_hat)^2  +  l2 / 2 * (||V||^2 + ||W||^2)

computed per batch of rows as ``SSE / batch + l2 / 2 * ||weights||^2 / rows`` (the full objective divided
by the number of rows, so ``l2`` means the same at any batch size). The squared error is TFRS's
``Ranking`` task (MSE, summed, weighted by the observed mask) inside ``tfrs.Model.compute_loss``.

Training: ``train.*`` (Adam in the configs), input dropout (``input_dropout``: denoising), dropout
after each hidden layer (``dropout``), per-epoch learning-rate decay (``lr_decay``), early stopping on
validation RMSE (``train.early_stopping``) with best-weights restore. With ``refit`` the model is then
trained afresh on train + validation for the best epoch count (times ``refit_epochs_scale``), and the
full rating vectors are its input when predicting. A rating ``(user, movie)`` is read off the
reconstruction of the movie's (or user's) vector; unknown users and movies without train ratings get
the baseline (global mean + known bias).

With ``kernel_dim > 0`` every layer is a :class:`LocalKernelDense` (the local kernel of Sparse FC /
GLocal-K): each weight is gated by ``max(0, 1 - |u_i - v_j|^2)`` of learned points, penalised by
``kernel_l2``. (On ML-100K it did not beat the plain network in our runs; see docs/BENCHMARKS.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.models.mf import (
    MeanLossModel,
    RatingParams,
    RatingRecommender,
    check_non_negative,
    make_optimizer,
)
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import ServingParts
from tfrs_movies.models.state import State

RATINGS = "ratings"
MASK = "mask"


class LocalKernelDense(tf.keras.layers.Layer):
    """A dense layer whose weights are gated by a learned local kernel (Muller et al. 2018, GLocal-K).

    Every input ``i`` and output ``j`` has a point (``u_i``, ``v_j`` in ``R^dim``); the effective weight is
    ``W_ij * max(0, 1 - |u_i - v_j|^2)``, so the network learns which connections to keep (a sparse,
    data-driven connectivity). ``gate()`` is that (n_in, units) kernel.
    """

    def __init__(self, units: int, dim: int, activation: str | None = None, bias_value: float = 0.0,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.units = units
        self.dim = dim
        self.activation = tf.keras.activations.get(activation)
        self.bias_value = bias_value

    def build(self, input_shape: tf.TensorShape) -> None:
        n_in = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(n_in, self.units), initializer="glorot_uniform")
        # Small points: every gate starts near 1 (a dense layer); the kernel penalty then sparsifies it.
        self.u = self.add_weight(name="u", shape=(n_in, self.dim),
                                 initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05))  # fmt: skip
        self.v = self.add_weight(name="v", shape=(self.units, self.dim),
                                 initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05))  # fmt: skip
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=tf.keras.initializers.Constant(self.bias_value)
        )
        super().build(input_shape)

    def gate(self) -> tf.Tensor:
        distance = (
            tf.reduce_sum(self.u * self.u, 1, keepdims=True)
            + tf.reduce_sum(self.v * self.v, 1)[None, :]
            - 2.0 * tf.matmul(self.u, self.v, transpose_b=True)
        )
        return tf.nn.relu(1.0 - distance)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.activation(tf.matmul(inputs, self.kernel * self.gate()) + self.bias)


class AutoRecModel(MeanLossModel):
    """``compute_loss(features)``: ``ratings`` and ``mask`` (batch, n_inputs) float32, mask 1 = observed."""

    def __init__(self, n_inputs: int, n_rows: int, hidden: int, depth: int = 1, l2: float = 0.0,
                 activation: str = "sigmoid", input_dropout: float = 0.0, dropout: float = 0.0,
                 mean: float = 0.0, kernel_dim: int = 0, kernel_l2: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.input_dropout = tf.keras.layers.Dropout(input_dropout) if input_dropout > 0 else None
        if kernel_dim > 0:
            self.encoder = [LocalKernelDense(hidden, kernel_dim, activation) for _ in range(depth)]
            self.decoder = LocalKernelDense(n_inputs, kernel_dim, None, bias_value=mean)
        else:
            self.encoder = [tf.keras.layers.Dense(hidden, activation=activation) for _ in range(depth)]
            self.decoder = tf.keras.layers.Dense(
                n_inputs, bias_initializer=tf.keras.initializers.Constant(mean)
            )
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout > 0 else None
        self.kernel_l2 = kernel_l2
        self.l2 = l2
        self.n_rows = float(max(n_rows, 1))
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def encode(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The hidden code ``h`` of each input row (batch, hidden)."""
        x = inputs
        if self.input_dropout is not None:
            x = self.input_dropout(x, training=training)
        for layer in self.encoder:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return x

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.decoder(self.encode(inputs, training=training))

    def decoder_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The linear output layer as ``(W (hidden, n_inputs), c (n_inputs,))``: ``r_hat = h W + c``
        (a local-kernel decoder's weights already gated)."""
        kernel = self.decoder.kernel
        if isinstance(self.decoder, LocalKernelDense):
            kernel = kernel * self.decoder.gate()
        return np.asarray(kernel, np.float32), np.asarray(self.decoder.bias, np.float32)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        mask = features[MASK]
        ratings = features[RATINGS] * mask  # unobserved entries are 0 whatever their placeholder
        reconstructed = self(ratings, training=training)
        squared_error = self.task(
            labels=tf.reshape(ratings, [-1, 1]),
            predictions=tf.reshape(reconstructed, [-1, 1]),
            sample_weight=tf.reshape(mask, [-1]),
        )
        rows = tf.cast(tf.shape(ratings)[0], tf.float32)
        layers = [*self.encoder, self.decoder]
        penalty = self.l2 * tf.add_n([tf.reduce_sum(tf.square(layer.kernel)) for layer in layers])
        if self.kernel_l2 > 0:
            penalty += self.kernel_l2 * tf.add_n([tf.reduce_sum(tf.square(layer.gate())) for layer in layers])
        return squared_error / rows + 0.5 * penalty / self.n_rows


@register
class AutoRecRecommender(RatingRecommender):
    """AutoRec (``autorec``); see the module docstring."""

    name = "autorec"

    @dataclass(frozen=True)
    class Params(RatingParams):
        kind: str = "item"
        hidden: int = 500
        depth: int = 1
        activation: str = "sigmoid"
        l2: float = 200.0
        input_dropout: float = 0.2
        dropout: float = 0.0
        lr_decay: float = 0.95
        kernel_dim: int = 0
        kernel_l2: float = 0.0

        def validate(self) -> None:
            super().validate()
            if self.kind not in ("item", "user"):
                raise ValueError(f"config key 'model.params.kind' must be item or user, got {self.kind!r}")
            for key in ("hidden", "depth", "input_dropout", "dropout"):
                value = getattr(self, key)
                if key in ("hidden", "depth") and value < 1:
                    raise ValueError(f"config key 'model.params.{key}' must be >= 1, got {value!r}")
                if "dropout" in key and not 0 <= value < 1:
                    raise ValueError(f"config key 'model.params.{key}' must be in [0, 1), got {value!r}")
            check_non_negative(self, "l2", "lr_decay", "kernel_dim", "kernel_l2")

    data_state: ClassVar[tuple[str, ...]] = ("inputs/",)  # the ratings it encodes, not parameters
    contract_params: ClassVar[dict[str, Any]] = {"hidden": 16}

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # rows, cols, ratings
        self._reconstruction: np.ndarray | None = None

    # ----- the rating matrix ----------------------------------------------------------------------
    @property
    def _item_based(self) -> bool:
        return self.params.kind == "item"

    def _shape(self) -> tuple[int, int]:
        users, movies = len(self.users), len(self.catalogue)
        return (movies, users) if self._item_based else (users, movies)

    def _sparse(self, ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ratings = self.known_rows(ratings)
        u, m = self.positions(ratings)
        rows, cols = (m, u) if self._item_based else (u, m)
        return rows.astype(np.int64), cols.astype(np.int64), ratings[S.RATING].to_numpy(np.float32)

    def _dense(self, sparse: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rows, cols, values = sparse
        matrix = np.zeros(self._shape(), dtype=np.float32)
        mask = np.zeros(self._shape(), dtype=np.float32)
        matrix[rows, cols] = values
        mask[rows, cols] = 1.0
        return matrix, mask

    def _dataset(self, sparse: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tf.data.Dataset:
        matrix, mask = self._dense(sparse)
        keep = mask.sum(1) > 0  # rows with no rating carry no loss
        n = int(keep.sum())
        data = tf.data.Dataset.from_tensor_slices({RATINGS: matrix[keep], MASK: mask[keep]}).cache()
        data = data.shuffle(n, seed=self.config["seed"], reshuffle_each_iteration=True)
        return data.batch(self.config["train"]["batch_size"]).prefetch(tf.data.AUTOTUNE)

    # ----- fitting --------------------------------------------------------------------------------
    def _build_model(self) -> AutoRecModel:
        p = self.params
        n_rows, n_inputs = self._shape()
        model = AutoRecModel(n_inputs, n_rows, p.hidden, p.depth, p.l2, p.activation,
                             p.input_dropout, p.dropout, self.mu, p.kernel_dim, p.kernel_l2)  # fmt: skip
        model.compile(optimizer=make_optimizer(self.config))
        model(tf.zeros([1, n_inputs]))
        return model

    def _callbacks(self) -> list[tf.keras.callbacks.Callback]:
        decay = self.params.lr_decay
        if decay == 1.0:
            return []
        base = self.config["train"]["learning_rate"]
        return [tf.keras.callbacks.LearningRateScheduler(lambda epoch: base * decay**epoch)]

    def _fit_model(
        self, train: pd.DataFrame, valid: pd.DataFrame | None, epochs: int | None = None,
        extra_callbacks: list[tf.keras.callbacks.Callback] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        from tfrs_movies.training.fit import fit_keras

        self.inputs = self._sparse(train)  # also the input when predicting
        self.model = self._build_model()
        self.on_weights_changed()
        callbacks = [*self._callbacks(), *(extra_callbacks or [])]
        self.history = fit_keras(self, self._dataset(self.inputs), train, valid,
                                 extra_callbacks=callbacks, epochs=epochs, **kwargs)  # fmt: skip

    def on_weights_changed(self) -> None:
        self._reconstruction = None

    # ----- prediction -----------------------------------------------------------------------------
    def reconstruction(self) -> np.ndarray:
        """The reconstructed rating matrix (rows: movies for I-AutoRec, users for U-AutoRec)."""
        if self._reconstruction is None:
            matrix, _ = self._dense(self.inputs)
            self._reconstruction = self.model(tf.constant(matrix), training=False).numpy()
        return self._reconstruction

    def _predict_known(self, user_pos: np.ndarray, movie_pos: np.ndarray) -> np.ndarray:
        recon = self.reconstruction()
        return recon[movie_pos, user_pos] if self._item_based else recon[user_pos, movie_pos]

    def movie_embeddings(self) -> np.ndarray | None:
        if self._item_based:
            return None  # a movie's code depends on its ratings; co-occurrence serves similar movies
        return self.model.decoder.kernel.numpy().T  # (movies, hidden): each movie's output weights

    # ----- persistence ----------------------------------------------------------------------------
    def _state(self) -> State:
        rows, cols, values = self.inputs
        return super()._state().nest("inputs", State.of({"rows": rows, "cols": cols, "values": values}))

    def _restore(self, state: State) -> None:
        inputs = state.child("inputs")
        self.inputs = (inputs["rows"], inputs["cols"], inputs["values"])
        super()._restore(state)

    # ----- serving --------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """Dot form: the output layer is linear, so ``r_hat[row, col] = h_row . W[:, col] + c_col``.

        I-AutoRec (rows are movies, outputs users): query ``[W[:, u], c_u]``, candidate ``[h_i, 1]``
        (each movie's hidden code from its train ratings). U-AutoRec (rows are users): query
        ``[h_u, 1]``, candidate ``[W[:, i], c_i]``. The baseline is folded in for movies without
        train ratings (:meth:`RatingRecommender.baseline_dot_parts`)."""
        matrix, _ = self._dense(self.inputs)
        codes = self.model.encode(tf.constant(matrix), training=False).numpy()  # (rows, hidden)
        kernel, bias = self.model.decoder_weights()
        outputs = np.concatenate([kernel.T, bias[:, None]], axis=1)  # (n_inputs, hidden + 1)
        inputs = np.concatenate([codes, np.ones((len(codes), 1), np.float32)], axis=1)
        users, movies = (outputs, inputs) if self._item_based else (inputs, outputs)
        return self.baseline_dot_parts(users, movies)
