import numpy as np
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.pipeline import make_dataset, ratings_features
from tfrs_movies.features.preprocessing import (
    genre_multi_hot,
    id_lookup,
    numeric_normalizer,
    pad_genres,
    strip_year,
    title_vectorizer,
)


def test_id_lookup_has_an_oov_slot_for_unseen_ids():
    lookup = id_lookup([3, 1, 2])
    out = lookup(tf.constant(["1", "2", "3", "999"])).numpy()
    assert sorted(out[:3]) == [1, 2, 3]
    assert out[3] == 0
    assert lookup.vocabulary_size() == 4


def test_numeric_normalizer_imputes_nan():
    layer = numeric_normalizer([10.0, np.nan, 30.0])
    out = layer(tf.constant([10.0, 20.0, 30.0])).numpy()
    assert np.isclose(out[1], 0.0, atol=1e-6)
    assert np.isclose(out[0], -out[2])


def test_genre_multi_hot():
    layer = genre_multi_hot(["Action", "Comedy", "Drama"])
    out = layer(tf.constant(pad_genres([("Comedy", "Drama"), ()], width=3))).numpy()
    assert out.tolist() == [[0, 1, 1], [0, 0, 0]]


def test_title_tokens_without_year():
    assert strip_year("Toy Story (1995)") == "Toy Story"
    layer = title_vectorizer(["Toy Story (1995)", "Story of Us, The (1999)"], sequence_length=4)
    tokens = layer(tf.constant(["Toy Story"])).numpy()[0]
    assert (tokens[:2] > 1).all() and (tokens[2:] == 0).all()


def test_tf_data_pipeline_batches_dicts_and_is_seeded(tiny_world):
    features = ratings_features(tiny_world.dataset.ratings.head(100))
    ds = make_dataset(features, batch_size=32, shuffle=True, seed=1)
    first = next(iter(ds))
    assert set(first) == {S.USER_ID, S.MOVIE_ID, S.RATING}
    assert first[S.USER_ID].dtype == tf.string and first[S.RATING].dtype == tf.float32
    assert first[S.USER_ID].shape == (32,)
    again = next(iter(make_dataset(features, batch_size=32, shuffle=True, seed=1)))
    assert (first[S.MOVIE_ID].numpy() == again[S.MOVIE_ID].numpy()).all()
    assert sum(int(b[S.RATING].shape[0]) for b in ds) == 100


def test_a_large_vocabulary_is_not_tracked_item_by_item():
    """Keras walks a model's tracked structures whenever it collects its layers (every batch, for the
    progress bar): a vocabulary held as a list made that walk as long as the vocabulary."""
    import collections

    import tensorflow as tf

    from tfrs_movies.features.preprocessing import genre_multi_hot, id_lookup
    from tfrs_movies.features.side import lookup_tables

    ids = np.arange(20_000)
    table_lookup, _ = lookup_tables(ids, {"year": np.zeros(len(ids), np.float32)})
    model = tf.keras.Sequential([tf.keras.layers.Input((), dtype=tf.string), id_lookup(ids)])
    model.extra = [table_lookup, genre_multi_hot(["Drama", "Comedy"])]
    visited, queue = 0, collections.deque(model._self_tracked_trackables)
    while queue:
        item = queue.popleft()
        visited += 1
        queue.extend(getattr(item, "_self_tracked_trackables", None) or getattr(item, "_values", None) or [])
    assert visited < 200
    expected = sorted(str(i) for i in ids).index("5") + 1  # sorted as strings; 0 is out of vocabulary
    assert model(tf.constant(["5", "nope"])).numpy().tolist() == [expected, 0]
