"""Most-rated movies first: the floor every model must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import ServingParts, UserTable
from tfrs_movies.models.state import State


@register
class PopularityRecommender(Recommender):
    """Scores every movie by its share of train ratings, the same for every user."""

    name = "popularity"
    uses_validation = False

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        pass  # the base class already counted popularity

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity, (len(user_index), 1))

    def _state(self) -> State:
        return State()  # the base class keeps the popularity itself

    def _restore(self, state: State) -> None:
        pass

    def serving_parts(self) -> ServingParts:
        """Dot form: every user's query is ``[1]``, every movie's candidate ``[popularity]``."""
        ones = np.ones((len(self.users), 1), np.float32)
        query = UserTable(self.users, ones, unknown=np.ones(1, np.float32))
        return ServingParts(query=query, candidates=self.popularity[:, None].astype(np.float32))
