"""Sampled one-shot supernet training (SPOS / AutoFormer uniform, BigNAS sandwich).

`make_step(graphdef, space, tx, rule=…)` returns one jitted training step

    params, rest, opt_state, loss = step(params, rest, opt_state, x, y, key)

- `uniform`: one random sub-network per batch, cross-entropy on the labels.
- `largest`: the max net alone (the first stage of OFA's progressive shrinking:
  sub-networks then start from the max net's features instead of from noise).
- `sandwich`: the max, the min and `num_random` random sub-networks on the same
  batch, gradients accumulated into one optimizer step. With `distill`, the max
  net learns from the labels and the others from the max net's softened
  outputs (stop-gradient on the teacher): in-place distillation.

Random archs are drawn inside the step from the key (no host round trip), so
the step compiles once for the whole run: uniformly over the space, or — under
a budget — uniformly from a `pool` of feasible archs (index vectors
`int32[N, num_choices]`) sampled beforehand, so no capacity goes to
sub-networks the search may never pick. The max and min archs are the
largest and smallest by parameters (`Space.extremes`), passed in as index
vectors. Rules: `docs/algorithms.md` §2.

Sub-supernets of a split (`search.splits`) keep only some options of some
choices: the step takes their `Domain` (kept options, max and min archs, pool)
as an argument, so one compilation serves all of them; `stacked=True` steps N
sub-supernets at once on the same batch (every state and the domain carry a
leading axis N).

Sparse supernets: with `tx` from `sparse.wrap`, every forward runs at the
masked weights (W ⊙ M_sparse, M_sparse from the optimizer state) and the
updater moves the masks inside the step. With `levels` (`sparse.levels`),
each sampled arch also picks its sparsity: its kernels keep their largest
weights at the arch's level.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from search import engine
from sparse import masks as masklib
from sparse.updater import SparseState

RULES = ("uniform", "sandwich", "largest")


def random_index_vector(key, sizes) -> jax.Array:
    """A uniformly random arch as option indices `int32[len(sizes)]`."""
    return jax.random.randint(key, (len(sizes),), 0, jnp.asarray(sizes))


class Domain(NamedTuple):
    """Where a step samples archs, as arrays (so it can be traced and stacked):

    options  int32[C, K_max]  row c: the kept option indices of choice c, then padding
    counts   int32[C]         kept options of each choice
    max_arch, min_arch  int32[C]  the sandwich's fixed nets
    pool     int32[P, C] or None  feasible archs to draw from instead (a budget)
    pool_size  int32 or None     how many rows of `pool` are archs (the rest repeat them:
                                 domains of several sub-supernets stack to one shape)
    """
    options: jax.Array
    counts: jax.Array
    max_arch: jax.Array
    min_arch: jax.Array
    pool: jax.Array | None
    pool_size: jax.Array | None = None


def domain(space, sub_space=None, max_arch=None, min_arch=None, pool=None,
           pool_rows: int | None = None) -> Domain:
    """The `Domain` of `sub_space` (a restriction of `space`; default: `space` itself) in
    `space`'s option indices. `max_arch`/`min_arch` default to the largest and smallest
    by parameters; `pool` is a list of archs or index vectors, padded to `pool_rows` rows
    when given (draws stay uniform over the pool's own archs)."""
    sub_space = sub_space or space
    if max_arch is None or min_arch is None:
        low, high, _ = sub_space.extremes(sub_space.params)
        min_arch, max_arch = min_arch or low, max_arch or high
    sizes = [len(o) for o in space.choices.values()]
    options = np.zeros((len(sizes), max(sizes)), np.int32)
    counts = np.zeros(len(sizes), np.int32)
    for c, (name, kept) in enumerate(sub_space.choices.items()):
        every = space.choices[name]
        options[c, :len(kept)] = [every.index(o) for o in kept]
        counts[c] = len(kept)
    if pool is not None:
        pool = np.asarray([a if isinstance(a, np.ndarray) else space.index_vector(a) for a in pool],
                          np.int32)
        if pool.ndim != 2 or pool.shape[1] != len(sizes) or len(pool) == 0:
            raise ValueError(f"pool must be int32[N ≥ 1, {len(sizes)}] index vectors, "
                             f"got shape {tuple(pool.shape)}")
        if pool_rows is not None and not len(pool) <= pool_rows:
            raise ValueError(f"pool of {len(pool)} archs exceeds pool_rows = {pool_rows}")
        pool_size = np.int32(len(pool))
        pool = np.resize(pool, (pool_rows or len(pool), len(sizes)))
    return Domain(options, counts, space.index_vector(max_arch), space.index_vector(min_arch), pool,
                  None if pool is None else pool_size)


def draw_index_vector(key, dom: Domain) -> jax.Array:
    """A uniformly random arch of the domain (of its pool, if it has one)."""
    if dom.pool is not None:
        return dom.pool[jax.random.randint(key, (), 0, dom.pool_size)]
    picks = jax.random.randint(key, dom.counts.shape, 0, dom.counts)
    return jnp.take_along_axis(dom.options, picks[:, None], axis=1)[:, 0]


def make_step(graphdef, space, tx: optax.GradientTransformation, rule: str = "sandwich",
              num_random: int = 2, distill: bool = True, max_arch=None, min_arch=None,
              pool=None, levels=None, stacked: bool = False, donate: bool = False):
    """The jitted sampled-training step for `space`'s supernet (see module docstring):
    `step(params, rest, opt_state, x, y, key, domain=None)`; `domain` (a `Domain`)
    defaults to the whole space with `max_arch`, `min_arch` and `pool`. With `stacked`,
    `domain` is required. `donate`: the step may reuse the buffers of params, rest and
    opt_state for its outputs (the caller must not read them again)."""
    if rule not in RULES:
        raise ValueError(f"unknown sampling rule {rule!r}; rules are {list(RULES)}")
    if num_random < 0:
        raise ValueError(f"num_random must be ≥ 0, got {num_random}")
    whole = jax.tree.map(jnp.asarray, domain(space, max_arch=max_arch, min_arch=min_arch, pool=pool))

    def loss_fn(params, rest, x, y, key, ranks, dom):
        def draw(key):
            return draw_index_vector(key, dom)
        def run(index_vector, rest):
            probs = space.probs_from_index_vector(index_vector)
            at_level = params if levels is None else levels.apply(params, probs, ranks)
            return engine.apply(graphdef, at_level, rest, x, probs, train=True)

        if rule == "uniform":
            logits, rest = run(draw(key), rest)
            return engine.cross_entropy(logits, y), rest
        teacher, rest = run(dom.max_arch, rest)
        loss = engine.cross_entropy(teacher, y)
        if rule == "largest":
            return loss, rest
        students = [dom.min_arch] + [draw(k) for k in jax.random.split(key, num_random)]
        for index_vector in students:
            logits, rest = run(index_vector, rest)
            loss = loss + (engine.distillation(logits, teacher) if distill
                           else engine.cross_entropy(logits, y))
        return loss, rest

    def step(params, rest, opt_state, x, y, key, dom):
        # The gradient at the masked weights is the dense gradient DST regrows by.
        if isinstance(opt_state, SparseState):
            masked = masklib.apply(params, opt_state.masks)
        else:
            masked = params
        ranks = levels.ranks(masked) if levels is not None else None
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(masked, rest, x, y, key, ranks,
                                                                         dom)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    donated = (0, 1, 2) if donate else ()
    if stacked:
        return jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None, None, 0, 0)), donate_argnums=donated)
    compiled = jax.jit(step, donate_argnums=donated)

    def whole_or(params, rest, opt_state, x, y, key, dom=None):
        return compiled(params, rest, opt_state, x, y, key, whole if dom is None else dom)
    whole_or._cache_size = compiled._cache_size  # one entry per compilation, as on any jitted step
    return whole_or
