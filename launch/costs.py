"""What an arch costs and what it may cost: sparse nonzero counts, budgets, objectives."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from flax import nnx

from launch import config as configs
from launch.train import prunable_kernels
from sparse import masks as masklib
from sparse.levels import Levels, SliceCounts


@dataclasses.dataclass
class SparseSetup:
    """What a sparse search prunes, at which sparsities, and how it counts nonzeros.

    One rule: an arch is charged (budget, NSGA-II objective, the export's pruning
    target) the nonzeros its sub-network holds. At a sparsity s each prunable
    kernel has the density of `sparse.distribution` at s (the DST supernet's own
    start); once the supernet is trained, `measure` counts, for every kernel and
    level, the nonzero kept weights inside any arch's slice, and `keep` charges
    exactly those. Before that (the sandwich pool under a budget) the charge is
    the estimate Σ round(compact size · density).
    """
    names: list[str]                 # prunable kernels of the supernet, in forward order
    target: float                    # the fixed sparsity (when not searched)
    levels: Levels | None            # searched sparsity choices
    densities: dict[str, float] = dataclasses.field(default_factory=dict)  # fixed sparsity:
    #                                  each kernel's density at `target` (levels hold their own)
    counts: dict | None = None       # after `measure`: kernel → [SliceCounts per level]

    def __post_init__(self):
        self._charged = {}  # (space, arch items) → nonzero, for the current counts

    def sparsity(self, space, arch, kernel: str) -> float:
        return space.sparsity_of(arch, kernel) if self.levels is not None else self.target

    def _level(self, space, arch, kernel: str) -> int:
        return 0 if self.levels is None else self.levels.options.index(self.sparsity(space, arch, kernel))

    def density(self, space, arch, kernel: str) -> float:
        if self.levels is None:
            return self.densities[kernel]
        return self.levels.density(kernel)[self._level(space, arch, kernel)]

    def measure(self, params) -> None:
        """Count the trained supernet's nonzero kept weights per kernel and level."""
        if self.levels is None:
            masks = {n: np.asarray(w)[None] != 0 for n, w in masklib.kernels(params, self.names).items()}
        else:
            masks = self.levels.masks(params)
        self.counts = {n: [SliceCounts(m, masklib.kernel_axes(n, m.shape).spatial) for m in stack]
                       for n, stack in masks.items()}
        self._charged = {}

    def nonzero(self, space, arch) -> int:
        """Nonzero parameters of `arch`: its prunable kernels' kept weights, the rest dense."""
        try:
            key = (space, tuple(arch.items()))
            hash(key)
        except TypeError:  # an unhashable option: let param_shapes name it
            return self._nonzero(space, arch)
        if key not in self._charged:
            # Budget checks and the size they rank by ask for the same archs one after the
            # other (an enumeration asks for every arch of the space twice); bounded.
            if len(self._charged) >= 4096:
                self._charged = {}
            self._charged[key] = self._nonzero(space, arch)
        return self._charged[key]

    def _nonzero(self, space, arch) -> int:
        shapes = space.param_shapes(arch)
        dense = sum(math.prod(shape) for name, shape in space.counted_param_shapes(arch).items()
                    if name not in self.names)
        return dense + self.keep(space, arch, shapes)

    def keep(self, space, arch, shapes: dict | None = None) -> int:
        """The prunable weights `arch` is charged: counted in its slices once measured."""
        total = 0
        for name, shape in (shapes or space.param_shapes(arch)).items():
            if name not in self.names:
                continue
            if self.counts is None:
                total += round(math.prod(shape) * self.density(space, arch, name))
            else:
                total += self.counts[name][self._level(space, arch, name)](shape)
        return total


def sparse_setup(cfg: configs.Config, space, model):
    """(space with sparsity choices if searched, SparseSetup) — (space, None) when dense."""
    levels = configs.sparse_levels(cfg)
    if not levels:
        return space, None
    names = prunable_kernels(model, space.uniform_probs(), cfg.sparse.first_layer, cfg.sparse.last_layer)
    shapes = masklib.shapes_of(nnx.state(model, nnx.Param), names)
    if not cfg.sparse.levels:
        return space, SparseSetup(names, levels[0], None,
                                  masklib.densities(shapes, levels[0], cfg.sparse.distribution))
    per_kernel = names if cfg.sparse.per == "layer" else None
    searched = space.with_sparsity(levels, per_kernel)
    choice_of = tuple((n, f"sparsity:{n}" if per_kernel else "sparsity") for n in names)
    return searched, SparseSetup(names, 0.0, Levels.of(choice_of, levels, shapes, cfg.sparse.distribution))


def constraint(space, cfg: configs.SearchConfig, sparse_setup: SparseSetup | None = None):
    def ok(arch) -> bool:
        if cfg.max_params is not None and space.params(arch) > cfg.max_params:
            return False
        if cfg.min_params is not None and space.params(arch) < cfg.min_params:
            return False
        if cfg.max_nonzero is not None and sparse_setup.nonzero(space, arch) > cfg.max_nonzero:
            return False
        return cfg.max_flops is None or space.flops(arch) <= cfg.max_flops
    if cfg.max_params is None and cfg.min_params is None and cfg.max_flops is None \
            and cfg.max_nonzero is None:
        return None
    if cfg.max_nonzero is not None:
        sparsest, _, _ = space.extremes(lambda a: sparse_setup.nonzero(space, a))
        if sparse_setup.nonzero(space, sparsest) > cfg.max_nonzero:
            raise ValueError(f"config search.max_nonzero = {cfg.max_nonzero}: the sparsest arch of "
                             f"{space.name!r} has {sparse_setup.nonzero(space, sparsest):,} nonzero "
                             "parameters")
    if cfg.max_params is not None:
        smallest, _, _ = space.extremes(space.params)
        if space.params(smallest) > cfg.max_params:
            raise ValueError(f"config search.max_params = {cfg.max_params}: the smallest arch of "
                             f"{space.name!r} has {space.params(smallest):,} parameters")
    if cfg.max_flops is not None:
        cheapest, _, _ = space.extremes(space.flops)
        if space.flops(cheapest) > cfg.max_flops:
            raise ValueError(f"config search.max_flops = {cfg.max_flops}: the cheapest arch of "
                             f"{space.name!r} has {space.flops(cheapest):,} FLOPs")
    return ok


def check_measured_budget(space, cfg: configs.SearchConfig, sparse_setup: SparseSetup) -> None:
    """The budget was checked against the estimated charge before training; a trained
    supernet's prefixes can hold more nonzeros than that, so check it again."""
    if cfg.max_nonzero is None:
        return
    sparsest, _, _ = space.extremes(lambda a: sparse_setup.nonzero(space, a))
    fewest = sparse_setup.nonzero(space, sparsest)
    if fewest > cfg.max_nonzero:
        raise ValueError(f"config search.max_nonzero = {cfg.max_nonzero}: after supernet training the "
                         f"sparsest arch of {space.name!r} holds {fewest:,} nonzero parameters (the "
                         "estimate before training was lower); raise the budget and run into a new --out")


def cost(space, arch, name, sparse_setup=None) -> float:
    if name == "params":
        return float(space.params(arch))
    if name == "nonzero":
        return float(sparse_setup.nonzero(space, arch))
    return float(space.flops(arch))


def scores(space, archs, accuracies, objectives, sparse_setup=None):
    rows = []
    for arch, acc in zip(archs, accuracies):
        row = [acc]
        for name in objectives[1:]:
            row.append(-cost(space, arch, name, sparse_setup))
        rows.append(tuple(row) if len(row) > 1 else acc)
    return rows
