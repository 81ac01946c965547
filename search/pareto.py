"""Multi-objective ranking for NSGA-II (Deb et al. 2002): non-dominated sorting and
crowding distance. Every objective is maximised (negate costs such as params).
"""
from __future__ import annotations

import numpy as np


def dominates(a, b) -> bool:
    """a is at least as good as b everywhere and strictly better somewhere."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.all(a >= b) and np.any(a > b))


def non_dominated_sort(scores) -> list[list[int]]:
    """Fronts of indices: front 0 is the Pareto front, front i+1 is the Pareto front
    of what remains. `scores: [n, objectives]`. O(M·n²)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n, objectives], got shape {scores.shape}")
    n = len(scores)
    # better_eq[i, j]: i ≥ j in every objective; strictly[i, j]: i > j in one.
    better_eq = np.all(scores[:, None, :] >= scores[None, :, :], axis=-1)
    strictly = np.any(scores[:, None, :] > scores[None, :, :], axis=-1)
    dominated_by = (better_eq & strictly).T  # [j, i]: i dominates j
    remaining = np.ones(n, bool)
    fronts = []
    while remaining.any():
        counts = (dominated_by & remaining[None, :]).sum(1)
        front = np.flatnonzero(remaining & (counts == 0))
        fronts.append(front.tolist())
        remaining[front] = False
    return fronts


def crowding_distance(scores) -> np.ndarray:
    """Per member of one front: the sum over objectives of the normalised gap between
    its two neighbours; the extremes of each objective get infinity."""
    scores = np.asarray(scores, np.float64)
    n, m = scores.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(scores[:, k], kind="stable")
        values = scores[order, k]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def nsga2_select(scores, k: int) -> list[int]:
    """The `k` survivors of NSGA-II: whole fronts in order, the last one cut by
    descending crowding distance."""
    chosen: list[int] = []
    for front in non_dominated_sort(scores):
        if len(chosen) + len(front) <= k:
            chosen.extend(front)
            continue
        crowd = crowding_distance(np.asarray(scores, np.float64)[front])
        order = np.argsort(-crowd, kind="stable")
        chosen.extend(front[i] for i in order[:k - len(chosen)])
        break
    return chosen
