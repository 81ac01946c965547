"""Sparse masks and training: distributions, DST updaters, layer-adaptive allocation (pure mask math).

- `sparse.masks`: mask pytrees over the prunable kernels, uniform/ER/ERK
  densities, counting.
- `sparse.wrap(tx, updater, names)`: any optax optimizer made sparse;
  `sparse.updaters.get(name, …)` for static, magnitude, lamp, gmp, set, rigl,
  granet, nm.
- `sparse.allocate_dp` and the baselines of `sparse.allocate`: per-layer
  sparsity under a global budget.
"""
from sparse import allocate, criteria, levels, masks, schedules, storage, updaters
from sparse.allocate import allocate_dp
from sparse.updater import SparseState, Updater, reset_moments, wrap

__all__ = ["SparseState", "Updater", "allocate", "allocate_dp", "criteria", "levels", "masks",
           "reset_moments", "schedules", "storage", "updaters", "wrap"]
