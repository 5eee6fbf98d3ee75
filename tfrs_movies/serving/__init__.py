"""Serving: export any model's SavedModels from its serving parts (top-K indexes, query tower, ranking,
extras) and load them to answer top-N questions."""

from tfrs_movies.serving.export import export_model, export_run
from tfrs_movies.serving.load import Exported, Recommendations, ServingError, load_export

__all__ = [
    "Exported",
    "Recommendations",
    "ServingError",
    "export_model",
    "export_run",
    "load_export",
]
