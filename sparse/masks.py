"""Sparse masks over the prunable kernels of any parameter pytree.

Masks are a flat dict `{kernel name: bool array of the kernel's shape}` holding
only the prunable kernels; a name is the leaf's path joined by dots
(`stages.0.1.kernel`), so masks travel through `jit`, optimizer states and
Orbax checkpoints as a plain pytree and match any parameter tree (an
`nnx.State`, a dict) by name. The effective weight is `W ⊙ M_sparse` (the
supernet multiplies the architecture mask on top, see `docs/design.md`).
"""
from __future__ import annotations

import math
import re
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np

# Weight matrices and conv kernels (Dense/Conv `kernel`, attention `qkv` and
# `proj`); biases, norm scales and embeddings are never pruned.
DEFAULT_INCLUDE = (r"(^|\.)(kernel|qkv|proj)$",)
DISTRIBUTIONS = ("uniform", "er", "erk")
# Attention kernels by leaf name (`nas.layers.MultiHeadAttention`): (layout, fan-in
# axes, fan-out axes). Every other kernel is a Dense `[in, out]` or Conv `[k..., in, out]`.
ATTENTION_AXES = {"qkv": ("[embed, 3, heads, head_dim]", (0,), (1, 2, 3)),
                  "proj": ("[heads, head_dim, embed]", (0, 1), (2,))}


class KernelAxes(NamedTuple):
    """A kernel's axes seen as a matrix from inputs to output units."""
    fan_in: tuple[int, ...]    # input features (N:M groups run along them)
    fan_out: tuple[int, ...]   # output units
    spatial: tuple[int, ...]   # conv window; with fan_in, each unit's receptive field


def kernel_axes(name: str, shape: Sequence[int]) -> KernelAxes:
    """The matrix view of kernel `name` of `shape`: attention `qkv [e, 3, h, d]` maps
    e → 3·h·d and `proj [h, d, e]` maps h·d → e; any other kernel is `[k..., in, out]`."""
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ATTENTION_AXES:
        layout, fan_in, fan_out = ATTENTION_AXES[leaf]
        if len(shape) != len(fan_in) + len(fan_out):
            raise ValueError(f"kernel {name!r} of shape {shape}: attention {leaf} kernels are {layout}")
        return KernelAxes(fan_in, fan_out, ())
    if len(shape) < 2:
        raise ValueError(f"kernel {name!r} of shape {shape}: kernels are [k..., in, out] "
                         f"(at least 2 axes) or attention {list(ATTENTION_AXES)}")
    ndim = len(shape)
    return KernelAxes((ndim - 2,), (ndim - 1,), tuple(range(ndim - 2)))


def matrix_sizes(name: str, shape: Sequence[int]) -> tuple[int, int, tuple[int, ...]]:
    """(inputs, output units, window sizes) of kernel `name` as a matrix."""
    axes = kernel_axes(name, shape)
    return (math.prod(shape[a] for a in axes.fan_in), math.prod(shape[a] for a in axes.fan_out),
            tuple(shape[a] for a in axes.spatial))


def as_matrix(name: str, weight):
    """`weight` (NumPy or JAX) laid out as `[window..., inputs, outputs]`."""
    axes = kernel_axes(name, weight.shape)
    n_in, n_out, window = matrix_sizes(name, weight.shape)
    return weight.transpose(axes.spatial + axes.fan_in + axes.fan_out).reshape(window + (n_in, n_out))


def from_matrix(name: str, matrix, shape: Sequence[int]):
    """The inverse of `as_matrix`: back to kernel `name`'s own `shape`."""
    axes = kernel_axes(name, shape)
    order = axes.spatial + axes.fan_in + axes.fan_out
    inverse = tuple(order.index(a) for a in range(len(shape)))
    return matrix.reshape(tuple(shape[a] for a in order)).transpose(inverse)


