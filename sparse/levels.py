"""Sparsity as a searchable choice: nested magnitude masks, one per level.

A level s gives each prunable kernel l the density d_l(s) of the configured
distribution (uniform: 1 − s; ER/ERK: the distribution's densities at overall
sparsity s over the supernet's kernels), the same rule the DST supernet starts
from at the lowest level s_0. A supernet trained at s_0 holds, in each kernel,
a ranking of its active weights by magnitude; a sub-network at level s keeps the
round(size_l · d_l(s)) largest of them, so the masks of all levels are nested
prefixes of one ranking — the sparsity analogue of a prefix width mask — and a
probability vector p over the levels gives the soft mask Σ_k p_k [rank < keep_k]
(one-hot p: exactly one level's mask).

What an arch is charged is what its sub-network holds: `SliceCounts` counts the
nonzero weights of a kernel inside any sub-network's slice (prefix axes, centred
conv windows) from one prefix-sum table, so budgets and objectives count the
nonzeros of exactly the weights the evaluated sub-network uses.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sparse import masks as masklib


@dataclasses.dataclass(frozen=True)
class Levels:
    choice_of: tuple[tuple[str, str], ...]   # (kernel name, choice name) pairs
    options: tuple[float, ...]               # the sparsity of each option, ascending
    # Per kernel (in `choice_of` order), its density at each option; None: uniform, 1 − s.
    densities: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self):
        if not self.options or any(not 0.0 <= s < 1.0 for s in self.options):
            raise ValueError(f"sparsity levels must be in [0, 1), got {list(self.options)}")
        if list(self.options) != sorted(set(self.options)):
            raise ValueError(f"sparsity levels must be ascending without repeats, got {list(self.options)}")
        if self.densities is not None and (
                len(self.densities) != len(self.choice_of)
                or any(len(d) != len(self.options) for d in self.densities)):
            raise ValueError(f"densities must hold one density per level ({len(self.options)}) "
                             f"for each of the {len(self.choice_of)} kernels")

    @classmethod
    def of(cls, choice_of, options, shapes: Mapping, distribution: str = "uniform") -> "Levels":
        """Levels whose per-kernel densities follow `distribution` over the kernels' `shapes`."""
        options = tuple(float(s) for s in options)
        per_level = [masklib.densities(shapes, s, distribution) for s in options]
        return cls(tuple(choice_of), options,
                   tuple(tuple(d[name] for d in per_level) for name, _ in choice_of))

    def density(self, kernel: str) -> tuple[float, ...]:
        """`kernel`'s density at each option."""
        if self.densities is None:
            return tuple(1.0 - s for s in self.options)
        return self.densities[self._index[kernel]]

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, (name, _) in enumerate(self.choice_of)}

    def keeps(self, kernel: str, size: int) -> np.ndarray:
        """Weights `kernel` (of `size` weights) keeps at each option."""
        return np.round(size * np.asarray(self.density(kernel))).astype(np.int32)

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
            keeps = self.keeps(name, weight.size)
            p = jnp.asarray(probs[choice[name]], jnp.float32)
            table = (ranks[name][None] < jnp.asarray(keeps).reshape((-1,) + (1,) * weight.ndim))
            return weight * jnp.tensordot(p, table.astype(weight.dtype), axes=1)
        return masklib.map_named(mask, params, self.names)

    def masks(self, params) -> dict:
        """Per kernel, the bool mask of its nonzero kept weights at each option `[K, *shape]`."""
        out = {}
        for name, weight in masklib.kernels(params, self.names).items():
            weight = np.asarray(weight)
            order = np.argsort(-np.abs(weight).ravel(), kind="stable")
            rank = np.empty(weight.size, np.int64)
            rank[order] = np.arange(weight.size)
            rank = rank.reshape(weight.shape)
            out[name] = np.stack([(rank < keep) & (weight != 0) for keep in self.keeps(name, weight.size)])
        return out


def _centre_out(size: int) -> list[int]:
    """Indices of an axis ordered by distance from its centre: a centred window
    of odd size k is then the first k of them."""
    centre = (size - 1) // 2
    return sorted(range(size), key=lambda i: (abs(i - centre), i))


class SliceCounts:
    """How many True entries of a kernel-shaped mask lie in a sub-network's slice.

    A compact model's kernel is a slice of the supernet's: a prefix on every axis
    except the conv window axes (`centred`), where it is the centred window.
    Reordering the window axes centre-out makes every slice a prefix box, whose
    count is one lookup in the inclusive prefix sums.
    """

    def __init__(self, mask: np.ndarray, centred: Sequence[int] = ()):
        table = np.asarray(mask, np.int64)
        for axis in centred:
            table = np.take(table, _centre_out(table.shape[axis]), axis=axis)
        for axis in range(table.ndim):
            table = np.cumsum(table, axis=axis)
        self.table = table

    def __call__(self, shape: Sequence[int]) -> int:
        """The count inside the slice of `shape`."""
        if len(shape) != self.table.ndim or any(not 0 <= n <= m for n, m in zip(shape, self.table.shape)):
            raise ValueError(f"slice shape {tuple(shape)} does not fit a kernel of shape {self.table.shape}")
        if min(shape, default=1) == 0:
            return 0
        return int(self.table[tuple(n - 1 for n in shape)])
