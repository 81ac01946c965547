"""Performance predictors and acquisition functions (search.predictor)."""
import math

import numpy as np
import pytest

import spaces
from search import predictor


def test_squash_is_signed_log1p():
    assert np.allclose(predictor.squash([0.0, math.e - 1, -(math.e - 1), 1e6]),
                       [0.0, 1.0, -1.0, math.log1p(1e6)])


def test_feature_matrix_orders_names_fills_nan_and_scales_encodings():
    out = predictor.feature_matrix({"b": np.array([0.0, 1.0, np.nan]), "a": np.array([3.0, 0.0, 7.0])},
                                   np.array([[0, 2], [1, 0], [2, 1]]), np.array([3, 3]))
    expected = np.array([[math.log1p(3), 0.0, 0.0, 1.0],
                         [0.0, math.log1p(1), 0.5, 0.0],
                         [math.log1p(7), 0.0, 1.0, 0.5]])
    assert np.allclose(out, expected)
    with pytest.raises(ValueError, match="'x' is not a number for any arch"):
        predictor.feature_matrix({"x": np.array([np.nan, -np.inf])})


def test_standardize():
    out = predictor.standardize(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert np.allclose(out, [[-1.0, 0.0], [1.0, 0.0]])


def test_expected_improvement_matches_monte_carlo_and_limits():
    rng = np.random.default_rng(0)
    mean, sd, best = np.array([0.9, 0.95, 0.97]), np.array([0.02, 0.01, 0.03]), 0.96
    draws = mean + sd * rng.standard_normal((400_000, 3))
    reference = np.maximum(draws - best, 0).mean(axis=0)
    assert np.allclose(predictor.expected_improvement(mean, sd, best), reference, rtol=0.02, atol=1e-5)
    assert np.allclose(predictor.expected_improvement([0.9, 0.99], [0.0, 0.0], 0.96), [0.0, 0.03])


def test_upper_bound_and_top_untaken():
    assert np.allclose(predictor.upper_bound([1.0, 2.0], [0.5, 0.0], beta=2.0), [2.0, 2.0])
    taken = np.array([False, True, False, False])
    assert predictor.top_untaken(np.array([0.5, 0.9, 0.5, 0.7]), taken, 2) == [3, 0]


@pytest.mark.parametrize("name", predictor.names())
def test_predictors_learn_a_monotone_trend_with_uncertainty(name):
    """Fitted on 24 rows of a noisy trend, each ranks 40 unseen rows well and is less sure
    far from its data than on it."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 2))
    y = 0.8 + 0.15 * x[:, 0] + 0.002 * rng.standard_normal(64)
    fitted = predictor.fit(name, x[:24], y[:24], seed=0)
    mean, sd = fitted.predict(x[24:])
    assert mean.shape == sd.shape == (40,) and np.all(sd >= 0)
    assert np.corrcoef(mean, y[24:])[0, 1] > 0.9
    far = fitted.predict(np.array([[4.0, 4.0]]))[1][0]
    assert far > np.median(fitted.predict(x[:24])[1])


def test_fit_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown predictor 'forst'.*forest"):
        predictor.fit("forst", np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="≥ 2 measured rows"):
        predictor.fit("forest", np.zeros((1, 1)), np.zeros(1))


def test_trust_region_is_the_smallest_radius_around_the_centre_with_k_untaken():
    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3, 5), depths=(1,)).bind((16, 1), 3)
    centre = {"channels_0": 4, "kernel_0": 3, "depth_0": 1, "channels_1": 4, "kernel_1": 3, "depth_1": 1,
              "channels_2": 4, "kernel_2": 3, "depth_2": 1}
    one = {**centre, "channels_0": 8}
    two = {**centre, "channels_0": 8, "kernel_2": 5}
    three = {**two, "channels_1": 8}
    archs = [three, centre, two, one]
    assert [predictor.distance(space, a, centre) for a in archs] == [3, 0, 2, 1]
    taken = np.array([False, True, False, False])  # the centre is measured
    assert predictor.trust_region(space, archs, centre, taken, 1).tolist() == [False, True, False, True]
    assert predictor.trust_region(space, archs, centre, taken, 2).tolist() == [False, True, True, True]
    assert predictor.trust_region(space, archs, centre, taken, 3).all()
    assert predictor.trust_region(space, archs, centre, taken, 4).all()  # none holds 4: everything
    # The best value lies three decisions out; one pick stays at radius 1, three reach it.
    value = np.array([9.0, 0.0, 5.0, 1.0])
    assert predictor.top_near(space, archs, centre, value, taken, 1) == [3]
    assert predictor.top_near(space, archs, centre, value, taken, 3) == [0, 2, 3]
