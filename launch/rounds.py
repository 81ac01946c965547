"""What the retrain phase retrains, and in which order: the params baseline, the search's
top candidates, or rounds picked by a performance predictor (`search.predictor`).

The params baseline is "the largest networks within the budget": the
`search.candidates` largest distinct networks (parameters; nonzeros in a sparse
run; of equal size, the most FLOPs first) that satisfy the run's constraint, over
the whole space when it is small enough to enumerate, else over the archs the
search evaluated. Many networks can share the largest size (27 of cnn1d's at
4,994 params), and FLOPs tell them apart: capacity early, at full resolution,
costs FLOPs but no extra params (docs/search.md has the measurements).

A predictor round fits `search.predictor` on every arch retrained so far (its
validation accuracy) over the features of a pool — the distinct networks the
search evaluated, the baseline's, and the neighbours (one decision changed, within
the constraint) of each round's best measured network — and retrains the
`search.round` unmeasured networks of highest acquisition (expected improvement
over the best measured, or an upper bound) within a trust region: the smallest
number of changed decisions around the best measured network that holds enough
unmeasured ones (BANANAS's local search over mutations of the best). Fitted on a
handful of networks, a predictor is least sure, so most hopeful, about the
farthest ones: without the region the acquisition goes to the pool's extremes.
The features are computed once per network, vmapped over the pool
(`search.proxies.score_population`), and kept in the run state.
"""
from __future__ import annotations

import numpy as np

from launch import config as configs
from launch.phases import search, supernet
from search import predictor, proxies


def key(space, arch: dict) -> tuple:
    """One network's identity: its canonical choices."""
    return tuple(space.canonical(arch).items())


def largest_within_budget(ctx, state, k: int, size) -> list[dict]:
    """The params baseline's picks: the `k` largest distinct networks (by `size(arch)`, then
    by FLOPs) within the run's constraint; of equal size and FLOPs the first met in
    enumeration order."""
    space = ctx.space
    if space.size() <= supernet.ENUMERATE_LIMIT:
        archs = space.enumerate(limit=supernet.ENUMERATE_LIMIT)
    else:
        archs = (a for a, _ in search.evaluated(ctx, state))
    networks = {}
    for arch in archs:
        if ctx.constraint is None or ctx.constraint(arch):
            networks.setdefault(key(space, arch), space.canonical(arch))
    ordered = sorted(networks.values(), key=lambda a: (-size(a), -space.flops(a)))  # stable on ties
    return ordered[:k]


def pool(ctx, state, extra: list[dict]) -> tuple[list[dict], list[float]]:
    """(distinct networks, their search score): those the search evaluated (the best score of
    a network's encodings) then `extra` ones it did not, scored now."""
    space, best = ctx.space, {}
    for arch, score in search.evaluated(ctx, state):
        k = key(space, arch)
        if k not in best or score > best[k][1]:
            best[k] = (space.canonical(arch), score)
    missing = unknown(space, extra, best)
    if missing:
        for arch, score in zip(missing, search.score(ctx, state, missing)):
            best[key(space, arch)] = (space.canonical(arch), float(score))
    archs = [a for a, _ in best.values()]
    return archs, [s for _, s in best.values()]


def unknown(space, archs: list[dict], known) -> list[dict]:
    """The distinct networks of `archs` (canonical) whose key is not in `known`."""
    out = {}
    for arch in archs:
        k = key(space, arch)
        if k not in known:
            out.setdefault(k, space.canonical(arch))
    return list(out.values())


def neighbours_within(ctx, arch: dict) -> list[dict]:
    """The networks one decision away from `arch` that satisfy the run's constraint."""
    return [a for a in ctx.space.neighbours(arch) if ctx.constraint is None or ctx.constraint(a)]


def grow(ctx, state, pool: dict, archs: list[dict]) -> int:
    """Add to `pool` ({archs, scores, columns}) the networks of `archs` it lacks, with their
    search score and features; how many were added."""
    missing = unknown(ctx.space, archs, {key(ctx.space, a) for a in pool["archs"]})
    if missing:
        scores = [float(s) for s in search.score(ctx, state, missing)]
        columns = feature_columns(ctx, missing, scores)
        pool["archs"] += missing
        pool["scores"] += scores
        for name, values in columns.items():
            pool["columns"][name] += values
    return len(missing)


def feature_columns(ctx, archs: list[dict], scores: list[float]) -> dict[str, list[float]]:
    """{feature: value per arch} of `search.features` (proxies at init, vmapped; the search's
    score); `encoding` is built from the archs when needed (`features`)."""
    out = {}
    for name in ctx.cfg.search.features:
        if name == "score":
            out[name] = list(map(float, scores))
        elif name != "encoding":
            evaluator = search.ProxyEvaluator(name, ctx)
            out[name] = proxies.score_population(name, ctx.space, archs, evaluator.x, evaluator.y,
                                                 seed=ctx.cfg.seed, chunk=evaluator.chunk).tolist()
    return out


def features(ctx, archs: list[dict], columns: dict) -> np.ndarray:
    """float[n, f]: the pool's standardized feature matrix."""
    encoding = None
    if "encoding" in ctx.cfg.search.features:
        encoding = np.stack([ctx.space.index_vector(a) for a in archs])
    options = np.array([len(v) for v in ctx.space.choices.values()])
    return predictor.standardize(predictor.feature_matrix(
        {k: np.asarray(v, np.float64) for k, v in columns.items()}, encoding, options))


def acquisition(cfg: configs.Config, mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    if cfg.search.acquisition == "ucb":
        return predictor.upper_bound(mean, sd)
    return predictor.expected_improvement(mean, sd, best)


def next_round(ctx, archs: list[dict], scores: list[float], matrix: np.ndarray, measured: dict,
               planned: set, k: int) -> list[tuple[dict, float]]:
    """The next `k` (arch, search score) to retrain: by the predictor fitted on `measured`
    ({network key: val accuracy, in the order measured}) when it holds ≥ 2 networks, within
    the trust region around the best measured (the first of equals), else by the search's
    score; never one already `planned` (keys)."""
    keys = [key(ctx.space, a) for a in archs]
    taken = np.array([k_ in planned for k_ in keys])
    rows = [i for i, k_ in enumerate(keys) if k_ in measured]
    if len(rows) >= 2:
        fitted = predictor.fit(ctx.cfg.search.predictor, matrix[rows],
                               np.array([measured[keys[i]] for i in rows]), seed=ctx.cfg.seed)
        mean, sd = fitted.predict(matrix)
        # The first measured of the best (as the retrain phase grows the pool around it).
        best = keys.index(max(measured, key=measured.get))
        picked = predictor.top_near(ctx.space, archs, archs[best],
                                    acquisition(ctx.cfg, mean, sd, measured[keys[best]]), taken, k)
    else:
        picked = predictor.top_untaken(np.asarray(scores, np.float64), taken, k)
    return [(archs[i], float(scores[i])) for i in picked]
