"""Layer-adaptive sparsity: how many weights each layer keeps under one global budget.

Every allocator answers the same question — given `sizes[L]` (weights per
layer) and `keep` (the weights that survive; a layer at sparsity s keeps
round(size·(1 − s))) — with one sparsity per layer, so the rules compare at
equal budget:

- `allocate_dp`: least total output distortion Σ_l δ_l(s_l) over `levels` (a
  grid of sparsities), exact dynamic programming keeping at most `keep` (Xu et
  al., "Efficient Joint Optimization of Layer-Adaptive Weight Pruning in Deep
  Neural Networks", ICCV 2023).
- `allocate_uniform`, `allocate_erk`, `allocate_global` (one magnitude
  threshold), `allocate_lamp` (global LAMP scores): the usual baselines, off
  any grid, keeping `keep` up to rounding each layer's count (global and LAMP
  exactly), so they are not handicapped by a grid the DP was built for.

`distortion_curves` measures δ_l(s) on a calibration batch.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sparse import criteria
from sparse import masks as masklib

METHODS = ("dp", "uniform", "erk", "global", "lamp")


def _check(levels, sizes, keep):
    levels = np.asarray(levels, np.float64)
    sizes = np.asarray(sizes, np.int64)
    if levels.ndim != 1 or len(levels) == 0 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"levels must be a non-empty 1-D array of sparsities in [0, 1], got {levels}")
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes < 1):
        raise ValueError(f"sizes must be a non-empty 1-D array of positive weight counts, got {sizes}")
    kept = np.round(sizes[:, None] * (1.0 - levels[None, :])).astype(np.int64)
    fewest = int(kept.min(axis=1).sum())
    if keep < fewest:
        raise ValueError(f"keep={keep} is below the fewest weights any allocation keeps ({fewest}, "
                         f"every layer at its sparsest level); add sparser levels or raise keep")
    return levels, sizes, kept


def allocate_dp(distortion, levels, sizes, keep: int, *, max_states: int = 50_000,
                return_indices: bool = False) -> np.ndarray:
    """The level of each layer minimising Σ_l distortion[l, k_l] subject to
    Σ_l round(sizes[l]·(1 − levels[k_l])) ≤ keep.

    dp[l][b] = min_k distortion[l, k] + dp[l − 1][b − kept(l, k)] over the
    surviving weights b, then backtrack from the best b ≤ keep. Time
    O(L·K·B), memory O(L·B) for the backtracking table, with B = keep + 1
    states: exact. When keep exceeds `max_states`, weights are counted in
    units of u = ⌈keep / max_states⌉ with each layer's count rounded up, so
    the answer still fits the budget exactly and is optimal up to that
    quantisation (50 layers × 100 levels × 50,000 states: about 0.4 s in NumPy).

    Returns level values `float[L]` (indices into `levels` with `return_indices`).
    """
    distortion = np.asarray(distortion, np.float64)
    levels, sizes, kept = _check(levels, sizes, keep)
    if distortion.shape != kept.shape:
        raise ValueError(f"distortion must have shape [layers, levels] = {kept.shape}, "
                         f"got {distortion.shape}")
    if not np.all(np.isfinite(distortion)):
        raise ValueError("distortion holds non-finite values")
    unit = max(1, math.ceil(keep / max_states))
    cost = -(-kept // unit)
    budget = keep // unit
    num_layers, num_levels = kept.shape
    best = np.full(budget + 1, np.inf)
    best[0] = 0.0
    choice = np.zeros((num_layers, budget + 1), np.int32)
    for layer in range(num_layers):
        new = np.full(budget + 1, np.inf)
        pick = np.zeros(budget + 1, np.int32)
        for k in range(num_levels):
            c = int(cost[layer, k])
            if c > budget:
                continue
            candidate = best[:budget + 1 - c] + distortion[layer, k]
            better = candidate < new[c:]
            np.copyto(new[c:], candidate, where=better)
            np.copyto(pick[c:], k, where=better)
        best, choice[layer] = new, pick
    if not np.isfinite(best).any():
        raise ValueError(f"no allocation fits keep={keep} (in units of {unit} weights)")
    b = int(np.argmin(best))
    chosen = np.zeros(num_layers, np.int64)
    for layer in range(num_layers - 1, -1, -1):
        chosen[layer] = choice[layer, b]
        b -= int(cost[layer, chosen[layer]])
    return chosen if return_indices else levels[chosen]


def grid_levels(count: int, target: float) -> np.ndarray:
    """`count` sparsity levels from 0 to max(0.98, a level well past `target`)."""
    top = max(0.98, 1.0 - (1.0 - target) / 4.0)
    return np.linspace(0.0, top, count)


def _check_budget(sizes, keep: int) -> np.ndarray:
    sizes = np.asarray(sizes, np.int64)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes < 1):
        raise ValueError(f"sizes must be a non-empty 1-D array of positive weight counts, got {sizes}")
    if not 1 <= keep <= sizes.sum():
        raise ValueError(f"keep must be between 1 and the {sizes.sum()} weights of all layers, got {keep}")
    return sizes


def allocate_uniform(sizes, keep: int) -> np.ndarray:
    """Every layer at the sparsity 1 − keep / Σ sizes."""
    sizes = _check_budget(sizes, keep)
    return np.full(len(sizes), 1.0 - keep / sizes.sum())


def allocate_erk(sizes, keep: int, shapes) -> np.ndarray:
    """ERK densities (`sparse.masks.densities`) keeping `keep` weights. `shapes`:
    `{kernel name: shape}` in layer order (names tell attention kernels apart,
    `sparse.masks.kernel_axes`) or a list of `[k..., in, out]` shapes."""
    sizes = _check_budget(sizes, keep)
    named = ({n: tuple(s) for n, s in shapes.items()} if isinstance(shapes, Mapping)
             else {str(i): tuple(s) for i, s in enumerate(shapes)})
    if [math.prod(s) for s in named.values()] != list(sizes):
        raise ValueError(f"shapes {list(named.values())} must match sizes {list(sizes)} layer by layer")
    density = masklib.densities(named, 1.0 - keep / sizes.sum(), "erk")
    return 1.0 - np.array([density[n] for n in named])


def _by_scores(sizes, keep, scores) -> np.ndarray:
    """Per-layer sparsity after keeping the `keep` highest `scores` of all layers together."""
    sizes = _check_budget(sizes, keep)
    if [int(np.size(s)) for s in scores] != list(sizes):
        raise ValueError(f"weights of sizes {[int(np.size(s)) for s in scores]} must match sizes "
                         f"{list(sizes)} layer by layer")
    named = {str(i): jnp.asarray(s) for i, s in enumerate(scores)}
    ones = {n: jnp.ones(s.shape, bool) for n, s in named.items()}
    survivors = criteria.keep_global(ones, named, int(keep))
    return 1.0 - np.array([int(np.sum(np.asarray(survivors[n]))) for n in named]) / sizes


def allocate_global(sizes, keep: int, weights: Sequence) -> np.ndarray:
    """One magnitude threshold across layers keeping exactly `keep` weights."""
    return _by_scores(sizes, keep, [np.abs(np.asarray(w)) for w in weights])


def allocate_lamp(sizes, keep: int, weights: Sequence) -> np.ndarray:
    """Global LAMP scores keeping exactly `keep` weights."""
    return _by_scores(sizes, keep, [criteria.lamp(jnp.asarray(w)) for w in weights])


def allocate(method: str, levels, sizes, keep: int, *, distortion=None, weights=None,
             shapes=None) -> np.ndarray:
    """Per-layer sparsities `float[L]` by the allocator `method`, with what it needs
    (`distortion` for dp, `shapes` for erk, `weights` for global and lamp);
    `levels` is the DP's grid, unused by the baselines."""
    needs = {"dp": ("distortion", distortion), "erk": ("shapes", shapes),
             "global": ("weights", weights), "lamp": ("weights", weights)}
    if method not in METHODS:
        raise ValueError(f"unknown allocation {method!r}; allocations are {list(METHODS)}")
    if method in needs and needs[method][1] is None:
        raise ValueError(f"allocation {method!r} needs {needs[method][0]}")
    if method == "dp":
        return allocate_dp(distortion, levels, sizes, keep)
    if method == "uniform":
        return allocate_uniform(sizes, keep)
    if method == "erk":
        return allocate_erk(sizes, keep, shapes)
    if method == "global":
        return allocate_global(sizes, keep, weights)
    return allocate_lamp(sizes, keep, weights)


