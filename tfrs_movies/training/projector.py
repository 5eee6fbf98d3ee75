"""TensorBoard's embedding projector for movie vectors, labelled with titles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from tensorboard.plugins import projector

from tfrs_movies import schema as S
from tfrs_movies.io import atomic_file


def write_movie_projector(
    log_dir: str | Path, movie_ids: np.ndarray, vectors: np.ndarray, movies: pd.DataFrame
) -> Path:
    """Write ``vectors`` (n, d) with a metadata TSV (movie id, title, genres) under ``log_dir/projector``.

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
    with atomic_file(out / "metadata.tsv") as tmp, open(tmp, "w", encoding="utf-8") as handle:
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
    embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(out), config)
    return out
