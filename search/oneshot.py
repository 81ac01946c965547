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

Sparse supernets: with `tx` from `sparse.wrap`, every forward runs at the
masked weights (W ⊙ M_sparse, M_sparse from the optimizer state) and the
updater moves the masks inside the step. With `levels` (`sparse.levels`),
each sampled arch also picks its sparsity: its kernels keep their largest
weights at the arch's level.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from search import engine
from sparse import masks as masklib
from sparse.updater import SparseState

RULES = ("uniform", "sandwich", "largest")


def random_index_vector(key, sizes) -> jax.Array:
    """A uniformly random arch as option indices `int32[len(sizes)]`."""
    return jax.random.randint(key, (len(sizes),), 0, jnp.asarray(sizes))


def make_step(graphdef, space, tx: optax.GradientTransformation, rule: str = "sandwich",
              num_random: int = 2, distill: bool = True, max_arch=None, min_arch=None,
              pool=None, levels=None):
    """The jitted sampled-training step for `space`'s supernet (see module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown sampling rule {rule!r}; rules are {list(RULES)}")
    if num_random < 0:
        raise ValueError(f"num_random must be ≥ 0, got {num_random}")
    sizes = tuple(len(o) for o in space.choices.values())
    if pool is not None:
        pool = jnp.asarray(pool, jnp.int32)
        if pool.ndim != 2 or pool.shape[1] != len(sizes) or len(pool) == 0:
            raise ValueError(f"pool must be int32[N ≥ 1, {len(sizes)}] index vectors, "
                             f"got shape {tuple(pool.shape)}")

    def draw(key):
        if pool is None:
            return random_index_vector(key, sizes)
        return pool[jax.random.randint(key, (), 0, len(pool))]

    if rule in ("sandwich", "largest"):
        if max_arch is None or min_arch is None:
            low, high, _ = space.extremes(space.params)
            min_arch, max_arch = min_arch or low, max_arch or high
        fixed = (jnp.asarray(space.index_vector(max_arch)), jnp.asarray(space.index_vector(min_arch)))

    def loss_fn(params, rest, x, y, key, ranks):
        def run(index_vector, rest):
            probs = space.probs_from_index_vector(index_vector)
            at_level = params if levels is None else levels.apply(params, probs, ranks)
            return engine.apply(graphdef, at_level, rest, x, probs, train=True)

        if rule == "uniform":
            logits, rest = run(draw(key), rest)
            return engine.cross_entropy(logits, y), rest
        teacher, rest = run(fixed[0], rest)
        loss = engine.cross_entropy(teacher, y)
        if rule == "largest":
            return loss, rest
        students = [fixed[1]] + [draw(k) for k in jax.random.split(key, num_random)]
        for index_vector in students:
            logits, rest = run(index_vector, rest)
            loss = loss + (engine.distillation(logits, teacher) if distill
                           else engine.cross_entropy(logits, y))
        return loss, rest

    @jax.jit
    def step(params, rest, opt_state, x, y, key):
        # The gradient at the masked weights is the dense gradient DST regrows by.
        if isinstance(opt_state, SparseState):
            masked = masklib.apply(params, opt_state.masks)
        else:
            masked = params
        ranks = levels.ranks(masked) if levels is not None else None
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(masked, rest, x, y, key, ranks)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    return step
