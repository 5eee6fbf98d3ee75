"""What the user-row autoencoders share: the network interface, training on batches of users, scoring,
the fold-in, persistence and the dot-form export.

A user is their binary row ``x_u`` (N,) of seen movies (``self.seen``; train + validation once the
runner has called ``update_seen``). Every network maps rows (B, N) to a representation ``h`` (B, d) and
then to logits ``h W + b`` (B, N) through one linear output layer; a movie's score is its logit
(the multinomial's log-probability up to a per-user constant, so the ranking is the same).

- Training: batches of users, their rows densified in the input pipeline from the sparse table; the
  batch is ``min(train.batch_size, ceil(users / params.epoch_batches))`` so that a small dataset still
  gets ``epoch_batches`` steps per epoch while a large one uses ``train.batch_size`` (500 in the papers);
  epochs are chosen by ``train.early_stopping`` on the validation split (best weights restored). With
  ``params.refit`` the network is then trained afresh on train + validation for that many epochs, as
  the runner refits models without early stopping on every training rating (so do not measure a
  refitted model on its own validation split: it has trained on it).
- Fold-in: scoring any row is one forward pass, so a known user's current row, or a watched list given
  by :meth:`RowAutoencoderRecommender.score_histories`, is scored without retraining. A user with no
  row at all (unknown to train, or an empty list) gets the network's answer to an empty row: every
  layer's bias carried through to the output, a popularity-like ranking learned by the decoder.
- Export (dot form): query ``[h_u, 1]`` from the user's seen row (:class:`EncodedRows`, in-graph),
  candidate ``[W[:, i], b_i]``; brute force and ScaNN both serve it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.evaluation.ranking import interaction_matrix, rows_per_block
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.mf import make_optimizer
from tfrs_movies.models.serving_parts import SeenRows, ServingParts
from tfrs_movies.models.state import State, keras_weights, set_keras_weights

ROWS = "rows"


def multinomial_nll(logits: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """``-sum_i x_ui log softmax(logits_u)_i``: (B, N) logits and rows -> (B,) per user."""
    return -tf.reduce_sum(tf.nn.log_softmax(logits, axis=-1) * rows, axis=-1)


def normalised_input(rows: tf.Tensor) -> tf.Tensor:
    """Rows (B, N) scaled to unit L2 norm (an empty row stays zero)."""
    return tf.math.l2_normalize(rows, axis=-1)


def densify(columns: tf.RaggedTensor, n_columns: int) -> tf.Tensor:
    """A ragged (B, None) batch of column positions -> dense binary rows (B, n_columns) float32."""
    where = tf.stack([columns.value_rowids(), columns.values], axis=1)
    shape = tf.stack([columns.nrows(), tf.constant(n_columns, tf.int64)])
    return tf.scatter_nd(where, tf.ones_like(columns.values, tf.float32), shape)


class RowNetwork(tf.keras.Model):
    """Rows (B, N) -> logits (B, N) through ``represent`` (B, d) and the linear ``output_layer``.

    Subclasses define ``represent(rows)`` (the inference path: no dropout, no sampling) and
    ``train_step``; ``loss_tracker`` logs the epoch's mean loss."""

    def __init__(self, n_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_items = n_items
        self.output_layer = tf.keras.layers.Dense(n_items, name="output")
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")

    @property
    def metrics(self) -> list[tf.keras.metrics.Metric]:
        return [self.loss_tracker]

    def represent(self, rows: tf.Tensor) -> tf.Tensor:
        """(B, N) binary rows -> (B, d) the representation the output layer is linear over."""
        raise NotImplementedError  # every network defines its own; the base only declares it

    def scores(self, rows: tf.Tensor) -> tf.Tensor:
        """(B, N) rows -> (B, N) logits at inference."""
        return self.output_layer(self.represent(rows))

    def call(self, rows: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.scores(rows)

    def output_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The output layer as ``(W (d, N), b (N,))``."""
        layer = self.output_layer
        return np.asarray(layer.kernel, np.float32), np.asarray(layer.bias, np.float32)


class EncodedRows(tf.Module):
    """``user_id (B,) -> (B, d + 1)``: the user's seen row (:class:`SeenRows`) through the network's
    ``represent``, then a constant 1 (the output bias rides on the candidates)."""

    def __init__(self, rows: SeenRows, network: RowNetwork):
        super().__init__()
        self.rows = rows
        self.network = network

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        hidden = self.network.represent(self.rows(user_id))
        return tf.concat([hidden, tf.ones_like(hidden[:, :1])], axis=1)


def check_at_least(params: ModelParams, low: float, *keys: str) -> None:
    """ValueError naming the first of ``keys`` whose value is below ``low``."""
    for key in keys:
        value = getattr(params, key)
        if value < low:
            raise ValueError(f"config key 'model.params.{key}' must be >= {low:g}, got {value!r}")


def check_above(params: ModelParams, low: float, *keys: str) -> None:
    """ValueError naming the first of ``keys`` whose value is not above ``low``."""
    for key in keys:
        value = getattr(params, key)
        if value <= low:
            raise ValueError(f"config key 'model.params.{key}' must be > {low:g}, got {value!r}")


@dataclass(frozen=True)
class AutoencoderParams(ModelParams):
    """Settings every user-row autoencoder shares: the ``latent`` code's width, the input dropout rate,
    ``epoch_batches``, the fewest batches of users an epoch has, and ``refit`` (see the module
    docstring)."""

    latent: int = 200
    input_dropout: float = 0.5
    epoch_batches: int = 16
    refit: bool = False

    def validate(self) -> None:
        check_at_least(self, 1, "latent", "epoch_batches")
        if not 0 <= self.input_dropout < 1:
            rate = self.input_dropout
            raise ValueError(f"config key 'model.params.input_dropout' must be in [0, 1), got {rate!r}")


class RowAutoencoderRecommender(Recommender):
    """A top-N recommender over a :class:`RowNetwork`; subclasses define ``_build_network`` and may
    override ``_batches`` (the training pipeline)."""

    predicts_ratings: ClassVar[bool] = False
    uses_validation: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.model: RowNetwork | None = None

    # ----- building and training ------------------------------------------------------------------
    def _build_network(self) -> RowNetwork:
        """A fresh network over ``len(self.catalogue)`` movies, compiled, built and seeded."""
        raise NotImplementedError  # every model defines its own; the base only declares it

    def _optimizer(self) -> tf.keras.optimizers.Optimizer:
        return make_optimizer(self.config)

    def batch_users(self) -> int:
        """Users per training batch: ``train.batch_size``, smaller on small data (module docstring)."""
        users = max(int(self.seen.shape[0]), 1)
        return min(int(self.config["train"]["batch_size"]), math.ceil(users / self.params.epoch_batches))

    def steps_per_epoch(self) -> int:
        return math.ceil(max(int(self.seen.shape[0]), 1) / self.batch_users())

    def _user_batches(self, rows: sp.csr_matrix) -> tf.data.Dataset:
        """Shuffled batches of the users' dense rows (B, N) of ``rows``, reshuffled every pass."""
        seen = rows.tocsr()
        columns = tf.RaggedTensor.from_row_splits(seen.indices.astype(np.int64), seen.indptr.astype(np.int64))
        n_users, n_items = seen.shape
        return (
            tf.data.Dataset.range(n_users)
            .shuffle(n_users, seed=self.config["seed"], reshuffle_each_iteration=True)
            .batch(self.batch_users())
            .map(lambda users: densify(tf.gather(columns, users), n_items))
        )

    def _batches(self, rows: sp.csr_matrix) -> tf.data.Dataset:
        """What one Keras epoch feeds ``train_step``: ``{ROWS: (B, N)}`` per batch of ``rows``."""
        return self._user_batches(rows).map(lambda rows: {ROWS: rows}).prefetch(tf.data.AUTOTUNE)

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        from tfrs_movies.training.fit import fit_keras

        tf.keras.utils.set_random_seed(self.config["seed"])
        self.model = self._build_network()
        self.history = fit_keras(self, self._batches(self.seen), train, valid, **kwargs)
        best = self.history.get("best_epoch")
        if self.params.refit and valid is not None and len(valid) and best:
            full = pd.concat([train, valid], ignore_index=True)
            rows = interaction_matrix(full, self.users, self.catalogue)
            tf.keras.utils.set_random_seed(self.config["seed"])
            self.model = self._build_network()
            # No run directory: its checkpoints are the first fit's (same model and config), which a
            # second fit there would resume as already over instead of training.
            refit = fit_keras(self, self._batches(rows), full, None, epochs=best[0])
            self.history = {**self.history, **{f"refit_{k}": v for k, v in refit.items()}}

    # ----- scoring --------------------------------------------------------------------------------
    def _logits(self, rows: sp.csr_matrix) -> np.ndarray:
        """(n, N) sparse rows -> (n, N) scores, a bounded block of users at a time."""
        n, n_items = rows.shape
        out = np.empty((n, n_items), dtype=np.float32)
        step = rows_per_block(n_items, limit=4096)
        for start in range(0, n, step):
            block = rows[start : start + step].toarray().astype(np.float32)
            out[start : start + step] = self.model.scores(tf.constant(block)).numpy()
        return out

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self._logits(self.seen[user_index])

    def _score_unknown(self, user_ids: np.ndarray) -> np.ndarray:
        """A user with no row: the network's scores of an empty row (popularity-like, from the biases)."""
        return self._logits(sp.csr_matrix((len(user_ids), len(self.catalogue)), dtype=np.float32))

    def history_rows(self, histories: Sequence[Iterable[int]]) -> sp.csr_matrix:
        """Watched lists of raw movie ids -> (n, N) binary rows; ids outside the catalogue are dropped."""
        lists = [np.asarray(list(h), dtype=np.int64) for h in histories]
        cols = pd.Index(self.catalogue).get_indexer(np.concatenate(lists)) if lists else np.empty(0, np.int64)
        owner = np.repeat(np.arange(len(lists)), [len(h) for h in lists])
        keep = cols >= 0
        rows = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (owner[keep], cols[keep])),
            shape=(len(lists), len(self.catalogue)),
        )
        rows.sum_duplicates()
        rows.data[:] = 1.0
        return rows

    def score_histories(self, histories: Sequence[Iterable[int]]) -> np.ndarray:
        """Fold-in: (n, N) scores for users given only their watched lists (raw movie ids), without
        retraining; an empty list gets the empty-row scores of :meth:`_score_unknown`."""
        return self._logits(self.history_rows(histories))

    def movie_embeddings(self) -> np.ndarray:
        """(N, d): each movie's output weights (its column of the last layer)."""
        return self.model.output_weights()[0].T

    # ----- persistence ----------------------------------------------------------------------------
    def _state(self) -> State:
        return State.of(keras_weights(self.model))

    def _restore(self, state: State) -> None:
        self.model = self._build_network()
        set_keras_weights(self.model, state)

    # ----- serving --------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """Dot form: query ``[h_u, 1]`` from the user's current seen row, in-graph; candidate
        ``[W[:, i], b_i]``; their dot product is the logit :meth:`score` gives."""
        kernel, bias = self.model.output_weights()
        candidates = np.concatenate([kernel.T, bias[:, None]], axis=1)
        query = EncodedRows(SeenRows(self.users, self.seen), self.model)
        return ServingParts(query=query, candidates=candidates)
