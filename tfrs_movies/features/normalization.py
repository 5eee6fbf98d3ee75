"""Per-user rating normalisation (seed 000): centre on the user's mean, scale into [-1, 1].

For user u with train ratings r: ``z = (r - mean_u) / scale_u`` where ``scale_u`` is the user's largest
absolute deviation from their mean (1 when every rating is equal), so every train rating lands in
[-1, 1]. :meth:`UserRatingNormalizer.inverse` is the exact inverse. Users unseen at fit time get the
global mean and the global scale, so a cold-start prediction still maps back onto the rating scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfrs_movies import schema as S


class UserRatingNormalizer:
    """Fit on a ratings frame; then ``transform(users, ratings)`` and ``inverse(users, z)`` (1-D arrays)."""

    def __init__(self) -> None:
        self.means: pd.Series | None = None
        self.scales: pd.Series | None = None
        self.global_mean = 0.0
        self.global_scale = 1.0

    def fit(self, ratings: pd.DataFrame) -> UserRatingNormalizer:
        grouped = ratings.groupby(S.USER_ID)[S.RATING]
        self.means = grouped.mean().astype(np.float64)
        deviation = (ratings[S.RATING] - ratings[S.USER_ID].map(self.means)).abs()
        scales = deviation.groupby(ratings[S.USER_ID]).max()
        self.scales = scales.where(scales > 0, 1.0).astype(np.float64)
        self.global_mean = float(ratings[S.RATING].mean())
        self.global_scale = float(max((ratings[S.RATING] - self.global_mean).abs().max(), 1e-9))
        return self

    def _params(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.means is None or self.scales is None:
            raise RuntimeError("UserRatingNormalizer.fit must be called first")
        index = pd.Index(np.asarray(users))
        mean = self.means.reindex(index).fillna(self.global_mean).to_numpy()
        scale = self.scales.reindex(index).fillna(self.global_scale).to_numpy()
        return mean, scale

    def transform(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        mean, scale = self._params(users)
        return (np.asarray(ratings, dtype=np.float64) - mean) / scale

    def inverse(self, users: np.ndarray, normalised: np.ndarray) -> np.ndarray:
        mean, scale = self._params(users)
        return np.asarray(normalised, dtype=np.float64) * scale + mean
