"""Performance predictors: an arch's accuracy learnt from its features and the few archs
a run measured for real (BANANAS, BRP-NAS; proxies as features: NAS-Bench-Suite-Zero).

Features of an arch (`feature_matrix`) are cheap numbers known for every arch of a pool:
zero-cost proxies at init, its supernet score where a supernet exists, short-training
accuracy, and its encoding (option indices scaled to [0, 1]). A predictor, registered by
name, is fitted on the measured rows and predicts every row with an uncertainty
(`predict -> (mean, sd)`). The acquisition functions then say which archs to measure
next: `expected_improvement` over the best measured so far, or `upper_bound`, within
a `trust_region` around the best measured network.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np
from scipy import special

from spaces.core import closest

UPPER_BOUND_BETA = 2.0      # sd multiples of `upper_bound`


def squash(values: np.ndarray) -> np.ndarray:
    """sign(v) · log(1 + |v|): one monotone scale for counts (params, FLOPs), products over
    layers (synflow) and log-determinants (naswot) alike."""
    values = np.asarray(values, np.float64)
    return np.sign(values) * np.log1p(np.abs(values))


def feature_matrix(columns: dict[str, np.ndarray], encodings: np.ndarray | None = None,
                   options: np.ndarray | None = None) -> np.ndarray:
    """float[n, f]: each named column (n scores, not-a-number → the column's lowest) squashed,
    then each encoding column (option indices `encodings` int[n, c], `options` int[c] options
    per choice) scaled to [0, 1]. Columns in sorted name order."""
    out = []
    for name in sorted(columns):
        column = squash(columns[name])
        finite = np.isfinite(column)
        if not finite.any():
            raise ValueError(f"feature {name!r} is not a number for any arch")
        out.append(np.where(finite, column, column[finite].min()))
    if encodings is not None:
        scale = np.maximum(np.asarray(options, np.float64) - 1, 1)
        out.extend((np.asarray(encodings, np.float64) / scale).T)
    if not out:
        raise ValueError("feature_matrix needs at least one column")
    return np.stack(out, axis=1)


def standardize(features: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and sd 1 over the rows (a constant column to 0)."""
    sd = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


@dataclasses.dataclass
class Fitted:
    """A fitted predictor: `predict(features[n, f]) -> (mean[n], sd[n])`."""
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


_REGISTRY: dict[str, Callable[..., Fitted]] = {}


def register(name: str):
    """Register `fit(features[m, f], targets[m], seed) -> Fitted` under `name` (a decorator)."""
    def add(fn):
        if name in _REGISTRY:
            raise ValueError(f"predictor {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def fit(name: str, features: np.ndarray, targets: np.ndarray, seed: int = 0) -> Fitted:
    """Predictor `name` fitted on rows `features` [m, f] with measured `targets` [m]."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown predictor {name!r}{closest(name, _REGISTRY)}; predictors are {names()}")
    features, targets = np.asarray(features, np.float64), np.asarray(targets, np.float64)
    if features.ndim != 2 or len(features) != len(targets) or len(targets) < 2:
        raise ValueError(f"predictor {name}: needs ≥ 2 measured rows features [m, f] and targets [m]; "
                         f"got {features.shape} and {targets.shape}")
    return _REGISTRY[name](features, targets, seed)


@register("forest")
def forest(features: np.ndarray, targets: np.ndarray, seed: int) -> Fitted:
    """A random forest (200 trees, half the features per split); sd across the trees."""
    from sklearn.ensemble import RandomForestRegressor
    model = RandomForestRegressor(200, max_features=0.5, min_samples_leaf=2, random_state=seed)
    model.fit(features, targets)

    def predict(rows):
        per_tree = np.stack([tree.predict(rows) for tree in model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)
    return Fitted(predict)


@register("gp")
def gaussian_process(features: np.ndarray, targets: np.ndarray, seed: int) -> Fitted:
    """A Gaussian process: constant × Matern-5/2 with one length scale per feature, plus
    white noise (label noise: training seeds disagree); targets normalised."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor, kernels
    kernel = kernels.ConstantKernel() * kernels.Matern(np.ones(features.shape[1]), nu=2.5) \
        + kernels.WhiteKernel(0.1)
    with warnings.catch_warnings():  # a feature it ignores runs its length scale to the bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed).fit(features, targets)
    return Fitted(lambda rows: model.predict(rows, return_std=True))


@register("ridge")
def ridge(features: np.ndarray, targets: np.ndarray, seed: int) -> Fitted:
    """Bayesian linear regression (sklearn's BayesianRidge): the posterior mean and sd."""
    from sklearn.linear_model import BayesianRidge
    model = BayesianRidge().fit(features, targets)
    return Fitted(lambda rows: model.predict(rows, return_std=True))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(f − best, 0)] for f ~ N(mean, sd²): (μ − best) Φ(z) + σ φ(z), z = (μ − best)/σ;
    max(μ − best, 0) where σ = 0."""
    mean, sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
    gain = mean - best
    safe = np.where(sd > 0, sd, 1.0)
    z = gain / safe
    improvement = gain * special.ndtr(z) + safe * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return np.where(sd > 0, improvement, np.maximum(gain, 0.0))


def upper_bound(mean: np.ndarray, sd: np.ndarray, beta: float = UPPER_BOUND_BETA) -> np.ndarray:
    """μ + β σ."""
    return np.asarray(mean, np.float64) + beta * np.asarray(sd, np.float64)


def top_untaken(score: np.ndarray, taken: np.ndarray, k: int) -> list[int]:
    """The `k` rows of highest `score` not yet `taken` (bool[n]); ties to the lower row."""
    order = np.lexsort((np.arange(len(score)), -np.asarray(score, np.float64)))
    return [int(i) for i in order if not taken[i]][:k]


def distance(space, a: dict, b: dict) -> int:
    """How many decisions two networks' canonical forms differ in."""
    a, b = space.canonical(a), space.canonical(b)
    return sum(a[k] != b[k] for k in a)


def trust_region(space, archs: list[dict], centre: dict, taken: np.ndarray, k: int) -> np.ndarray:
    """bool[n]: the networks within the smallest distance of `centre` (decisions changed, from
    1 up) that holds `k` untaken ones; every network when none does."""
    far = np.array([distance(space, a, centre) for a in archs])
    for radius in range(1, int(far.max(initial=0)) + 1):
        inside = far <= radius
        if (inside & ~taken).sum() >= k:
            return inside
    return np.ones(len(archs), bool)


def top_near(space, archs: list[dict], centre: dict, value: np.ndarray, taken: np.ndarray,
             k: int) -> list[int]:
    """`top_untaken` of `value` within the `trust_region` around `centre`."""
    inside = trust_region(space, archs, centre, taken, k)
    return top_untaken(np.where(inside, value, -np.inf), taken, k)
