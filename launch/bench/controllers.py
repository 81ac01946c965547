"""`nas bench controllers TABLE`: regret of each search controller on a table.

The search space is the table's networks. A controller's move that leaves the
table (a mutation or crossover of the space's own encoding) lands on the nearest
tabulated network (fewest option steps over the choices, ties at random), so
every controller searches the same finite set with its own rules. An evaluation
tells the controller the test accuracy of one training seed drawn at random (a
noisy measurement, as a real evaluation is); regret after e evaluations is the
table's best mean accuracy minus the best mean accuracy among the archs
evaluated so far. G-REA ranks its mutants by GradSign at init (free: computed
once for the table). Each controller runs `runs` times with different seeds.

Two rows besides the controllers:
- `params`, the params baseline as a search: the table's networks largest first, the
  most FLOPs first among equal sizes (networks of one size and FLOPs in a random order
  per run).
- `predictor`, rounds of one by Bayesian ridge (`search.predictor: ridge`): the two
  largest networks first, then each evaluation fits the predictor on every noisy
  measurement so far over zero-cost features at init (`launch.bench.predictor.FEATURES`)
  and evaluates the unmeasured network of highest expected improvement within the
  trust region around the best measured (`search.predictor.trust_region`; a table's
  networks are scattered, so the region is its nearest unmeasured ones).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from launch.bench import predictor as bench_predictor
from launch.bench import proxies as bench_proxies
from launch.bench.table import Table
from search import controllers, predictor
from spaces.core import Space

# Populations sized for a table of a few hundred networks, so evolution starts
# within the first 50 evaluations.
SETTINGS = {
    "random": {},
    "aging": {"population": 20, "sample": 5},
    "grea": {"population": 20, "sample": 5, "mutants": 10},
    "autoformer": {"population": 20, "parents": 5, "mutations": 10, "crossovers": 10},
    "nsga2": {"population": 20},
}


class TableSpace(Space):
    """The networks of a table as a space: the table space's choices, sampling among
    the table's archs, mutation and crossover mapped to the nearest tabulated arch."""

    def __init__(self, table: Table):
        super().__init__(table.space.choices, name=f"{table.space.name}-table")
        self.source = table.space
        self.rows = [self.validate(a) for a in table.archs]
        self._index = np.stack([self.index_vector(a) for a in self.rows]).astype(np.int64)
        self._row = {tuple(a.items()): i for i, a in enumerate(self.rows)}

    def _canonical(self, arch):
        return self.source._canonical(arch)

    def row(self, arch) -> int:
        return self._row[tuple(self.validate(arch).items())]

    def _nearest(self, arch, rng, avoid=None) -> dict:
        distance = np.abs(self._index - self.index_vector(arch)[None]).sum(1).astype(np.float64)
        if avoid is not None and len(self.rows) > 1:
            distance[avoid] = np.inf
        best = np.flatnonzero(distance == distance.min())
        return dict(self.rows[int(best[rng.integers(len(best))])])

    def sample(self, seed=0):
        rng = np.random.default_rng(seed)
        return dict(self.rows[int(rng.integers(len(self.rows)))])

    def mutate(self, arch, seed=0, prob=None):
        rng = np.random.default_rng(seed)
        moved = Space.mutate(self, arch, rng, prob)
        return self._nearest(moved, rng, avoid=self.row(arch))

    def crossover(self, a, b, seed=0):
        rng = np.random.default_rng(seed)
        return self._nearest(Space.crossover(self, a, b, rng), rng)


