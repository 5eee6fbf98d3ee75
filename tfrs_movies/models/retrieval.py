"""TFRS two-tower retrieval: a user tower and a movie tower trained with a softmax over candidates.

The loss is TFRS's ``Retrieval`` task: for a batch of (user, movie) pairs, each user's own movie is the
positive; the other movies of the batch are negatives (``in-batch``), and with
``model.params.full_softmax`` every catalogue movie is a negative as well (cheap for catalogues of a
few thousand movies, and a better estimate of the true softmax). ``model.params.uniform_negatives``
mixes negatives instead (Yang et al. 2020, "Mixed Negative Sampling for Learning Two-tower Neural
Networks in Recommendations"): each step adds that many catalogue movies drawn uniformly, shared by
the batch's queries, so rarely rated movies are negatives too (in-batch negatives are drawn by
popularity). With the logQ correction each candidate's log of its expected count in the mixed set,
log(B * p_j + n / N), is subtracted (batch B, popularity share p_j, n uniform draws, N movies), whether
it came from the batch or the uniform draw. ``model.params.hard_negatives`` keeps, per query, only the
k highest-scoring negatives in the softmax (TFRS's ``num_hard_negatives``). Options from the config:

- ``model.temperature``: divides the logits (small values sharpen the softmax);
- ``model.sampling_correction``: subtracts log(sampling probability) of each in-batch candidate, so
  popular movies are not over-penalised for appearing as negatives more often (logQ correction);
- ``model.remove_accidental_hits``: a negative that is the positive movie is masked out;
- ``model.similarity``: ``dot`` or ``cosine`` (L2-normalised towers);
- ``model.user_features`` / ``model.movie_features``: side features for the towers, e.g. the user's
  watch history (``history``: mean of the embeddings of the movies rated in train).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.pipeline import training_dataset
from tfrs_movies.features.side import FeatureSpace
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import FeatureQuery, ServingParts, TowerQuery
from tfrs_movies.models.state import State, keras_weights, set_keras_weights
from tfrs_movies.models.tasks import CrossReplicaRetrieval, GlobalBatchLoss
from tfrs_movies.models.towers import FeatureTower
from tfrs_movies.training.optimizers import make_optimizer

SAMPLING_PROBABILITY = "sampling_probability"


def mixed_sampling_probability(
    batch_size: int, uniform_negatives: int, catalogue_size: tf.Tensor | int
) -> Callable[[tf.Tensor], tf.Tensor]:
    """``popularity share (n,) -> expected count (n,)`` of a movie among a step's candidates when
    ``batch_size`` positives are drawn by popularity and ``uniform_negatives`` uniformly from
    ``catalogue_size`` movies: ``B * p + n / N``, the q of the mixture's logQ correction."""
    uniform = uniform_negatives / tf.cast(catalogue_size, tf.float32)
    return lambda share: batch_size * tf.cast(share, tf.float32) + uniform


class _EpochLoss:
    """The epoch's summed loss and number of examples, one pair per replica, kept where Keras does not
    track them (tracked, they would join the model's weights and change its saved state); reset at each
    epoch's start by :meth:`TwoTowerRetrievalModel.reset_metrics`."""

    def __init__(self) -> None:
        per_replica = dict(synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM, trainable=False)  # fmt: skip
        self.total = tf.Variable(0.0, **per_replica)
        self.examples = tf.Variable(0.0, **per_replica)

    def reset(self) -> None:
        self.total.assign(0.0)
        self.examples.assign(0.0)

    def add(self, loss: tf.Tensor, examples: tf.Tensor) -> tf.Tensor:
        """Add this replica's batch (its summed loss, its number of examples); returns this replica's
        share of the epoch's mean loss per example: its sum so far over every replica's examples, so
        that the shares Keras sums over the replicas make the mean (on one device: the mean itself)."""
        self.total.assign_add(loss)
        self.examples.assign_add(examples)
        every = self.examples.read_value()
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            every = ctx.all_reduce(tf.distribute.ReduceOp.SUM, every)
        return tf.math.divide_no_nan(self.total.read_value(), every)


