"""Sparsity as a searchable choice: nested magnitude masks, one per level.

A supernet trained with DST masks at the lowest searchable sparsity s_0 holds,
in each kernel, a ranking of its active weights by magnitude. A sub-network at
level s ≥ s_0 keeps the round(size·(1 − s)) largest of them, so the masks of
all levels are nested prefixes of one ranking — the sparsity analogue of a
prefix width mask — and a probability vector p over the levels gives the soft
mask Σ_k p_k [rank < keep_k] (one-hot p: exactly one level's mask).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sparse import masks as masklib


@dataclasses.dataclass(frozen=True)
class Levels:
    choice_of: tuple[tuple[str, str], ...]   # (kernel name, choice name) pairs
    options: tuple[float, ...]               # the sparsity of each option, ascending

    def __post_init__(self):
        if not self.options or any(not 0.0 <= s < 1.0 for s in self.options):
            raise ValueError(f"sparsity levels must be in [0, 1), got {list(self.options)}")
        if list(self.options) != sorted(set(self.options)):
            raise ValueError(f"sparsity levels must be ascending without repeats, got {list(self.options)}")

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.choice_of]

    def ranks(self, params) -> dict:
        """Per kernel, each weight's rank by magnitude (0 = largest); no gradient."""
        out = {}
        for name, weight in masklib.kernels(params, self.names).items():
            flat = jax.lax.stop_gradient(jnp.abs(weight)).ravel()
            order = jnp.argsort(-flat, stable=True)
            out[name] = jnp.zeros(flat.shape, jnp.int32).at[order].set(
                jnp.arange(flat.size, dtype=jnp.int32)).reshape(weight.shape)
        return out

    def apply(self, params, probs: Mapping, ranks: Mapping):
        """`params` with each kernel multiplied by its level mask under `probs`."""
        choice = dict(self.choice_of)

        def mask(name, weight):
            keeps = np.round(weight.size * (1.0 - np.asarray(self.options))).astype(np.int32)
            p = jnp.asarray(probs[choice[name]], jnp.float32)
            table = (ranks[name][None] < jnp.asarray(keeps).reshape((-1,) + (1,) * weight.ndim))
            return weight * jnp.tensordot(p, table.astype(weight.dtype), axes=1)
        return masklib.map_named(mask, params, self.names)
