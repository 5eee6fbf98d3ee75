import numpy as np
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.pipeline import make_dataset, ratings_features
from tfrs_movies.features.side import FeatureSpace

ALL_USER = ("id", "gender", "occupation", "age", "zip", "history")
ALL_MOVIE = ("id", "genres", "year", "title", "tags", "imdb")


def _space(dataset, **kwargs):
    users = np.sort(dataset.ratings[S.USER_ID].unique())
    movies = dataset.movies[S.MOVIE_ID].to_numpy()
    return FeatureSpace.build(dataset, dataset.ratings, users, movies, **kwargs)


def test_features_a_dataset_lacks_are_left_out_with_one_line_each(tiny_world):
    dataset = tiny_world.dataset
    bare = S.Dataset("ml-latest", dataset.ratings, dataset.movies[[S.MOVIE_ID, S.TITLE, S.YEAR, S.GENRES]])
    space = _space(bare, user_features=ALL_USER, movie_features=ALL_MOVIE)
    assert space.user_features == ("id", "history")
    assert space.movie_features == ("id", "genres", "year", "title")
    assert len(space.notes) == 6  # gender, occupation, zip, age, tags, imdb
    assert all("ml-latest" in note and "left out" in note for note in space.notes)


def test_join_adds_side_features_and_masks_the_target_out_of_history(tiny_world):
    space = _space(tiny_world.dataset, user_features=ALL_USER, movie_features=ALL_MOVIE)
    assert not space.notes
    batch = next(iter(make_dataset(ratings_features(tiny_world.dataset.ratings), 64).map(space.join)))
    history = batch["history"].numpy()
    targets = batch[S.MOVIE_ID].numpy()
    assert history.shape == (64, 50)
    assert not (history == targets[:, None]).any()
    assert batch["genres"].dtype == tf.string and batch["age"].dtype == tf.float32


def test_unknown_ids_get_default_rows(tiny_world):
    space = _space(tiny_world.dataset, user_features=ALL_USER, movie_features=ALL_MOVIE)
    rows = space.user_rows(np.array([10**9]))
    assert (rows["history"] == "").all() and rows["gender"][0] == ""
    movie = space.movie_rows(np.array([10**9]))
    assert np.isfinite(movie["year"]).all() and (movie["genres"] == "").all()


def test_one_space_joins_in_any_number_of_pipelines(tiny_world):
    """The first join is traced inside a tf.data map; a second pipeline (a profile, a resumed fit)
    and an eager call reuse the same space's tables."""
    space = _space(tiny_world.dataset, user_features=ALL_USER, movie_features=ALL_MOVIE)
    features = ratings_features(tiny_world.dataset.ratings)
    first = next(iter(make_dataset(features, 8).map(space.join)))
    second = next(iter(make_dataset(features, 8).map(space.join)))
    assert set(first) == set(second)
    eager = space.join({S.USER_ID: first[S.USER_ID], S.MOVIE_ID: first[S.MOVIE_ID]})
    np.testing.assert_array_equal(eager["year"].numpy(), first["year"].numpy())
