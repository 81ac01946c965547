"""Scores and exact-count mask edits: what gets pruned or regrown, never when.

Every function keeps exact counts: a drop/grow swap leaves the number of
active weights of a layer unchanged, a prune keeps exactly the requested
count, or every active weight when asked for more (a prune only ever
shrinks a mask). Counts may be traced values, so these run inside `jit`.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from sparse.masks import as_matrix, from_matrix, top_k_mask

TIE_NOISE = 1e-12


def magnitude(weight):
    return jnp.abs(weight)


def lamp(weight):
    """LAMP scores (Lee et al. 2021): with a layer's weights sorted by magnitude,
    score(u) = u² / Σ_{|v| ≥ |u|} v². Comparable across layers."""
    squared = jnp.square(weight).ravel()
    order = jnp.argsort(squared, stable=True)
    ascending = squared[order]
    suffix = jnp.cumsum(ascending[::-1])[::-1]
    scores = jnp.where(suffix > 0, ascending / jnp.where(suffix > 0, suffix, 1.0), 0.0)
    return jnp.zeros_like(squared).at[order].set(scores).reshape(weight.shape)


def _noise(key, shape):
    return TIE_NOISE * jax.random.uniform(key, shape)


def drop_and_grow(mask, weight, grow_score, count, key):
    """Deactivate the `count` active weights of smallest magnitude and activate
    the `count` inactive positions (after the drop) of largest `grow_score`.
    Tiny random noise breaks ties; the active count is unchanged."""
    drop_key, grow_key = jax.random.split(key)
    active = jnp.sum(mask)
    keep_score = jnp.where(mask, jnp.abs(weight) + _noise(drop_key, mask.shape), -jnp.inf)
    kept = top_k_mask(keep_score, active - count)
    grow = jnp.where(kept, -jnp.inf, grow_score + _noise(grow_key, mask.shape))
    return kept | top_k_mask(grow, count)


def keep_global(masks: Mapping, scores: Mapping, keep):
    """Masks keeping the `keep` highest-scoring active weights across all layers
    (one global threshold); inactive weights stay inactive, also when `keep`
    exceeds the active count."""
    names = list(masks)
    flat = jnp.concatenate([jnp.where(masks[n], scores[n], -jnp.inf).ravel() for n in names])
    kept = top_k_mask(flat, keep)
    out, start = {}, 0
    for n in names:
        size = masks[n].size
        out[n] = kept[start:start + size].reshape(masks[n].shape) & masks[n]
        start += size
    return out


def keep_per_layer(masks: Mapping, scores: Mapping, keep: Mapping):
    """Masks keeping `keep[name]` highest-scoring active weights in each layer
    (all of them when that is more than are active)."""
    return {n: top_k_mask(jnp.where(masks[n], scores[n], -jnp.inf), keep[n]) & masks[n] for n in masks}


def n_of_m(weight, n: int, m: int, name: str = "kernel"):
    """N:M mask: in every group of `m` consecutive weights along the inputs of
    kernel `name` (`masks.kernel_axes`: the `in` of `[k..., in, out]`, embed for
    an attention `qkv`, heads·head_dim for `proj`) keep the `n` largest."""
    if not 0 < n <= m:
        raise ValueError(f"N:M needs 0 < n ≤ m, got n={n}, m={m}")
    matrix = jnp.moveaxis(as_matrix(name, jnp.abs(weight)), -2, -1)   # [window..., out, in]
    fan_in = matrix.shape[-1]
    if fan_in % m:
        raise ValueError(f"N:M with m={m} needs the inputs to be a multiple of {m}; "
                         f"kernel {name!r} of shape {tuple(weight.shape)} has {fan_in} inputs")
    groups = matrix.reshape(matrix.shape[:-1] + (fan_in // m, m))
    order = jnp.argsort(-groups, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1)
    mask = jnp.moveaxis((rank < n).reshape(matrix.shape), -1, -2)
    return from_matrix(name, mask, weight.shape)
