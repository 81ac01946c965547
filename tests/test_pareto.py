"""NSGA-II pieces against brute force over all pairs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search import pareto


def _brute_fronts(scores):
    left, fronts = list(range(len(scores))), []
    while left:
        front = [i for i in left if not any(pareto.dominates(scores[j], scores[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25), st.integers(1, 3), st.integers(0, 10**6))
def test_non_dominated_sort_equals_brute_force(n, m, seed):
    # Small integer scores make ties and duplicates common.
    scores = np.random.default_rng(seed).integers(0, 4, size=(n, m)).astype(float)
    assert pareto.non_dominated_sort(scores) == _brute_fronts(scores)


def test_hand_made_front():
    # (accuracy, −params): 0 and 1 trade off, 2 is dominated by 1, 3 by everyone.
    scores = [(0.9, -100), (0.8, -10), (0.7, -20), (0.1, -500)]
    assert pareto.non_dominated_sort(scores) == [[0, 1], [2], [3]]


def test_crowding_distance_hand_computed():
    scores = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = pareto.crowding_distance(scores)
    assert np.isinf(d[0]) and np.isinf(d[3])
    # member 1: neighbours 0 and 2 → (3−0)/4 + (4−1)/4; member 2: (4−1)/4 + (3−0)/4
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.5)


def test_nsga2_select_takes_whole_fronts_then_the_least_crowded():
    scores = np.array([[5, 0], [0, 5], [3, 3], [2.9, 2.9], [1, 1], [4, 1], [1, 4]])
    fronts = pareto.non_dominated_sort(scores)
    assert fronts[0] == [0, 1, 2, 5, 6]
    chosen = pareto.nsga2_select(scores, 3)
    assert 0 in chosen and 1 in chosen and len(chosen) == 3  # extremes have infinite distance
    assert set(pareto.nsga2_select(scores, 6)) == {0, 1, 2, 5, 6, 3}
    with pytest.raises(ValueError, match=r"\[n, objectives\]"):
        pareto.non_dominated_sort([1.0, 2.0])