class TwoTowerRetrievalModel(GlobalBatchLoss, tfrs.Model):
    """``compute_loss(features)``: raw user and movie features of a batch (``user_id``/``movie_id``
    ``(batch,)`` strings plus side features), and ``sampling_probability`` ``(batch,)`` float32 when the
    correction is on. ``catalogue`` (all movie features) adds every movie as a negative.

    The task is :class:`~tfrs_movies.models.tasks.CrossReplicaRetrieval`: TFRS's ``Retrieval`` on one
    device, and under a strategy of N replicas each replica's queries meet the candidates of the whole
    global batch (so N replicas learn what one device learns from the same global batch).

    ``uniform_negatives`` (n > 0, with ``catalogue``): n movies drawn uniformly from the catalogue
    each step are the extra negatives instead of the whole catalogue; ``batch_size`` then weighs the
    mixture's logQ correction (module docstring). Under a strategy each replica draws its own n."""

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        temperature: float | None = None,
        remove_accidental_hits: bool = True,
        sampling_correction: bool = True,
        catalogue: dict[str, np.ndarray] | None = None,
        catalogue_probability: np.ndarray | None = None,
        uniform_negatives: int = 0,
        hard_negatives: int = 0,
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        self.uniform_negatives = uniform_negatives
        self.batch_size = batch_size
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.sampling_correction = sampling_correction
        self.remove_accidental_hits = remove_accidental_hits
        self.catalogue = {k: tf.constant(v) for k, v in catalogue.items()} if catalogue else None
        self.catalogue_probability = (
            tf.constant(catalogue_probability, tf.float32) if catalogue_probability is not None else None
        )
        self.task = CrossReplicaRetrieval(temperature, remove_accidental_hits, hard_negatives or None)
        self.epoch_loss = _EpochLoss()

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        queries = self.query_tower(features, training=training)
        candidates = self.candidate_tower(features, training=training)
        probability = features[SAMPLING_PROBABILITY] if self.sampling_correction else None
        extra = {}
        if self.catalogue is not None:
            # Extra negatives after the (global) batch's positives: the whole catalogue, or a uniform draw.
            movies, movie_probability = self.catalogue, self.catalogue_probability
            if self.uniform_negatives:
                total = tf.shape(movie_probability)[0]
                rows = tf.random.uniform([self.uniform_negatives], 0, total, tf.int32)
                movies = {k: tf.gather(v, rows) for k, v in movies.items()}
                mixed = mixed_sampling_probability(self.batch_size, self.uniform_negatives, total)
                movie_probability = mixed(tf.gather(movie_probability, rows))
                if probability is not None:
                    probability = mixed(probability)
            extra = dict(
                extra_embeddings=self.candidate_tower(movies, training=training),
                extra_ids=movies[S.MOVIE_ID],
                extra_sampling_probability=movie_probability if probability is not None else None,
            )
        return self.task(
            queries,
            candidates,
            candidate_sampling_probability=probability,
            candidate_ids=features[S.MOVIE_ID] if self.remove_accidental_hits else None,
            **extra,
        )

    def reset_metrics(self) -> None:
        super().reset_metrics()
        self.epoch_loss.reset()

    def train_step(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """TFRS's train step, with N replicas counted once: the optimizer sums the replicas' gradients,
        so each replica adds 1/N of the (replica-independent) regularization.

        Logs ``loss``: the mean loss per example of the epoch so far (the task sums over a batch:
        :class:`_EpochLoss`), the figure the console, the history and TensorBoard show; and, for a model
        with regularization losses, this step's ``regularization_loss``."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses]) / replicas
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        examples = tf.cast(tf.shape(inputs[S.MOVIE_ID])[0], tf.float32)
        logs = {"loss": self.epoch_loss.add(tf.cast(loss, tf.float32), examples)}
        if self.losses:
            logs["regularization_loss"] = regularization_loss
        return logs


def build_towers(config: dict[str, Any], space: FeatureSpace) -> tuple[FeatureTower, FeatureTower]:
    """The user and movie towers that a config describes, over ``space``'s features."""
    m = config["model"]
    common = dict(
        embedding_dim=m["embedding_dim"], l2=m["l2"], normalize=m["similarity"] == "cosine",
        dropout=m["dropout"], batch_norm=m["batch_norm"], id_buckets=m["id_buckets"],
    )  # fmt: skip
    return (
        FeatureTower(space, "user", layers=m["user_layers"], name="user_tower", **common),
        FeatureTower(space, "movie", layers=m["movie_layers"], name="movie_tower", **common),
    )


@register
class RetrievalRecommender(Recommender):
    """Two-tower retrieval; a user's score for a movie is query . candidate."""

    name = "retrieval"

    @dataclass(frozen=True)
    class Params(ModelParams):
        # Every catalogue movie is a negative too (besides the in-batch ones).
        full_softmax: bool = False
        # Catalogue movies drawn uniformly each step as extra negatives (mixed negative sampling).
        uniform_negatives: int = 0
        # Per query, only the k highest-scoring negatives enter the softmax (0: all of them).
        hard_negatives: int = 0

        def validate(self) -> None:
            for key in ("uniform_negatives", "hard_negatives"):
                if getattr(self, key) < 0:
                    raise ValueError(
                        f"config key 'model.params.{key}' must be >= 0, got {getattr(self, key)}"
                    )
            if self.full_softmax and self.uniform_negatives:
                raise ValueError(
                    "config keys 'model.params.full_softmax' and 'model.params.uniform_negatives' exclude "
                    "each other (the full softmax already has every movie as a negative)"
                )

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.model: TwoTowerRetrievalModel | None = None
        self.space: FeatureSpace | None = None
        self._movie_vectors: np.ndarray | None = None

    def _build(self) -> TwoTowerRetrievalModel:
        user_tower, movie_tower = build_towers(self.config, self.space)
        extra_negatives = self.params.full_softmax or self.params.uniform_negatives > 0
        catalogue = self.space.movie_rows(self.catalogue) if extra_negatives else None
        model = TwoTowerRetrievalModel(
            user_tower,
            movie_tower,
            temperature=self.config["model"]["temperature"],
            remove_accidental_hits=self.config["model"]["remove_accidental_hits"],
            sampling_correction=self.config["model"]["sampling_correction"],
            catalogue=catalogue,
            catalogue_probability=np.maximum(self.popularity, 1e-8) if catalogue else None,
            uniform_negatives=self.params.uniform_negatives,
            hard_negatives=self.params.hard_negatives,
            batch_size=self.config["train"]["batch_size"],
        )
        train = self.config["train"]
        model.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"]))
        # Build the weights now, so that load_weights and scoring work before any fit.
        model.query_tower(self.space.user_rows(self.users[:1]))
        model.candidate_tower(self.space.movie_rows(self.catalogue[:1]))
        return model

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        from tfrs_movies.training.fit import fit_keras

        m, cfg = self.config["model"], self.config["train"]
        tf.keras.utils.set_random_seed(self.config["seed"])
        self.space = FeatureSpace.build(
            dataset,
            train,
            self.users,
            self.catalogue,
            m["user_features"],
            m["movie_features"],
            m["history_length"],
        )
        from tfrs_movies.training.distribute import strategy_for

        with strategy_for(self.config).scope():  # train.strategy: variables mirrored over the replicas
            self.model = self._build()
        column = pd.Index(self.catalogue).get_indexer(train[S.MOVIE_ID].to_numpy())
        probability = np.maximum(np.asarray(self.popularity, np.float32)[column], 1e-8)
        del column
        # In memory up to train.stream_above rows, else streamed from index shards (features/pipeline.py).
        data, shards = training_dataset(
            train, self.users, self.catalogue, {SAMPLING_PROBABILITY: probability}, cfg["batch_size"],
            seed=self.config["seed"], shuffle_buffer=cfg["shuffle_buffer"], stream_above=cfg["stream_above"],
        )  # fmt: skip
        del probability
        data = data.map(self.space.join, num_parallel_calls=tf.data.AUTOTUNE)
        try:
            self.history = fit_keras(self, data, train, valid, **kwargs)
        finally:
            if shards is not None:
                shards.cleanup()

    def update_seen(self, ratings: pd.DataFrame) -> None:
        """Seen movies and the watch-history feature both come from ``ratings`` from now on."""
        super().update_seen(ratings)
        self.space = self.space.with_history(ratings)
        self.on_weights_changed()

    def on_weights_changed(self) -> None:
        """Forget cached movie vectors (called by the training loop after each epoch and on restore)."""
        self._movie_vectors = None

    def movie_embeddings(self) -> np.ndarray:
        if self._movie_vectors is None:
            vectors = [
                self.model.candidate_tower(self.space.movie_rows(self.catalogue[i : i + 4096])).numpy()
                for i in range(0, len(self.catalogue), 4096)
            ]
            self._movie_vectors = np.concatenate(vectors).astype(np.float32)
        return self._movie_vectors

    def user_embeddings(self, user_ids: np.ndarray) -> np.ndarray:
        return self.model.query_tower(self.space.user_rows(np.asarray(user_ids))).numpy()

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_embeddings(self.users[user_index]) @ self.movie_embeddings().T

    def _score_unknown(self, user_ids: np.ndarray) -> np.ndarray:
        """Cold start: users known by their features (not their id) go through the user tower; the rest,
        or every unknown user when the tower has no feature but the id, get popularity."""
        out = super()._score_unknown(user_ids)
        if set(self.space.user_features) - {"id"}:
            has_features = np.isin(user_ids, self.space.users)
            if has_features.any():
                out[has_features] = self.user_embeddings(user_ids[has_features]) @ self.movie_embeddings().T
        return out

    def _state(self) -> State:
        state = State.of(keras_weights(self.model))
        return state.nest("space", State.of(self.space.state()))

    def _restore(self, state: State) -> None:
        self.space = FeatureSpace.from_state(state.child("space").flat())
        self.model = self._build()
        set_keras_weights(self.model, state)
        self._movie_vectors = None

    def serving_parts(self) -> ServingParts:
        """Dot form: the query tower over the user's in-graph features, the movie tower's vectors; the
        query tower over request features too when it reads a cold-start feature (demographics)."""
        tower = self.model.query_tower
        cold = FeatureQuery(tower, self.space) if self.space.has_cold_start_user_features else None
        return ServingParts(
            query=TowerQuery(self.space, tower), candidates=self.movie_embeddings(), feature_query=cold
        )
