"""TFRS two-tower retrieval: a user tower and a movie tower trained with in-batch softmax.

The loss is TFRS's ``Retrieval`` task: for a batch of (user, movie) pairs, each user's own movie is the
positive and the other movies of the batch are negatives. Options from the config:

- ``model.temperature``: divides the logits (small values sharpen the softmax);
- ``model.sampling_correction``: subtracts log(sampling probability) of each in-batch candidate, so
  popular movies are not over-penalised for appearing as negatives more often (logQ correction);
- ``model.remove_accidental_hits``: a batch negative that is the positive movie is masked out;
- ``model.similarity``: ``dot`` or ``cosine`` (L2-normalised towers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.pipeline import make_dataset, movies_dataset, ratings_features
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.towers import IdTower

SAMPLING_PROBABILITY = "sampling_probability"


class TwoTowerRetrievalModel(tfrs.Model):
    """``compute_loss(features)``: features hold ``user_id`` and ``movie_id`` ``(batch,)`` strings, and
    ``sampling_probability`` ``(batch,)`` float32 when the correction is on."""

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        temperature: float | None = None,
        remove_accidental_hits: bool = True,
        sampling_correction: bool = True,
        candidates: tf.data.Dataset | None = None,
    ) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.sampling_correction = sampling_correction
        self.remove_accidental_hits = remove_accidental_hits
        metrics = None
        if candidates is not None:
            # Logged while training only; it ranks seen movies too, so it is never a headline figure.
            metrics = tfrs.metrics.FactorizedTopK(
                candidates=candidates.map(lambda c: (c[S.MOVIE_ID], self.candidate_tower(c[S.MOVIE_ID]))),
                ks=(10, 50),
            )
        self.task = tfrs.tasks.Retrieval(
            metrics=metrics, temperature=temperature, remove_accidental_hits=remove_accidental_hits
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        queries = self.query_tower(features[S.USER_ID])
        candidates = self.candidate_tower(features[S.MOVIE_ID])
        return self.task(
            queries,
            candidates,
            candidate_sampling_probability=features[SAMPLING_PROBABILITY]
            if self.sampling_correction
            else None,
            candidate_ids=features[S.MOVIE_ID] if self.remove_accidental_hits else None,
            compute_metrics=not training,
        )


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    return {
        "adagrad": tf.keras.optimizers.Adagrad,
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
    }[name](learning_rate=learning_rate)


@register
class RetrievalRecommender(Recommender):
    """Two-tower retrieval on user and movie ids; scores are query . candidate."""

    name = "retrieval"

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.model: TwoTowerRetrievalModel | None = None
        self._movie_vectors: np.ndarray | None = None

    def _build(self) -> TwoTowerRetrievalModel:
        m = self.config["model"]
        cosine = m["similarity"] == "cosine"
        user_tower = IdTower(
            self.users, m["embedding_dim"], m["user_layers"], m["l2"], cosine, name="user_tower"
        )
        movie_tower = IdTower(
            self.catalogue, m["embedding_dim"], m["movie_layers"], m["l2"], cosine, name="movie_tower"
        )
        candidates = movies_dataset(self.catalogue) if self.config["train"]["factorized_topk"] else None
        model = TwoTowerRetrievalModel(
            user_tower,
            movie_tower,
            temperature=m["temperature"],
            remove_accidental_hits=m["remove_accidental_hits"],
            sampling_correction=m["sampling_correction"],
            candidates=candidates,
        )
        train = self.config["train"]
        model.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"]))
        # Build the weights now, so that load_weights and scoring work before any fit.
        model.query_tower(tf.constant(["0"]))
        model.candidate_tower(tf.constant(["0"]))
        return model

    def _features(self, ratings: pd.DataFrame) -> dict[str, np.ndarray]:
        counts = pd.Series(self.popularity, index=self.catalogue)
        probability = counts.reindex(ratings[S.MOVIE_ID].to_numpy()).fillna(0).to_numpy(np.float32)
        return ratings_features(ratings, {SAMPLING_PROBABILITY: np.maximum(probability, 1e-8)})

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        from tfrs_movies.training.fit import fit_keras

        tf.keras.utils.set_random_seed(self.config["seed"])
        self.model = self._build()
        cfg = self.config["train"]
        data = make_dataset(
            self._features(train), cfg["batch_size"], shuffle=True, seed=self.config["seed"],
            shuffle_buffer=cfg["shuffle_buffer"],
        )  # fmt: skip
        self.history = fit_keras(self, data, train, valid, **kwargs)

    def on_weights_changed(self) -> None:
        """Forget cached movie vectors (called by the training loop after each epoch and on restore)."""
        self._movie_vectors = None

    def movie_embeddings(self) -> np.ndarray:
        if self._movie_vectors is None:
            vectors = [
                self.model.candidate_tower(batch[S.MOVIE_ID]).numpy()
                for batch in movies_dataset(self.catalogue)
            ]
            self._movie_vectors = np.concatenate(vectors).astype(np.float32)
        return self._movie_vectors

    def user_embeddings(self, user_ids: np.ndarray) -> np.ndarray:
        return self.model.query_tower(tf.constant(ids_as_strings(user_ids))).numpy()

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_embeddings(self.users[user_index]) @ self.movie_embeddings().T

    def _save_state(self, path: Path) -> None:
        self.model.save_weights(str(path / "weights"))

    def _load_state(self, path: Path) -> None:
        self.model = self._build()
        self.model.load_weights(str(path / "weights")).expect_partial()
        self._movie_vectors = None
