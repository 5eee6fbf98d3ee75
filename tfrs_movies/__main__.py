"""``python -m tfrs_movies``: the same as the ``tfrs-movies`` command (:mod:`tfrs_movies.commands`)."""

import sys

from tfrs_movies.commands import main

if __name__ == "__main__":
    sys.exit(main())
