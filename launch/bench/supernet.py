"""`nas bench supernet RUN_DIR... TABLE`: how well trained supernets rank a table's archs.

Each run's own population evaluator (inherited weights, per-arch BatchNorm
recalibration, the run's validation split; in a split run, the sub-supernet
whose space holds the arch) scores every arch of the table;
Kendall τ and Spearman ρ against the table's mean test accuracy measure how well
one-shot training ranks, over all the table's archs and over those within the
run's budget. Further rankings are set beside it: GradSign at init, the blend of
the two (the mean of an arch's supernet rank and GradSign rank), the params
baseline (largest networks first, the most FLOPs first among equal sizes), and
the predictor, the run's retrain phase played on the table
(`search.predictor: ridge`): the baseline's k largest measured, then k more in
rounds of `search.round` by expected improvement within the trust region around
the best measured, each measurement one training seed of the table, the pick
the best measured; its τ and ρ are those of its last fit. The pick rows say what
retraining each ranking's top candidates would find: the table accuracy of the
first arch, and of the best of the top k (the predictor: of the pick, and of the
best of its 2k). With several runs every number is a mean ± sd over them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from launch import config as configs
from launch.bench import predictor as bench_predictor
from launch.bench import proxies as bench_proxies
from launch.bench.table import Table
from search import predictor


def supernet_scores(run_dir: Path, table: Table,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(supernet validation accuracy per table arch, within-budget flags, candidates k,
    predictor round)."""
    from launch.context import setup
    from launch.phases import search, supernet
    from launch.run import restore
    cfg = configs.load(Path(run_dir) / "config.yaml")
    if configs.uses_proxy(cfg):
        raise ValueError(f"run {str(run_dir)!r} searched with search.evaluator = {cfg.search.evaluator}: "
                         "it has no supernet")
    ctx = setup(cfg, run_dir, progress, read_only=True)
    try:
        state = restore(ctx)
        if not state.done(supernet.NAME):
            raise ValueError(f"run {str(run_dir)!r} has not finished training its supernet; "
                             f"run `nas resume {run_dir}` first")
        if ctx.space.without_sparsity().choices != table.space.choices:
            raise ValueError(f"run {str(run_dir)!r} searches space {ctx.space.name} with choices "
                             f"{ctx.space.choices}; the table's are {table.space.choices}")
        search.measure(ctx, state)
        archs = [ctx.space.validate(a) for a in table.archs]
        accuracy = np.array(search.score(ctx, state, archs))
        within = np.array([ctx.constraint is None or bool(ctx.constraint(a)) for a in archs])
        return accuracy, within, cfg.search.candidates, cfg.search.round
    finally:
        ctx.close()


def _ranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values)


def largest_first(table: Table) -> np.ndarray:
    """The params baseline's score: params, ties broken by FLOPs (a fraction below 1)."""
    return table.params + table.flops / (table.flops.max() + 1.0)


def predictor_row(table: Table, features: np.ndarray, score: np.ndarray, mask: np.ndarray, k: int,
                  round_: int, seed: int) -> dict:
    """The retrain phase on the archs of `mask`: the k largest measured, then k more in
    rounds of `round_` by ridge over `features` (standardized, one row per table arch) and
    expected improvement within the trust region around the first best measured (by the
    search's `score` while fewer than two are measured); a measurement is one training
    seed of the table (drawn by `seed`)."""
    rows = np.flatnonzero(mask)
    archs = [table.archs[r] for r in rows]
    noise = np.random.default_rng([seed, 2])
    measured: dict[int, float] = {}

    def measure(i):
        measured[i] = float(table.accuracy[rows[i], noise.integers(table.accuracy.shape[1])])

    def fit():
        order = list(measured)
        fitted = predictor.fit("ridge", features[rows[order]], np.array([measured[i] for i in order]),
                               seed=seed)
        return fitted.predict(features[rows])

    for i in np.argsort(-largest_first(table)[rows], kind="stable")[:k]:
        measure(int(i))
    target = min(2 * k, len(rows))
    while len(measured) < target:
        taken = np.isin(np.arange(len(rows)), list(measured))
        step = min(round_, target - len(measured))
        if len(measured) < 2:
            picked = predictor.top_untaken(np.asarray(score, np.float64)[rows], taken, step)
        else:
            mean, sd = fit()
            best = max(measured, key=measured.get)
            picked = predictor.top_near(table.space, archs, archs[best],
                                        predictor.expected_improvement(mean, sd, measured[best]), taken, step)
        for i in picked:
            measure(i)
    mean, _ = fit()
    truth = table.mean[rows]
    return {"archs": len(rows), "tau": float(stats.kendalltau(mean, truth).statistic),
            "rho": float(stats.spearmanr(mean, truth).statistic),
            "top1": float(truth[max(measured, key=measured.get)]),
            "topk": float(truth[list(measured)].max()), "best": float(truth.max())}


