"""`nas bench predictor TABLE`: how well a predictor fitted on a few measured archs ranks
the rest of a table, against ranking by any one feature.

Each draw takes `labels` archs of the table at random as the measured ones (their mean
test accuracy is the label), fits each predictor (`search.predictor`) on them over the
features (zero-cost proxies at init of `launch.bench.proxies`, with the init seed
`draw % seeds`; optionally the arch encoding and extra columns such as a supernet's
scores), and judges its predicted mean on the other archs: Kendall τ over all of them
and over those within `max_params`. Every single feature, and `vote` (the mean of the
features' ranks: a zero-training ensemble), is judged on the same held-out archs.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from launch.bench import proxies as bench_proxies
from launch.bench.table import Table
from search import predictor

FEATURES = ("naswot", "flops", "params")


def _tau(score: np.ndarray, truth: np.ndarray) -> float:
    return float(stats.kendalltau(np.asarray(score, np.float64), truth).statistic)


def study(table: Table, columns: dict[str, np.ndarray], names=("ridge",), labels: int = 16,
          draws: int = 10, max_params: int | None = None, encoding: bool = False,
          seed: int = 0) -> dict[str, np.ndarray]:
    """{ranking: float[draws, 2]}: Kendall τ on the held-out archs, over all of them and over
    those with at most `max_params` parameters (NaN without a budget). `columns`: {feature:
    float[seeds, n]} scores per init seed (a feature known once is one row)."""
    rng = np.random.default_rng(seed)
    within = np.ones(len(table), bool) if max_params is None else table.params <= max_params
    options = np.array([len(v) for v in table.space.choices.values()])
    codes = np.stack([table.space.index_vector(a) for a in table.archs]) if encoding else None
    out: dict[str, list] = {}
    for draw in range(draws):
        fit = rng.choice(len(table), labels, replace=False)
        rest = np.setdiff1d(np.arange(len(table)), fit)
        budget = rest[within[rest]]
        current = {n: np.asarray(v, np.float64)[draw % len(v)] for n, v in columns.items()}
        matrix = predictor.standardize(predictor.feature_matrix(current, codes, options))
        rankings = {**{n: np.nan_to_num(v, nan=-np.inf) for n, v in current.items()},
                    "vote": sum(stats.rankdata(np.nan_to_num(v, nan=-np.inf)) for v in current.values()),
                    **{n: predictor.fit(n, matrix[fit], table.mean[fit], seed=draw).predict(matrix)[0]
                       for n in names}}
        for name, score in rankings.items():
            out.setdefault(name, []).append(
                (_tau(score[rest], table.mean[rest]),
                 _tau(score[budget], table.mean[budget]) if max_params is not None else np.nan))
    return {name: np.array(rows) for name, rows in out.items()}


def report(result: dict, labels: int, draws: int, max_params: int | None) -> str:
    budget = f"≤ {max_params:,} params" if max_params is not None else "no budget"
    lines = [f"Kendall τ on the held-out archs ({labels} measured at random, {draws} draws; "
             "mean ± sd over draws)", f"{'ranking':<10} {'all archs':>16} {budget:>16}"]
    for name, rows in sorted(result.items(), key=lambda item: -np.nanmean(item[1][:, 0])):
        cells = [f"{np.mean(rows[:, i]):>8.3f} ± {np.std(rows[:, i]):.3f}" if not np.isnan(rows[:, i]).all()
                 else f"{'—':>16}" for i in (0, 1)]
        lines.append(f"{name:<10} {cells[0]} {cells[1]}")
    return "\n".join(lines)


def run(table: Table, features=FEATURES, names=("ridge",), labels: int = 16, draws: int = 10,
        max_params: int | None = None, seeds: int = 3, encoding: bool = False, progress: bool = True) -> dict:
    """Score the features, study, print; returns the study."""
    for name in names:
        if name not in predictor.names():
            raise ValueError(f"bench predictor: unknown predictor {name!r}; predictors are "
                             f"{predictor.names()}")
    if not 2 <= labels < len(table):
        raise ValueError(f"bench predictor: --labels must be in [2, {len(table)}), got {labels}")
    columns = bench_proxies.scores(table, list(features), tuple(range(seeds)), progress=progress)
    result = study(table, columns, names, labels, draws, max_params, encoding)
    print(report(result, labels, draws, max_params))
    return result
