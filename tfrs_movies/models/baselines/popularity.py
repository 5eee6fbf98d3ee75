"""Most-rated movies first: the floor every model must beat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import register


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

    def _save_state(self, path: Path) -> None:
        pass

    def _load_state(self, path: Path) -> None:
        pass