def magnitude_masks(weights: Mapping, sparsity: Mapping, masks: Mapping | None = None) -> dict:
    """Per layer, keep the round(size·(1 − s)) largest magnitudes within `masks`
    (masks only shrink: a level below a layer's current sparsity keeps it as is)."""
    out = {}
    for n, w in weights.items():
        active = jnp.ones(w.shape, bool) if masks is None else jnp.asarray(masks[n], bool)
        score = jnp.where(active, jnp.abs(w), -jnp.inf)
        keep = min(int(round(w.size * (1.0 - float(sparsity[n])))), int(jnp.sum(active)))
        out[n] = masklib.top_k_mask(score, keep)
    return out


def distortion_curves(fn: Callable, params, names: Sequence[str], levels, x,
                      masks: Mapping | None = None) -> np.ndarray:
    """δ[l, k]: mean over the batch `x` of ‖fn(params′, x) − fn(params, x)‖², where
    params′ prunes only layer l to levels[k] by magnitude (within `masks`).
    One compilation per layer, the levels vmapped."""
    levels = np.asarray(levels, np.float64)
    base = masklib.apply(params, masks) if masks is not None else params
    x = jnp.asarray(x)
    reference = fn(base, x)
    leaves = masklib.named_leaves(base)
    curves = np.zeros((len(names), len(levels)))
    for i, name in enumerate(names):
        weight = leaves[name]
        active = jnp.ones(weight.shape, bool) if masks is None else jnp.asarray(masks[name], bool)
        order_score = jnp.where(active, jnp.abs(weight), -jnp.inf)
        counts = jnp.asarray(np.round(weight.size * (1.0 - levels)), jnp.int32)
        curves[i] = np.asarray(_layer_curve(fn, name)(counts, base, order_score, x, reference))
    return curves


@functools.lru_cache(maxsize=256)
def _layer_curve(fn: Callable, name: str):
    """The jitted curve of one layer, cached so repeated measurements (pruning rounds)
    compile once. Everything is an argument, not a closed-over constant: XLA would
    otherwise constant-fold the unpruned layers' activations at compile time."""
    @jax.jit
    def at_counts(counts, base, order_score, x, reference):
        weight = masklib.named_leaves(base)[name]

        def one(count):
            pruned = weight * masklib.top_k_mask(order_score, count)
            out = fn(masklib.map_named(lambda n, w: pruned, base, [name]), x)
            return jnp.mean(jnp.sum(jnp.square(out - reference).reshape(len(out), -1), -1))
        return jax.vmap(one)(counts)
    return at_counts
