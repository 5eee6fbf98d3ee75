"""Classic baselines (NumPy / SciPy only), behind the same :class:`Recommender` interface."""

from tfrs_movies.models.baselines.biases import BiasedRatingModel, BiasesRecommender
from tfrs_movies.models.baselines.ease import EASERecommender
from tfrs_movies.models.baselines.impute import HardImputeRecommender, SoftImputeRecommender
from tfrs_movies.models.baselines.knn import KNNBaselineRecommender
from tfrs_movies.models.baselines.popularity import PopularityRecommender
from tfrs_movies.models.baselines.svd import SVDRecommender

__all__ = [
    "BiasedRatingModel",
    "BiasesRecommender",
    "EASERecommender",
    "HardImputeRecommender",
    "KNNBaselineRecommender",
    "PopularityRecommender",
    "SVDRecommender",
    "SoftImputeRecommender",
]
