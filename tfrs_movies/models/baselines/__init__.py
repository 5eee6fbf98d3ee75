"""Classic baselines (NumPy / SciPy only), behind the same :class:`Recommender` interface."""

from tfrs_movies.models.baselines.popularity import PopularityRecommender

__all__ = ["PopularityRecommender"]
