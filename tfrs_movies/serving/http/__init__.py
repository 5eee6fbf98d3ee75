"""Serve an export over HTTP: the JSON API, TensorFlow Serving's REST dialect and the page
(``python -m tfrs_movies.serve``)."""

from tfrs_movies.serving.http.app import ServerSettings, create_app, warm_up

__all__ = ["ServerSettings", "create_app", "warm_up"]