def regret_curves(table: Table, names, runs: int = 20, evaluations: int = 200,
                  gradsign: np.ndarray | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """{controller: float[runs, evaluations]}: regret after each evaluation."""
    space = TableSpace(table)
    best = float(table.mean.max())
    out = {}
    bar = tqdm(total=len(names) * runs, desc="controllers", unit="run", disable=not progress)
    for name in names:
        curves = np.zeros((runs, evaluations))
        for run in range(runs):
            # A table of a few hundred networks runs out of unseen ones: accept a repeat after
            # 200 tries rather than the default 10,000 (which only costs time here).
            options = {"max_tries": 200, **SETTINGS.get(name, {})}
            if name == "grea":
                options["scorer"] = lambda archs: [float(gradsign[space.row(a)]) for a in archs]
            ctrl = controllers.get(name, space, seed=run, **options)
            noise = np.random.default_rng([run, 1])
            found = -np.inf
            for e in range(evaluations):
                arch = ctrl.ask(1)[0]
                row = space.row(arch)
                ctrl.tell([arch], [float(table.accuracy[row, noise.integers(table.accuracy.shape[1])])])
                found = max(found, float(table.mean[row]))
                curves[run, e] = best - found
            bar.update(1)
        out[name] = curves
    bar.close()
    return out


def _regret(table: Table, order, evaluations: int) -> np.ndarray:
    """Regret after each of the first `evaluations` networks of `order` (the last value
    repeated once the table is spent)."""
    found = np.maximum.accumulate(table.mean[np.asarray(order)[:evaluations]])
    regret = float(table.mean.max()) - found
    return np.concatenate([regret, np.full(evaluations - len(regret), regret[-1])])


def params_curves(table: Table, runs: int, evaluations: int) -> np.ndarray:
    """float[runs, evaluations]: the params baseline's regret (largest networks first, then
    the most FLOPs)."""
    return np.stack([_regret(table, np.lexsort((np.random.default_rng([run, 3]).random(len(table)),
                                                -table.flops, -table.params)), evaluations)
                     for run in range(runs)])


def predictor_curves(table: Table, features: np.ndarray, runs: int, evaluations: int,
                     name: str = "ridge") -> np.ndarray:
    """float[runs, evaluations]: regret of evaluating, one at a time, the network of highest
    expected improvement under predictor `name` fitted on the noisy measurements so far."""
    largest = np.lexsort((-table.flops, -table.params))[:2]
    curves = []
    for run in range(runs):
        noise = np.random.default_rng([run, 1])
        taken, order, measured = np.zeros(len(table), bool), [], []
        for e in range(min(evaluations, len(table))):
            if e < len(largest):
                row = int(largest[e])
            else:
                fitted = predictor.fit(name, features[order], np.asarray(measured), seed=run)
                mean, sd = fitted.predict(features)
                best = order[int(np.argmax(measured))]
                row = predictor.top_near(table.space, table.archs, table.archs[best],
                                         predictor.expected_improvement(mean, sd, max(measured)), taken, 1)[0]
            taken[row] = True
            order.append(row)
            measured.append(float(table.accuracy[row, noise.integers(table.accuracy.shape[1])]))
        curves.append(_regret(table, order, evaluations))
    return np.stack(curves)


def report(curves: dict, at=(50, 200)) -> str:
    lines = ["regret (best mean test accuracy of the table − best found), mean ± sd over "
             f"{len(next(iter(curves.values())))} runs",
             f"{'controller':<11}" + "".join(f"{f'{e} evals':>20}" for e in at)]
    for name, c in curves.items():
        cells = "".join(f"{c[:, e - 1].mean():>12.4f} ± {c[:, e - 1].std(ddof=min(1, len(c) - 1)):.4f}"
                        if e <= c.shape[1] else f"{'—':>20}" for e in at)
        lines.append(f"{name:<11}{cells}")
    return "\n".join(lines)


def plot(path: Path, curves: dict, title: str) -> None:
    from launch.plots import save, subplots
    fig, ax = subplots(figsize=(6.5, 4.5))
    for name, c in curves.items():
        steps = np.arange(1, c.shape[1] + 1)
        mean, sd = c.mean(0), c.std(0)
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, np.maximum(mean - sd, 1e-6), mean + sd, alpha=0.15)
    ax.set(xlabel="evaluations", ylabel="regret (test accuracy)", yscale="log", title=title)
    ax.legend()
    save(fig, Path(path))


def run(table: Table, names=None, runs: int = 20, evaluations: int = 200, png: Path | None = None,
        progress: bool = True) -> dict:
    names = list(names or SETTINGS)
    unknown = [n for n in names if n not in controllers.names()]
    if unknown:
        raise ValueError(f"bench controllers: unknown controller(s) {unknown}; controllers are "
                         f"{controllers.names()}")
    gradsign = None
    if "grea" in names:
        gradsign = bench_proxies.scores(table, ["gradsign"], (0,), progress=progress)["gradsign"][0]
    curves = regret_curves(table, names, runs, evaluations, gradsign, progress)
    curves["params"] = params_curves(table, runs, evaluations)
    columns = bench_proxies.scores(table, list(bench_predictor.FEATURES), (0,), progress=progress)
    features = predictor.standardize(predictor.feature_matrix({n: v[0] for n, v in columns.items()}))
    curves["predictor"] = predictor_curves(table, features, runs, evaluations)
    print(report(curves, tuple(e for e in (5, 10, 20, 50, 100, 200) if e <= evaluations)))
    if png is not None:
        plot(png, curves, f"controllers on {table.space.name} ({len(table)} archs, {runs} runs)")
        print(f"wrote {png}")
    return curves
