"""Serving: export SavedModels (query tower, brute-force and ScaNN top-K, ranking) and load them."""

from tfrs_movies.serving.export import export_ranking, export_retrieval, export_run
from tfrs_movies.serving.load import Exported, Recommendations, ServingError, load_export

__all__ = [
    "Exported",
    "Recommendations",
    "ServingError",
    "export_ranking",
    "export_retrieval",
    "export_run",
    "load_export",
]