def study(table: Table, supernet: np.ndarray, gradsign: np.ndarray, within: np.ndarray, k: int,
          features: np.ndarray | None = None, round_: int = 1, seed: int = 0) -> dict:
    """Rank correlations and picks of the supernet, GradSign, their blend, params and, given
    the zero-cost `features` (float[n, f], standardized), the predictor (which adds the
    supernet's score to them)."""
    rankings = {"supernet": supernet, "gradsign": gradsign, "params": largest_first(table)}
    if features is not None:
        features = np.concatenate([features, predictor.standardize(supernet[:, None])], axis=1)
    out = {}
    for subset, mask in (("all", np.ones(len(table), bool)), ("budget", within)):
        if mask.sum() < 3 or (subset == "budget" and mask.all()):
            continue
        truth = table.mean[mask]
        blend = (_ranks(supernet[mask]) + _ranks(gradsign[mask])) / 2
        for name, score in {**{n: v[mask] for n, v in rankings.items()}, "blend": blend}.items():
            # Ties in the supernet's score are broken by nothing: stable order of the table.
            order = np.argsort(-score, kind="stable")
            out[(subset, name)] = {
                "archs": int(mask.sum()),
                "tau": float(stats.kendalltau(score, truth).statistic),
                "rho": float(stats.spearmanr(score, truth).statistic),
                "top1": float(truth[order[0]]), "topk": float(truth[order[:k]].max()),
                "best": float(truth.max())}
        if features is not None:
            out[(subset, "predictor")] = predictor_row(table, features, supernet, mask, k, round_, seed)
    return out


def report(results: list[dict], k: int) -> str:
    """The table of `study` results, one per run: mean ± sd over the runs (sd with several)."""
    several = len(results) > 1
    widths = (15, 15, 15, 15) if several else (7, 7, 13, 14)

    def cell(values, width):
        text = f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if several else "")
        return f"{text:>{width}}"
    titles = ("τ", "ρ", "pick (top 1)", f"best of top {k}")
    lines = [f"{'archs':<14} {'ranking':<9} " + " ".join(f"{t:>{w}}" for t, w in zip(titles, widths))
             + f" {'table best':>11}"]
    for key in dict.fromkeys(key for r in results for key in r):  # every run's rows, in order
        rows = [r[key] for r in results if key in r]
        subset, name = key
        sizes = sorted({r["archs"] for r in rows})  # a budget's archs can differ between runs
        label = f"{subset} ({sizes[0]}{f'–{sizes[-1]}' if len(sizes) > 1 else ''})"
        metrics = ("tau", "rho", "top1", "topk")
        cells = " ".join(cell([r[m] for r in rows], w) for m, w in zip(metrics, widths))
        lines.append(f"{label:<14} {name:<9} {cells} {np.mean([r['best'] for r in rows]):>11.4f}")
    return "\n".join(lines)


def run(run_dirs: list[Path], table: Table, top: int | None = None, progress: bool = True) -> list[dict]:
    """`top`: how many candidates a retrain would take (default: each run's search.candidates)."""
    gradsign = bench_proxies.scores(table, ["gradsign"], (0,), progress=progress)["gradsign"][0]
    columns = bench_proxies.scores(table, list(bench_predictor.FEATURES), (0,), progress=progress)
    features = predictor.standardize(predictor.feature_matrix({n: v[0] for n, v in columns.items()}))
    results, ks = [], []
    for seed, run_dir in enumerate(run_dirs):
        supernet, within, k, round_ = supernet_scores(run_dir, table, progress)
        ks.append(top or k)
        if ks[-1] != ks[0]:
            raise ValueError(f"bench supernet: {run_dirs[0]} retrains {ks[0]} candidates and {run_dir} "
                             f"{ks[-1]}; set --top K to judge them at one K")
        results.append(study(table, supernet, gradsign, within, ks[-1], features, round_, seed))
    runs = ", ".join(map(str, run_dirs))
    print(f"supernet of {runs} against {len(table)} archs of the table (test accuracy, mean over training "
          f"seeds{'; mean ± sd over the runs' if len(run_dirs) > 1 else ''}):")
    print(report(results, ks[0]))
    return results
