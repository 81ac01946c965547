"""Mixed precision: one compute dtype per model, float32 everywhere it matters.

Flax's convention (`dtype` computes, `param_dtype` stores), with the stored
dtype always float32: every `nas.layers` layer, and every `Supernet`, is a
`Computes` module whose static `dtype` is the dtype its matmuls, convolutions and
activations run in. A layer casts its input, its weights and its masks to
`dtype` at use; the parameters themselves (and so their gradients and the
optimizer states), BatchNorm's statistics, normalisation arithmetic, the
attention softmax, the arch probabilities α and the loss stay float32. A
model's logits come back float32 (`search.engine.apply`, `Supernet.__call__`).

`set_compute_dtype(model, "bfloat16")` switches every layer of a built model (the
dtype is part of its graph, so a step compiled for one dtype never serves the
other); `nas.supernet(..., dtype=)` builds one that way and `nas.extract` hands a
supernet's dtype to its compact model. Layers of a user's own modules that are
not `nas.layers` compute in whatever dtype their inputs arrive in.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

COMPUTE_DTYPES = ("float32", "bfloat16")
FLOAT32 = jnp.dtype("float32")


class Computes(nnx.Module):
    """A module that computes in `dtype` (float32 unless `set_compute_dtype` says otherwise)."""

    dtype = FLOAT32

    def cast(self, *arrays):
        """`arrays` in this module's compute dtype (None stays None)."""
        return tuple(None if a is None else jnp.asarray(a, self.dtype) for a in arrays)


def compute_dtype(name: str) -> jnp.dtype:
    """The dtype called `name`, one of `COMPUTE_DTYPES`."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {name!r} is not supported; choose one of {list(COMPUTE_DTYPES)}")
    return jnp.dtype(name)


def set_compute_dtype(model: nnx.Module, name: str) -> nnx.Module:
    """`model` (changed in place) with every `Computes` module in it computing in `name`."""
    dtype = compute_dtype(name)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, Computes):
            module.dtype = dtype
    return model


def compute_dtype_of(model: nnx.Module) -> str:
    """The name of the dtype `model` computes in: its `Computes` modules' (float32 when it has
    none); a model whose layers disagree is an error."""
    found = {str(m.dtype) for _, m in nnx.iter_modules(model) if isinstance(m, Computes)}
    if len(found) > 1:
        raise ValueError(f"the model's layers compute in several dtypes {sorted(found)}; "
                         "set one with nas.precision.set_compute_dtype")
    return found.pop() if found else str(FLOAT32)
