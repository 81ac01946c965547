"""Dead-unit removal: a smaller dense model with the same outputs as a sparse one.

A hidden unit whose outgoing weights are all zero contributes nothing; nor does
one whose incoming weights and bias are all zero when what follows maps zero to
zero (ReLU/GELU/tanh/SiLU without normalisation). Both are removed: each
layer's live units are moved to the front (permuting the next layer's inputs
alike, so outputs are unchanged), and the layers of one width choice are cut to
the most live units any of them keeps. The result is the space's own compact
model at the new widths (`space.with_widths`), so it exports, reloads and
trains like any other.

A space offers this by describing its layer chain (`space.unit_chain(arch)`):
per layer the kernel (units on its last axis, inputs on the second-to-last),
its bias and per-unit variables, the width choice it belongs to, and whether
a zero unit stays zero downstream.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nas import precision
from sparse.masks import named_leaves


def dead_units(model: nnx.Module) -> dict[str, np.ndarray]:
    """Per chain layer with a width choice, the bool mask of its removable units."""
    space = model.space
    arch = {k: v[0] for k, v in space.choices.items()}
    chain = space.unit_chain(arch)
    leaves = {n: np.asarray(v) for n, v in named_leaves(nnx.state(model)).items()}
    out = {}
    for layer, consumer in zip(chain[:-1], chain[1:]):
        kernel = leaves[layer["kernel"]]
        outgoing = np.moveaxis(leaves[consumer["kernel"]], -2, 0).reshape(kernel.shape[-1], -1)
        silent = ~np.any(outgoing != 0, axis=1)
        if layer["zero_preserving"]:
            incoming = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
            bias = leaves[layer["bias"]] if layer.get("bias") else np.zeros(kernel.shape[-1])
            silent |= ~np.any(incoming != 0, axis=1) & (bias == 0)
        out[layer["kernel"]] = silent
    return out


def remove_dead_units(model: nnx.Module) -> nnx.Module:
    """The smaller dense model of a compact (one-arch) `model` without its dead units (computing
    in `model`'s dtype)."""
    space = model.space
    arch = {k: v[0] for k, v in space.choices.items()}
    chain = space.unit_chain(arch)
    dead = dead_units(model)
    widths: dict[str, int] = {}
    for layer in chain[:-1]:
        live = int((~dead[layer["kernel"]]).sum())
        widths[layer["width"]] = max(widths.get(layer["width"], 1), live, 1)
    leaves = {n: np.asarray(v) for n, v in named_leaves(nnx.state(model)).items()}
    for layer, consumer in zip(chain[:-1], chain[1:]):
        keep = np.argsort(dead[layer["kernel"]], kind="stable")[:widths[layer["width"]]]
        for name in [layer["kernel"]] + ([layer["bias"]] if layer.get("bias") else []) + layer["unit_vars"]:
            leaves[name] = np.take(leaves[name], keep, axis=-1)
        leaves[consumer["kernel"]] = np.take(leaves[consumer["kernel"]], keep, axis=-2)
    new_space, new_arch = space.with_widths(arch, widths)
    fixed = new_space.fix(new_arch)
    smaller = fixed.supernet_class(fixed, rngs=nnx.Rngs(0))
    state = nnx.state(smaller)
    for name, variable in named_variables(state).items():
        value = leaves[name]
        if value.shape != variable.shape:
            raise ValueError(f"{name}: the smaller model expects shape {variable.shape}, got {value.shape}")
        variable.set_value(jnp.asarray(value))
    nnx.update(smaller, state)
    return precision.set_compute_dtype(smaller, precision.compute_dtype_of(model))


def named_variables(state) -> dict:
    """{dotted name: nnx.Variable} of a module state."""
    return {".".join(str(p) for p in path): variable for path, variable in nnx.to_flat_state(state)}
