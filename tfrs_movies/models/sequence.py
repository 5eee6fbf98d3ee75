"""The attention sequence model (seed 004, SASRec family) as a registered :class:`Recommender`.

``model.name: sequence``. A user's recent watch history (``model.history_length`` movies, with their
ratings) goes through a self-attention encoder (:mod:`tfrs_movies.models.attention`); on top of it:

- next-movie **retrieval**: the encoder is a TFRS query tower, scored against every catalogue movie
  (``score``/``recommend``; exports to the brute-force / ScaNN top-K SavedModels unchanged);
- the target movie's **rating** (``predict``): the target attends over the history, then an MLP;
- **pairs** (``pair_epochs > 0``): two users who rated the same movie, labelled with their average
  rating, train a pair head on top of the frozen rating head (:meth:`predict_pair`).

``model.params``:

- ``mode``: ``causal`` (every position predicts the next movie; one pass trains a whole sequence) or
  ``windows`` (seed 004: windows of ``window_length`` movies every ``window_step``, last = target);
- ``heads``: ``retrieval``, ``rating`` or ``both`` (shared encoder, losses weighted by
  ``retrieval_weight`` and ``rating_weight``);
- ``num_heads``, ``num_blocks``, ``dropout`` (encoder), ``use_ratings`` (add the history's ratings),
  ``query_layers`` (dense layers after the encoder for the query), ``rating_layers``, ``head_dropout``,
  ``head_batch_norm`` (seed 004: [256, 128], 0.1, batch norm), ``repeat`` (passes over the training
  sequences per epoch), ``pair_epochs``, ``pairs_per_movie``.

Serving: the history table lives in ``self.space.user_table`` (``seq_history``, ``seq_ratings``), rebuilt
from train + validation by :meth:`update_seen`, so the export serves the user's full history.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.features.sequences import (
    causal_examples,
    history_tables,
    pair_examples,
    window_examples,
)
from tfrs_movies.features.side import FeatureSpace, lookup_tables
from tfrs_movies.models.attention import MovieEncoder, PairHead, RatingHead, SequenceEncoder
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.sequence_net import (
    HISTORY,
    HISTORY_RATINGS,
    TARGET_RATINGS,
    TARGETS,
    CandidateTower,
    QueryTower,
    SequenceModel,
)
from tfrs_movies.models.serving_parts import FeatureQuery, ServingParts, TowerQuery
from tfrs_movies.models.state import State, keras_weights, set_keras_weights
from tfrs_movies.models.towers import FeatureTower

SEQUENCE_COLUMNS = (HISTORY, HISTORY_RATINGS)
HEADS = ("retrieval", "rating", "both")
MODES = ("causal", "windows")


@dataclass(frozen=True)
class SequenceParams(ModelParams):
    """``model.params`` of the sequence model (see the module docstring)."""

    mode: str = "causal"  # causal | windows
    window_length: int = 4
    window_step: int = 2
    heads: str = "both"  # retrieval | rating | both
    num_heads: int = 2
    num_blocks: int = 2
    dropout: float = 0.2
    use_ratings: bool = True
    query_layers: list[int] = field(default_factory=list)
    rating_layers: list[int] = field(default_factory=lambda: [256, 128])
    head_dropout: float = 0.1
    head_batch_norm: bool = True
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    repeat: int = 1
    pair_epochs: int = 0
    pairs_per_movie: int = 10

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"config key 'model.params.mode' must be one of {list(MODES)}, got {self.mode!r}"
            )
        if self.heads not in HEADS:
            raise ValueError(
                f"config key 'model.params.heads' must be one of {list(HEADS)}, got {self.heads!r}"
            )
        if self.pair_epochs > 0 and self.heads == "retrieval":
            raise ValueError(
                "model.params.pair_epochs needs a rating head (model.params.heads rating or both)"
            )
        if self.pair_epochs > 0 and not self.rating_layers:
            raise ValueError("config key 'model.params.rating_layers' must not be empty with pair_epochs > 0")
        for key in ("window_length", "window_step", "num_heads", "num_blocks", "repeat", "pairs_per_movie"):
            if getattr(self, key) < (2 if key == "window_length" else 1):
                raise ValueError(f"config key 'model.params.{key}' is too small: {getattr(self, key)!r}")
        for key in ("dropout", "head_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(
                    f"config key 'model.params.{key}' must be in [0, 1), got {getattr(self, key)!r}"
                )


def _set_trainable(layer: tf.keras.layers.Layer, trainable: bool) -> None:
    """``layer.trainable`` for the layer and every layer inside it, lists of layers included (Keras 2
    does not reach layers kept in a plain list attribute)."""
    layer.trainable = trainable
    for sub in layer.submodules:
        if isinstance(sub, tf.keras.layers.Layer):
            sub.trainable = trainable


@register
class SequenceRecommender(Recommender):
    """Self-attention over the watch history; see the module docstring."""

    name = "sequence"
    Params = SequenceParams
    # Settings that keep the contract tests fast on tiny data (tests/models/test_contract.py).
    contract_params = {"num_blocks": 1, "rating_layers": [16]}

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        p = self.params
        self.predicts_ratings = p.heads != "retrieval"
        self.retrieves = p.heads != "rating"
        self.length = (
            p.window_length - 1 if p.mode == "windows" else int(config["model"]["history_length"])
        )
        self.mu = 3.5
        self.model: SequenceModel | None = None
        self.space: FeatureSpace | None = None
        self._movie_vectors: np.ndarray | None = None

    # ----- building --------------------------------------------------------------------------------
    def _user_tower(self) -> FeatureTower | None:
        demo = copy.copy(self.space)
        demo.user_table = {k: v for k, v in self.space.user_table.items() if k not in SEQUENCE_COLUMNS}
        if "id" not in demo.user_features and not demo.user_table:
            return None
        m = self.config["model"]
        return FeatureTower(demo, "user", embedding_dim=m["embedding_dim"], l2=m["l2"], name="user_tower")

    def _build(self) -> SequenceModel:
        from tfrs_movies.training.optimizers import make_optimizer

        m, p, cfg = self.config["model"], self.params, self.config["train"]
        dim = m["embedding_dim"]
        movie_encoder = MovieEncoder(self.space.movies, self.space.movie_table, dim, m["l2"])
        encoder = SequenceEncoder(
            movie_encoder, self.length, dim, p.num_heads, p.num_blocks, p.dropout,
            causal=p.mode == "causal", use_ratings=p.use_ratings,
        )  # fmt: skip
        query = QueryTower(encoder, self._user_tower(), p.query_layers, dim, p.head_dropout,
                           p.head_batch_norm)  # fmt: skip
        rating = (
            RatingHead(
                dim, p.num_heads, p.rating_layers, p.head_dropout, p.head_batch_norm, self.mu
            )
            if self.predicts_ratings
            else None
        )
        pair = PairHead(p.rating_layers[-1:]) if p.pair_epochs > 0 else None
        model = SequenceModel(
            query, CandidateTower(movie_encoder), self.catalogue, rating, pair, m["temperature"],
            p.retrieval_weight if self.retrieves else 0.0, p.rating_weight if rating else 0.0,
            causal=p.mode == "causal",
        )  # fmt: skip
        model.compile(optimizer=make_optimizer(cfg["optimizer"], cfg["learning_rate"]))
        # Create every weight now, so load_weights and scoring work before any fit.
        sample = self.space.user_rows(self.space.users[:1])
        model.history_tower(sample)
        first = tf.constant(ids_as_strings(self.catalogue[:1]))
        model.candidate_tower(first)
        if rating is not None:
            model.rate(sample, first)
        if pair is not None:
            model.pair_rating(sample, sample, first)
        return model

    def _set_histories(self, ratings: pd.DataFrame) -> None:
        ids, values = history_tables(ratings, self.space.users, self.length)
        self.space.user_table[HISTORY] = ids
        self.space.user_table[HISTORY_RATINGS] = values
        self.space._user_cache = None  # the in-graph tables follow the new histories

    # ----- fitting ---------------------------------------------------------------------------------
    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        from tfrs_movies.training.fit import fit_keras

        m, p = self.config["model"], self.params
        tf.keras.utils.set_random_seed(self.config["seed"])
        user_features = [f for f in m["user_features"] if f != "history"]
        self.space = FeatureSpace.build(
            dataset, train, self.users, self.catalogue, user_features, m["movie_features"], self.length
        )
        self.mu = float(train[S.RATING].mean())
        self._set_histories(train)
        self.model = self._build()
        if p.mode == "causal":
            examples = causal_examples(train, self.length)
        else:
            examples = window_examples(train, p.window_length, p.window_step)
        features = self.space.user_rows(examples.user_id)
        features.update({HISTORY: examples.inputs, HISTORY_RATINGS: examples.input_ratings,
                         TARGETS: examples.targets, TARGET_RATINGS: examples.target_ratings})  # fmt: skip
        data = self._dataset(features, len(examples), p.repeat)
        if self.model.pair_head is not None:  # trained afterwards: no gradient-less weights meanwhile
            from tfrs_movies.training.optimizers import make_optimizer

            _set_trainable(self.model.pair_head, False)
            # tf-keras fits with the trainable state of compile time, so compile again after freezing.
            cfg = self.config["train"]
            self.model.compile(optimizer=make_optimizer(cfg["optimizer"], cfg["learning_rate"]))
        try:
            self.history = fit_keras(self, data, train, valid, **kwargs)
        finally:
            if self.model.pair_head is not None:
                _set_trainable(self.model.pair_head, True)
        if p.pair_epochs > 0:
            self.history["pair_loss"] = self._fit_pairs(train)

    def _dataset(self, features: dict[str, np.ndarray], n: int, repeat: int = 1) -> tf.data.Dataset:
        cfg = self.config["train"]
        ds = tf.data.Dataset.from_tensor_slices(features).cache()
        ds = ds.shuffle(
            max(1, min(n, cfg["shuffle_buffer"])), seed=self.config["seed"], reshuffle_each_iteration=True
        )
        return ds.repeat(max(1, repeat)).batch(cfg["batch_size"]).prefetch(tf.data.AUTOTUNE)

    def _fit_pairs(self, train: pd.DataFrame) -> list[float]:
        """Train the pair head on seed 004's pairs, the encoder and the rating head frozen."""
        from tfrs_movies.training.optimizers import make_optimizer

        p, cfg = self.params, self.config["train"]
        pairs = pair_examples(train, self.length, p.pairs_per_movie, self.config["seed"])
        features = {S.MOVIE_ID: pairs.movie_id, S.RATING: pairs.rating}
        for tag in ("a", "b"):
            rows = self.space.user_rows(getattr(pairs, f"user_{tag}"))
            rows[HISTORY] = getattr(pairs, f"history_{tag}")
            rows[HISTORY_RATINGS] = getattr(pairs, f"ratings_{tag}")
            features[tag] = rows
        frozen = (self.model.history_tower, self.model.candidate_tower, self.model.rating_head)
        for part in frozen:
            part.trainable = False
        self.model.phase = "pair"
        try:
            self.model.compile(optimizer=make_optimizer(cfg["optimizer"], cfg["learning_rate"]))
            done = self.model.fit(
                self._dataset(features, len(pairs)), epochs=p.pair_epochs, verbose=cfg["verbose"]
            )
        finally:
            self.model.phase = "main"
            for part in frozen:
                part.trainable = True
        return [float(v) for v in done.history["loss"]]

    def update_seen(self, ratings: pd.DataFrame) -> None:
        """Seen movies and the served histories both come from ``ratings`` (train + validation)."""
        super().update_seen(ratings)
        self._set_histories(ratings)
        self.on_weights_changed()

    def on_weights_changed(self) -> None:
        self._movie_vectors = None

    # ----- scoring ---------------------------------------------------------------------------------
    def user_rows(self, user_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The raw features the query tower reads for ``user_ids`` (unknown users: empty history)."""
        return self.space.user_rows(np.asarray(user_ids))

    def movie_embeddings(self) -> np.ndarray | None:
        if not self.retrieves:
            return None
        if self._movie_vectors is None:
            ids = ids_as_strings(self.catalogue)
            parts = [
                self.model.candidate_tower(tf.constant(ids[i : i + 8192])).numpy()
                for i in range(0, len(ids), 8192)
            ]
            self._movie_vectors = np.concatenate(parts).astype(np.float32)
        return self._movie_vectors

    def user_embeddings(self, user_ids: np.ndarray) -> np.ndarray:
        user_ids = np.asarray(user_ids)
        parts = [self.model.history_tower(self.user_rows(user_ids[i : i + 1024])).numpy()
                 for i in range(0, len(user_ids), 1024)]  # fmt: skip
        return (
            np.concatenate(parts)
            if parts
            else np.zeros((0, self.config["model"]["embedding_dim"]), np.float32)
        )

    def _score_users(self, user_ids: np.ndarray) -> np.ndarray:
        if self.retrieves:
            return (self.user_embeddings(user_ids) @ self.movie_embeddings().T).astype(np.float32)
        users = np.repeat(np.asarray(user_ids), len(self.catalogue))
        movies = np.tile(self.catalogue, len(user_ids))
        return self._rate(users, movies).reshape(len(user_ids), len(self.catalogue))

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self._score_users(self.users[user_index])

    def _score_unknown(self, user_ids: np.ndarray) -> np.ndarray:
        """Users known only by their features go through the towers with an empty history; the rest get
        popularity."""
        out = super()._score_unknown(user_ids)
        has_features = np.isin(user_ids, self.space.users)
        if has_features.any() and set(self.space.user_features) - {"id"}:
            out[has_features] = self._score_users(user_ids[has_features])
        return out

    def _encode(self, user_ids: np.ndarray):
        return self.model.history_tower.encode(self.user_rows(user_ids), False)

    def _rate(self, user_ids: np.ndarray, movie_ids: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """The rating head for (user, movie) pairs; each distinct user is encoded once."""
        uniq, inverse = np.unique(np.asarray(user_ids).astype(np.int64), return_inverse=True)
        out = np.empty(len(inverse), np.float32)
        movies = ids_as_strings(np.asarray(movie_ids))
        for u0 in range(0, len(uniq), 1024):
            states, valid, _, user = self._encode(uniq[u0 : u0 + 1024])
            rows = np.flatnonzero((inverse >= u0) & (inverse < u0 + 1024))
            for i in range(0, len(rows), chunk):
                part = rows[i : i + chunk]
                at = tf.constant(inverse[part] - u0)
                rating, _, _ = self.model.rate_encoded(
                    tf.gather(states, at), tf.gather(valid, at),
                    None if user is None else tf.gather(user, at), tf.constant(movies[part]),
                )  # fmt: skip
                out[part] = rating.numpy()
        return np.clip(out, *self.rating_scale)

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """The rating head's rating (clipped to the scale); retrieval-only models: the retrieval score."""
        if not self.predicts_ratings:
            return super().predict(user_ids, movie_ids)
        if len(user_ids) == 0:
            return np.zeros(0, np.float32)
        return self._rate(user_ids, movie_ids)

    def explain(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (user, movie): the user's history slots (B, L) str and the attention weight on each
        (B, L) float32 — the target movie's attention in the rating head, or, without one, the attention
        of the most recent slot (the retrieval query) in the last block. Padding slots weigh 0."""
        rows = self.user_rows(user_ids)
        if self.predicts_ratings:
            _, _, weights = self.model.rate(rows, tf.constant(ids_as_strings(np.asarray(movie_ids))))
        else:
            weights = self.model.query_attention(rows)
        return rows[HISTORY], weights.numpy().astype(np.float32)

    def predict_pair(self, users_a: np.ndarray, users_b: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Pair head: the predicted rating of each movie for the pair (users_a[i], users_b[i])."""
        if self.model.pair_head is None:
            raise ValueError("this sequence model has no pair head (set model.params.pair_epochs > 0)")
        rating = self.model.pair_rating(
            self.user_rows(users_a),
            self.user_rows(users_b),
            tf.constant(ids_as_strings(np.asarray(movie_ids))),
        )
        return np.clip(rating.numpy(), *self.rating_scale).astype(np.float32)

    # ----- persistence -----------------------------------------------------------------------------
    def _state(self) -> State:
        state = State.of({"mu": float(self.mu), "length": int(self.length), **keras_weights(self.model)})
        return state.nest("space", State.of(self.space.state()))

    def _restore(self, state: State) -> None:
        self.space = FeatureSpace.from_state(state.child("space").flat())
        self.mu, self.length = float(state["mu"]), int(state["length"])
        self.model = self._build()
        set_keras_weights(self.model, state)
        self._movie_vectors = None

    # ----- serving ---------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """With a retrieval head, dot form: the query tower over the user's served history and features
        (looked up in-graph), the movie vectors; request features too when the user tower reads a
        cold-start feature (a new user then has an empty history). Rating-only: the rating head over
        every catalogue movie (scorer form). Extras: ``explain`` (attention) and, with a pair head,
        ``pair`` SavedModels (:mod:`tfrs_movies.serving.sequence`)."""
        from tfrs_movies.serving.sequence import write_explain, write_pair

        extras = {"explain": lambda out: write_explain(self, out)}
        if self.model.pair_head is not None:
            extras["pair"] = lambda out: write_pair(self, out)
        if not self.retrieves:
            return ServingParts(scorer=RatingScorer(self), extras=extras)
        tower = self.model.history_tower
        cold = FeatureQuery(tower, self.space) if self.space.has_cold_start_user_features else None
        return ServingParts(
            query=TowerQuery(self.space, tower), candidates=self.movie_embeddings(), feature_query=cold,
            extras=extras,
        )  # fmt: skip


class RatingScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: the rating head of a rating-only sequence model over every catalogue
    movie (clipped to the rating scale), as :meth:`SequenceRecommender.score`; each user's history is
    encoded once, then rated against the whole catalogue."""

    def __init__(self, model: SequenceRecommender) -> None:
        super().__init__()
        lookup, tensors = lookup_tables(model.space.users, model.space.user_table)
        self.lookup = lookup
        self.tables = {name: tf.Variable(value, trainable=False) for name, value in tensors.items()}
        self.keras = model.model
        self.catalogue = tf.constant(ids_as_strings(model.catalogue))
        self.low, self.high = (float(x) for x in model.rating_scale)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        rows = self.lookup(user_id)
        features = {name: tf.gather(table, rows) for name, table in self.tables.items()}
        features[S.USER_ID] = user_id
        states, valid, _, user = self.keras.history_tower.encode(features, False)
        n = tf.shape(self.catalogue)[0]

        def one(i: tf.Tensor) -> tf.Tensor:
            at = tf.fill([n], i)
            rating, _, _ = self.keras.rate_encoded(
                tf.gather(states, at), tf.gather(valid, at),
                None if user is None else tf.gather(user, at), self.catalogue,
            )  # fmt: skip
            return tf.cast(rating, tf.float32)

        ratings = tf.map_fn(one, tf.range(tf.shape(user_id)[0]), fn_output_signature=tf.TensorSpec([None]))
        return tf.clip_by_value(ratings, self.low, self.high)
