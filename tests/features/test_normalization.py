import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.features.normalization import UserRatingNormalizer


def test_user_normalisation_into_unit_range_and_exact_inverse(tiny_world):
    ratings = tiny_world.dataset.ratings
    norm = UserRatingNormalizer().fit(ratings)
    users, values = ratings[S.USER_ID].to_numpy(), ratings[S.RATING].to_numpy()
    z = norm.transform(users, values)
    assert np.abs(z).max() <= 1 + 1e-9
    assert np.isclose(np.abs(z).max(), 1.0)
    per_user_mean = pd.Series(z).groupby(users).mean()
    assert np.allclose(per_user_mean, 0, atol=1e-9)
    np.testing.assert_allclose(norm.inverse(users, z), values, rtol=0, atol=1e-9)


def test_constant_user_and_unknown_user():
    ratings = pd.DataFrame({S.USER_ID: [1, 1, 2, 2], S.RATING: [4.0, 4.0, 1.0, 5.0]})
    norm = UserRatingNormalizer().fit(ratings)
    assert np.allclose(norm.transform(np.array([1]), np.array([4.0])), 0.0)
    assert np.allclose(norm.transform(np.array([2, 2]), np.array([1.0, 5.0])), [-1, 1])
    # unknown user: global mean 3.5, global scale 2.5
    assert np.allclose(norm.inverse(np.array([99]), np.array([1.0])), 6.0)
