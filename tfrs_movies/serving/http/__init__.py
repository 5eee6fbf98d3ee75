"""Serve an export over HTTP: the JSON API (:mod:`.app`), TensorFlow Serving's REST dialect
(:mod:`.tf_serving`) and the page (``python -m tfrs_movies.serve``).

Nothing is imported here, so that ``serve --help`` (which needs only :mod:`.settings`) loads no TensorFlow.
"""
