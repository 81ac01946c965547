"""`nas bench proxies TABLE`: how well each zero-cost proxy ranks a table's archs.

Every proxy scores every arch of the table at initialisation, on the first
`examples` examples of a fixed shuffle of the table's training split, once per
init seed; Spearman ρ and Kendall τ against the table's mean test accuracy are
reported as mean ± sd over the init seeds. The PNG shows score against accuracy
per proxy (init seed 0).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from launch.bench.table import Table
from search import proxies


def examples_of(table: Table, examples: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): `examples` training examples of the table's data set, in a fixed shuffle."""
    from launch import data as datasets
    spec = table.info["data"]
    data = datasets.load(spec["name"], seed=0, val_fraction=0.0, **spec["options"])
    return data.sample(data.train, examples, seed)


def scores(table: Table, names, seeds=(0,), examples: int = 128, progress: bool = True) -> dict:
    """{proxy: float[len(seeds), len(table)]}: every proxy of every arch per init seed."""
    x, y = examples_of(table, examples)
    out = {}
    bar = tqdm(total=len(names) * len(seeds), desc="proxies", unit="proxy", disable=not progress)
    for name in names:
        rows = []
        for seed in seeds:
            bar.set_postfix(proxy=name, seed=seed)
            rows.append(proxies.score_population(name, table.space, table.archs, x, y, seed=seed))
            bar.update(1)
        out[name] = np.array(rows)
    bar.close()
    return out


def correlations(table: Table, proxy_scores: dict) -> dict[str, dict[str, float]]:
    """{proxy: {rho, rho_sd, tau, tau_sd}} against the table's mean accuracy."""
    result = {}
    for name, rows in proxy_scores.items():
        rho = [stats.spearmanr(r, table.mean).statistic for r in rows]
        tau = [stats.kendalltau(r, table.mean).statistic for r in rows]
        result[name] = {"rho": float(np.mean(rho)), "rho_sd": float(np.std(rho, ddof=1)) if len(rho) > 1
                        else 0.0, "tau": float(np.mean(tau)),
                        "tau_sd": float(np.std(tau, ddof=1)) if len(tau) > 1 else 0.0}
    return result


def plot(path: Path, table: Table, proxy_scores: dict, correlation: dict) -> None:
    from launch.plots import save, subplots
    names = list(proxy_scores)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        score = proxy_scores[name][0]
        log = np.all(score > 0) and score.max() / max(score.min(), 1e-30) > 100
        ax.scatter(score, table.mean, s=8, alpha=0.6)
        ax.set(xscale="log" if log else "linear", xlabel=name, ylabel="test accuracy",
               title=f"ρ {correlation[name]['rho']:.2f}  τ {correlation[name]['tau']:.2f}")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"zero-cost proxies on {table.space.name} ({len(table)} archs)")
    fig.tight_layout()
    save(fig, Path(path))


def report(table: Table, correlation: dict, seeds: int) -> str:
    lines = [f"{len(table)} archs of {table.space.name}, proxies at {seeds} init seed(s): "
             "rank correlation with the mean test accuracy (mean ± sd over init seeds)",
             f"{'proxy':<10} {'Spearman ρ':>16} {'Kendall τ':>16}"]
    for name, c in sorted(correlation.items(), key=lambda item: -item[1]["rho"]):
        lines.append(f"{name:<10} {c['rho']:>8.3f} ± {c['rho_sd']:.3f} {c['tau']:>8.3f} ± {c['tau_sd']:.3f}")
    return "\n".join(lines)


def run(table: Table, names=None, seeds: int = 3, examples: int = 128, png: Path | None = None,
        progress: bool = True) -> dict:
    """Score, correlate, plot; returns the correlations."""
    names = list(names or proxies.names())
    proxy_scores = scores(table, names, tuple(range(seeds)), examples, progress)
    correlation = correlations(table, proxy_scores)
    print(report(table, correlation, seeds))
    if png is not None:
        plot(png, table, proxy_scores, correlation)
        print(f"wrote {png}")
    return correlation