def leaf_name(path) -> str:
    """Dotted name of a pytree leaf path; NNX's trailing `.value` is dropped."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if len(parts) > 1 and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def named_leaves(params) -> dict[str, jax.Array]:
    """`{name: leaf}` of a parameter pytree, in flattening order."""
    return {leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def kernel_names(params, include: Sequence[str] = DEFAULT_INCLUDE) -> list[str]:
    """Names of the leaves with ≥ 2 axes that match any regex in `include`."""
    patterns = [re.compile(p) for p in include]
    return [name for name, leaf in named_leaves(params).items()
            if np.ndim(leaf) >= 2 and any(p.search(name) for p in patterns)]


def usage_order(fn: Callable, params, names: Sequence[str]) -> list[str]:
    """`names` in the order `fn(params)` first touches them (read off its jaxpr):
    the first is the input layer, the last the classifier."""
    leaves = named_leaves(params)
    flat, treedef = jax.tree_util.tree_flatten(params)
    closed = jax.make_jaxpr(lambda *flat: fn(jax.tree_util.tree_unflatten(treedef, flat)))(*flat)
    var_name = {var: name for var, name in zip(closed.jaxpr.invars, leaves)}
    seen: list[str] = []
    for eqn in closed.jaxpr.eqns:
        for var in eqn.invars:
            name = var_name.get(var) if isinstance(var, jax_core.Var) else None
            if name in names and name not in seen:
                seen.append(name)
    return seen + [n for n in names if n not in seen]


def select(params, forward: Callable | None = None, *, include: Sequence[str] = DEFAULT_INCLUDE,
           first_layer: bool = True, last_layer: bool = True) -> list[str]:
    """The prunable kernels of `params`, in the order `forward(params)` uses them.

    `first_layer=False` / `last_layer=False` keep the input layer / classifier
    dense; telling them apart needs `forward`.
    """
    names = kernel_names(params, include)
    if not names:
        raise ValueError(f"no prunable kernels: no leaf with ≥ 2 axes matches include={list(include)}")
    if forward is not None:
        names = usage_order(forward, params, names)
    elif not (first_layer and last_layer):
        raise ValueError("first_layer/last_layer=False needs `forward` to know the layer order")
    if not first_layer:
        names = names[1:]
    if not last_layer:
        names = names[:-1]
    if not names:
        raise ValueError("no prunable kernels left after excluding the first/last layer")
    return names


def shapes_of(params, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    leaves = named_leaves(params)
    missing = [n for n in names if n not in leaves]
    if missing:
        raise KeyError(f"parameters have no leaf {missing[0]!r}; leaves are {list(leaves)}")
    return {n: tuple(np.shape(leaves[n])) for n in names}


def densities(shapes: Mapping[str, Sequence[int]], sparsity: float,
              distribution: str = "erk") -> dict[str, float]:
    """Per-layer densities whose kept weights total round((1 − sparsity)·N).

    - `uniform`: every layer at 1 − sparsity.
    - `er` (Erdős–Rényi): density ∝ (n_in + n_out)/(n_in·n_out).
    - `erk`: density ∝ (n_in + n_out + Σ k)/(n_in·n_out·Π k) over the conv window k.
    n_in and n_out are the kernel's matrix view (`kernel_axes`: an attention
    `qkv` is embed → 3·heads·head_dim). For `er`/`erk` one scale ε is solved so
    the total matches; a layer whose density would exceed 1 is made dense and ε
    is solved again over the rest (Evci et al. 2020, RigL).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; distributions are {list(DISTRIBUTIONS)}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    if distribution == "uniform":
        return {n: 1.0 - sparsity for n in shapes}
    views = {n: matrix_sizes(n, s) for n, s in shapes.items()}
    if distribution == "er":
        raw = {n: (n_in + n_out) / (n_in * n_out) for n, (n_in, n_out, _) in views.items()}
    else:
        raw = {n: (n_in + n_out + sum(k)) / (n_in * n_out * math.prod(k))
               for n, (n_in, n_out, k) in views.items()}
    kept_total = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        budget = kept_total - sum(sizes[n] for n in dense)
        free = [n for n in shapes if n not in dense]
        scale = budget / sum(raw[n] * sizes[n] for n in free)
        over = [n for n in free if scale * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else scale * raw[n] for n in shapes}


