"""TensorBoard's embedding projector for movie vectors, labelled with titles.

TensorBoard's projector reads ``projector_config.pbtxt`` from the logdir's root and from its runs, a run
being a folder that holds an event file: the ``projector`` folder therefore holds one (a text summary
saying what the vectors are), so that ``tensorboard --logdir <run_dir>/tensorboard`` lists the movie
vectors under the run ``projector`` (and ``tensorboard --logdir runs`` under ``<run>/tensorboard/projector``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from tensorboard.plugins import projector

from tfrs_movies import schema as S
from tfrs_movies.io import atomic_file
from tfrs_movies.training.tensorboard import write_text

METADATA = "metadata.tsv"


def write_movie_projector(
    log_dir: str | Path, movie_ids: np.ndarray, vectors: np.ndarray, movies: pd.DataFrame
) -> Path:
    """Write ``vectors`` (n, d) of ``movie_ids`` (n,) with a metadata TSV (movie id, title, genres) and
    an event file under ``log_dir/projector``; returns that folder.

    Open with ``tensorboard --logdir <log_dir>`` -> Projector.
    """
    out = Path(log_dir) / "projector"
    out.mkdir(parents=True, exist_ok=True)
    table = movies.set_index(S.MOVIE_ID).reindex(movie_ids) if len(movies) else pd.DataFrame(index=movie_ids)
    titles = table[S.TITLE].fillna("").astype(str) if S.TITLE in table else pd.Series([""] * len(movie_ids))
    genres = (
        table[S.GENRES].apply(lambda g: "|".join(g) if isinstance(g, (tuple, list)) else "")
        if S.GENRES in table
        else pd.Series([""] * len(movie_ids))
    )
    with atomic_file(out / METADATA) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write("movie_id\ttitle\tgenres\n")
        for movie, title, genre in zip(movie_ids, titles, genres, strict=True):
            clean = title.replace("\t", " ").replace("\n", " ")
            handle.write(f"{movie}\t{clean}\t{genre}\n")
    weights = tf.Variable(np.asarray(vectors, dtype=np.float32), name="movie_embeddings")
    checkpoint = tf.train.Checkpoint(embedding=weights)
    checkpoint.save(str(out / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = METADATA
    projector.visualize_embeddings(str(out), config)
    for old in out.glob("events.out.tfevents.*"):  # a run written again into this folder: one file
        old.unlink()
    rows, dim = weights.shape
    about = f"{rows:,} movie vectors of dimension {dim}; metadata: movie id, title, genres ({METADATA})"
    write_text(out, "projector", about, step=0)
    return out
