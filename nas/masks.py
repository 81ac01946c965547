"""Architecture encodings → multiplicative masks ("everything is a mask").

Every function takes one probability vector `p: [K]` over a choice's options
(one-hot for a discrete architecture) and returns the expected mask under p.
For one-hot p the result is exactly the 0/1 mask of the chosen option, so a hard
architecture and its extracted compact model agree bit for bit on the active
slice. Masks are built with elementwise products and sums (never `dot`), so
they add no matmuls to a traced model.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np


def _expect(p, table: np.ndarray):
    """Σ_k p_k table_k for a constant table `[K, ...]`."""
    p = jnp.asarray(p, jnp.float32)
    return jnp.sum(p.reshape((-1,) + (1,) * (table.ndim - 1)) * table, axis=0)


def prefix_mask(p, widths: Sequence[int], size: int):
    """P(width > j) for j < size: `m[j] = Σ_k p_k [j < widths_k]`. Shape `[size]`."""
    table = (np.arange(size)[None, :] < np.asarray(widths)[:, None]).astype(np.float32)
    return _expect(p, table)


def window_mask(p, kernel_sizes: Sequence[int], size: int, ndim: int):
    """Σ_k p_k · (centred k×…×k window of ones) inside a `size^ndim` kernel."""
    tables = []
    for k in kernel_sizes:
        if k > size or (size - k) % 2:
            raise ValueError(f"kernel size {k} must be ≤ {size} and of the same parity")
        line = np.zeros(size, np.float32)
        line[(size - k) // 2:(size + k) // 2] = 1.0
        window = line
        for _ in range(ndim - 1):
            window = np.multiply.outer(window, line)
        tables.append(window)
    return _expect(p, np.stack(tables))


def joint_prefix_mask(p_a, options_a: Sequence, p_b, options_b: Sequence,
                      width: Callable[[object, object], int], size: int):
    """Prefix mask of a width decided by two choices jointly (e.g. embed × mlp ratio).

    Each combination (a, b) has weight p_a · p_b (the outer product of the two
    distributions) and width `width(a, b)`.
    """
    joint = jnp.asarray(p_a, jnp.float32)[:, None] * jnp.asarray(p_b, jnp.float32)[None, :]
    widths = [width(a, b) for a in options_a for b in options_b]
    return prefix_mask(joint.reshape(-1), widths, size)


def mixture(p, values: Sequence):
    """Σ_k p_k · values_k for arrays of one shape (depth outputs, activations), in the
    values' dtype (a bfloat16 model's activations stay bfloat16)."""
    p = jnp.asarray(jnp.asarray(p, jnp.float32), jnp.result_type(*values))
    total = p[0] * values[0]
    for k in range(1, len(values)):
        total = total + p[k] * values[k]
    return total


def depth_weights(p, depth_options: Sequence[int], max_depth: int):
    """Weight of the output after each block 1..max_depth: `w[d-1] = Σ_k p_k [d == depth_k]`."""
    table = np.zeros((len(depth_options), max_depth), np.float32)
    for k, d in enumerate(depth_options):
        table[k, d - 1] = 1.0
    return _expect(p, table)