def kept_counts(shapes: Mapping[str, Sequence[int]], density: Mapping[str, float]) -> dict[str, int]:
    return {n: int(round(math.prod(s) * density[n])) for n, s in shapes.items()}


def top_k_mask(score, k):
    """Bool mask of `score`'s shape with exactly `k` True at the largest scores
    (ties go to the lower flat index); `k` may be traced."""
    flat = score.ravel()
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
    return (rank < k).reshape(score.shape)


def random_masks(key, shapes: Mapping[str, Sequence[int]], density: Mapping[str, float]) -> dict:
    """Masks with exactly round(size·density) active positions per layer, uniformly placed."""
    counts = kept_counts(shapes, density)
    keys = jax.random.split(key, len(shapes))
    return {n: top_k_mask(jax.random.uniform(k, tuple(s)), counts[n])
            for k, (n, s) in zip(keys, shapes.items())}


def ones(shapes: Mapping[str, Sequence[int]]) -> dict:
    return {n: jnp.ones(tuple(s), bool) for n, s in shapes.items()}


def map_named(fn: Callable, params, names) -> object:
    """`params` with `fn(name, leaf)` applied to the leaves named in `names`."""
    names = set(names)

    def visit(path, leaf):
        name = leaf_name(path)
        return fn(name, leaf) if name in names else leaf
    return jax.tree_util.tree_map_with_path(visit, params)


def apply(params, masks: Mapping):
    """`params` with every masked kernel multiplied by its mask (exact zeros where pruned)."""
    return map_named(lambda n, w: w * masks[n].astype(w.dtype), params, masks)


def rescale(params, masks: Mapping):
    """Sparse-aware initialisation: each kernel's output unit scaled by
    sqrt(fan-in / active fan-in), so a sparse random start keeps the activation
    variance of the dense initialisation (without it, a deep plain network
    started at 90 % sparsity passes on ~0.1× the variance per layer and its
    signal vanishes). Units and fan-in follow `kernel_axes` (an attention `qkv`
    unit reads embed inputs). Dense masks leave the weights unchanged."""
    def scale(name, weight):
        n_in, n_out, window = matrix_sizes(name, weight.shape)
        mask = as_matrix(name, jnp.asarray(masks[name], weight.dtype)).reshape(-1, n_out)
        active = jnp.sum(mask, axis=0)
        factor = jnp.where(active > 0, jnp.sqrt(n_in * math.prod(window) / jnp.maximum(active, 1.0)), 1.0)
        return weight * from_matrix(name, jnp.broadcast_to(factor, mask.shape), weight.shape)
    return map_named(scale, params, masks)


def kernels(params, names: Sequence[str]) -> dict:
    leaves = named_leaves(params)
    return {n: leaves[n] for n in names}


def summary(params, masks: Mapping) -> dict:
    """Sparsity as a user counts it, from the masks: over the prunable kernels and
    over every parameter (non-prunable leaves count as dense), plus per layer."""
    leaves = named_leaves(params)
    layers = {}
    for name, mask in masks.items():
        size, nonzero = int(np.size(mask)), int(np.sum(np.asarray(mask)))
        layers[name] = {"shape": list(np.shape(mask)), "size": size, "nonzero": nonzero,
                        "sparsity": 1.0 - nonzero / size}
    prunable = sum(v["size"] for v in layers.values())
    prunable_nonzero = sum(v["nonzero"] for v in layers.values())
    total = sum(int(np.size(v)) for v in leaves.values())
    nonzero = prunable_nonzero + total - prunable
    return {"prunable_params": prunable, "prunable_nonzero": prunable_nonzero,
            "prunable_sparsity": 1.0 - prunable_nonzero / prunable if prunable else 0.0,
            "params": total, "nonzero_params": nonzero, "sparsity": 1.0 - nonzero / total,
            "layers": layers}


def count_nonzero(params) -> dict[str, int]:
    """Exact nonzeros of every leaf, counted from the values (independent of any mask)."""
    return {n: int(np.count_nonzero(np.asarray(v))) for n, v in named_leaves(params).items()}
