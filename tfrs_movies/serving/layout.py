"""What an export directory holds: its format number and the files without which it is incomplete.

Kept apart from :mod:`tfrs_movies.serving.export` (which imports TensorFlow) so that opening an export,
or telling a user that a path is not one, loads no TensorFlow.
"""

from __future__ import annotations

# Bumped when an export's layout or manifest changes in a way older readers cannot follow.
EXPORT_FORMAT = 1
REQUIRED_FILES = (
    "manifest.json", "movies.csv", "similar.npz", "seen.npz", "popularity.npy", "brute_force/saved_model.pb",
)  # fmt: skip
