"""`nas bench supernet RUN_DIR TABLE`: how well a trained supernet ranks a table's archs.

The run's own population evaluator (inherited weights, per-arch BatchNorm
recalibration, the run's validation split; in a split run, the sub-supernet
whose space holds the arch) scores every arch of the table;
Kendall τ and Spearman ρ against the table's mean test accuracy measure how well
one-shot training ranks, over all the table's archs and over those within the
run's budget. Three further rankings are set beside it: GradSign at init, the
blend of the two (the mean of an arch's supernet rank and GradSign rank), and the
params baseline (largest networks first). The
pick rows say what retraining the run's top candidates by each ranking would
find: the table accuracy of the first arch, and of the best of the top k.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from launch import config as configs
from launch.bench import proxies as bench_proxies
from launch.bench.table import Table


def supernet_scores(run_dir: Path, table: Table, progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(supernet validation accuracy per table arch, within-budget flags, candidates k)."""
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
        return accuracy, within, cfg.search.candidates
    finally:
        ctx.close()


def _ranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values)


def study(table: Table, supernet: np.ndarray, gradsign: np.ndarray, within: np.ndarray, k: int) -> dict:
    """Rank correlations and picks of the supernet, GradSign, their blend and params."""
    # params: the baseline "largest networks under the budget" (ties: the table's order).
    rankings = {"supernet": supernet, "gradsign": gradsign, "params": table.params.astype(np.float64)}
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
    return out


def report(result: dict, k: int) -> str:
    lines = [f"{'archs':<14} {'ranking':<9} {'τ':>7} {'ρ':>7} {'pick (top 1)':>13} "
             f"{f'best of top {k}':>14} {'table best':>11}"]
    for (subset, name), r in result.items():
        label = f"{subset} ({r['archs']})"
        lines.append(f"{label:<14} {name:<9} {r['tau']:>7.3f} {r['rho']:>7.3f} {r['top1']:>13.4f} "
                     f"{r['topk']:>14.4f} {r['best']:>11.4f}")
    return "\n".join(lines)


def run(run_dir: Path, table: Table, top: int | None = None, progress: bool = True) -> dict:
    """`top`: how many candidates a retrain would take (default: the run's search.candidates)."""
    supernet, within, k = supernet_scores(run_dir, table, progress)
    k = top or k
    gradsign = bench_proxies.scores(table, ["gradsign"], (0,), progress=progress)["gradsign"][0]
    result = study(table, supernet, gradsign, within, k)
    print(f"supernet of {run_dir} against {len(table)} archs of the table "
          "(test accuracy, mean over training seeds):")
    print(report(result, k))
    return result
