"""Sparse training as an optax wrapper (the JaxPruner idea, for any optimizer state).

    updater = sparse.updaters.get("rigl", sparsity=0.9, total_steps=10_000)
    tx = sparse.wrap(optax.sgd(0.1, momentum=0.9), updater, names)
    state = tx.init(params)
    # forward at sparse.masks.apply(params, state.masks): its gradient is the
    # dense gradient RigL and GraNet grow by
    updates, state = tx.update(grads, state, params)

The masks live in the optimizer state next to the wrapped optimizer's own
state and a step counter, so one jitted training step does everything: mask
updates run under `lax.cond` on their event steps, with no host round trip.
On every step the gradients of pruned weights are zeroed before the wrapped
optimizer sees them and pruned weights are set to exactly zero; weights grown
by a mask update start at exactly zero. The wrapped optimizer steps on mask-update
steps too, except for updaters with `skip_step` (RigL). Where a mask
changes, the wrapped optimizer's moments are zeroed: any subtree of its state
with the structure of the parameters (momentum, Adam's μ and ν, …) is treated
as per-parameter, whatever optimizer made it.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from sparse import masks as masklib


class SparseState(NamedTuple):
    inner: Any            # the wrapped optimizer's state
    masks: dict           # {kernel name: bool mask}
    step: jax.Array       # int32, steps taken
    key: jax.Array        # PRNG key for random regrowth and tie noise


@dataclasses.dataclass(frozen=True)
class Updater:
    """When and how the masks change. Subclasses (one file each in
    `sparse/updaters/`) override `initial_masks`, `is_event` and `new_masks`."""

    sparsity: float = 0.9        # final fraction of pruned weights over the prunable kernels
    total_steps: int = 1         # steps of the whole run (schedules are fractions of it)
    update_every: int = 100      # ΔT: steps between mask updates
    distribution: str = "erk"    # per-layer densities of a sparse start: uniform | er | erk
    seed: int = 0

    name: ClassVar[str] = "static"
    skip_step: ClassVar[bool] = False   # no optimizer step on mask-update steps (RigL)

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"{self.name}: sparsity must be in [0, 1), got {self.sparsity}")
        if self.total_steps < 1:
            raise ValueError(f"{self.name}: total_steps must be ≥ 1, got {self.total_steps}")
        if self.update_every < 1:
            raise ValueError(f"{self.name}: update_every must be ≥ 1, got {self.update_every}")
        if self.distribution not in masklib.DISTRIBUTIONS:
            raise ValueError(f"{self.name}: distribution must be one of {list(masklib.DISTRIBUTIONS)}, "
                             f"got {self.distribution!r}")
        for field in ("begin", "end", "drop_fraction", "initial_sparsity", "at"):
            value = getattr(self, field, None)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{self.name}: {field} must be in [0, 1], got {value}")

    def steps(self, fraction: float) -> int:
        return int(round(fraction * self.total_steps))

    def sparse_start(self, key, weights: Mapping, sparsity: float) -> dict:
        shapes = {n: w.shape for n, w in weights.items()}
        return masklib.random_masks(key, shapes, masklib.densities(shapes, sparsity, self.distribution))

    def initial_masks(self, key, weights: Mapping) -> dict:
        return self.sparse_start(key, weights, self.sparsity)

    def is_event(self, step):
        return jnp.zeros((), bool)

    def new_masks(self, masks: Mapping, weights: Mapping, grads: Mapping, step, key) -> dict:
        return dict(masks)


def reset_moments(inner, params, changed: Mapping):
    """`inner` with every parameter-shaped subtree zeroed where `changed` is True."""
    treedef = jax.tree_util.tree_structure(params)

    def per_parameter(node):
        return jax.tree_util.tree_structure(node) == treedef

    def reset(node):
        if not per_parameter(node):
            return node
        return masklib.map_named(lambda n, m: jnp.where(changed[n], jnp.zeros_like(m), m),
                                 node, changed)
    return jax.tree_util.tree_map(reset, inner, is_leaf=per_parameter)


def wrap(tx: optax.GradientTransformation, updater: Updater,
         names: Sequence[str]) -> optax.GradientTransformation:
    """`tx` made sparse over the kernels `names` (see the module docstring)."""
    names = list(names)

    def init(params):
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(params)):
            raise ValueError("sparse.wrap: params must be a pytree of named leaves (a dict or an "
                             "nnx.State), not a single array")
        key, sub = jax.random.split(jax.random.PRNGKey(updater.seed))
        initial = updater.initial_masks(sub, masklib.kernels(params, names))
        return SparseState(tx.init(params), {n: initial[n] for n in names},
                           jnp.zeros((), jnp.int32), key)

    def update(grads, state: SparseState, params=None):
        if params is None:
            raise ValueError("sparse.wrap: update needs params (magnitudes decide the masks)")
        key, sub = jax.random.split(state.key)
        updates, inner = tx.update(masklib.apply(grads, state.masks), state.inner, params)

        def on_event():
            weights = masklib.kernels(masklib.apply(params, state.masks), names)
            new = updater.new_masks(state.masks, weights, masklib.kernels(grads, names), state.step, sub)
            new = {n: new[n].astype(bool) for n in names}
            stepped, moments = ((jax.tree_util.tree_map(jnp.zeros_like, updates), state.inner)
                                if updater.skip_step else (updates, inner))
            changed = {n: new[n] != state.masks[n] for n in names}
            return new, reset_moments(moments, params, changed), stepped

        # Only event steps pay for scoring, sorting and resetting moments.
        masks, inner, updates = jax.lax.cond(updater.is_event(state.step), on_event,
                                             lambda: (dict(state.masks), inner, updates))
        leaves = masklib.named_leaves(params)
        # p + (−p) is exactly 0: pruned weights are exact zeros after apply_updates, and
        # grown ones start there whatever the optimizer would add at a zero gradient.
        survives = {n: masks[n] & state.masks[n] for n in names}
        updates = masklib.map_named(lambda n, u: jnp.where(survives[n], u, -leaves[n]), updates, names)
        return updates, SparseState(inner, masks, state.step + 1, key)

    return optax.GradientTransformation(init, update)


_REGISTRY: dict[str, type[Updater]] = {}


def register(cls: type[Updater]) -> type[Updater]:
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def options(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(_REGISTRY[name])]


def get(name: str, **kwargs) -> Updater:
    """The updater `name` with its options; an unknown name or option names the valid ones."""
    if name not in _REGISTRY:
        match = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        raise ValueError(f"unknown sparse method {name!r}{hint}; methods are {names()}")
    valid = options(name)
    for key in kwargs:
        if key not in valid:
            match = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise ValueError(f"sparse method {name!r} has no option {key!r}{hint}; options are {valid}")
    return _REGISTRY[name](**kwargs)
