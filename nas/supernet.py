"""The supernet base class, sub-network extraction and cost counting.

A supernet is an NNX module built once at the largest size of its space. Its
`forward(x, probs, train)` is a pure function of one probability vector per
choice, so a hard architecture (one-hot) and a soft mixture go through the same
compiled function. `nas` never imports a space: a space builds its own module
(`space.supernet_class`) and encodes architectures (`space.encode`).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nas import precision


@functools.partial(jax.jit, static_argnums=0)
def _infer(graphdef, state, x, probs):
    return jnp.asarray(nnx.merge(graphdef, state).forward(x, probs, train=False), jnp.float32)


class Supernet(precision.Computes):
    """Base of every space's supernet.

    Subclasses are constructed as `cls(space, rngs=…)` from a space bound to an
    input shape and class count, and implement `forward(x, probs, train)`
    returning logits `[batch, num_classes]`. `dtype` is the compute dtype of its
    layers (`nas.precision`).
    """

    def forward(self, x, probs, train: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def __call__(self, x, arch=None):
        """Inference-mode logits for a hard arch (dict of options), a soft one
        (dict of probability vectors), or — for a compact model whose every
        choice has one option — no arch at all. Compiles once per input shape.
        The logits are float32 whatever the compute dtype."""
        probs = self.space.encode(arch)
        if isinstance(x, jax.core.Tracer):
            return jnp.asarray(self.forward(x, probs, train=False), jnp.float32)
        graphdef, state = nnx.split(self)
        return _infer(graphdef, state, jnp.asarray(x, jnp.float32), probs)


def supernet(space, input_shape=None, num_classes: int | None = None, seed: int = 0,
             dtype: str = "float32") -> Supernet:
    """Build `space`'s supernet at its largest size for inputs `[batch, *input_shape]`,
    computing in `dtype` (`nas.precision.COMPUTE_DTYPES`; its parameters are float32).

    `input_shape` and `num_classes` default to the space's own.
    """
    bound = space.bind(input_shape=input_shape, num_classes=num_classes)
    return precision.set_compute_dtype(bound.supernet_class(bound, rngs=nnx.Rngs(seed)), dtype)


def _slice_for(source_shape, target_shape, centred_axes, path):
    index = []
    for axis, (big, small) in enumerate(zip(source_shape, target_shape)):
        if small > big:
            raise ValueError(f"{'/'.join(map(str, path))}: axis {axis} of the compact model "
                             f"({small}) exceeds the supernet's ({big})")
        start = (big - small) // 2 if axis in centred_axes else 0
        index.append(slice(start, start + small))
    return tuple(index)


def extract(model: Supernet, arch) -> Supernet:
    """The standalone compact model of `arch`: only the active slices of `model`.

    The compact model is the same module class built over the space with every
    choice fixed to the arch's option, so each tensor has the sub-network's own
    shape; widths are prefix slices, kernels centred windows. It computes in
    `model`'s dtype, and its inference outputs equal `model(x, arch)`.
    """
    fixed = model.space.fix(arch)
    sub = nnx.eval_shape(lambda: type(model)(fixed, rngs=nnx.Rngs(0)))
    source = dict(nnx.to_flat_state(nnx.state(model)))
    target = nnx.state(sub)
    for path, variable in nnx.to_flat_state(target):
        if path not in source:
            raise KeyError(f"supernet has no variable {'/'.join(map(str, path))}")
        big = source[path]
        centred = big.get_metadata().get("centred_axes", ())
        index = _slice_for(big.shape, variable.shape, centred, path)
        variable.set_value(jnp.asarray(big[...][index]))
    nnx.update(sub, target)
    return precision.set_compute_dtype(sub, precision.compute_dtype_of(model))


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (`nnx.Param` leaves) of a module."""
    return int(sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))))


def _eqn_macs(eqn) -> int:
    name = eqn.primitive.name
    if eqn.params.get("name") == "depthwise_conv":
        kernel = eqn.invars[1].aval.shape
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(kernel[:-2])
    if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        out = eqn.outvars[0].aval.shape
        return math.prod(out) * math.prod(lhs[a] for a in lhs_contract)
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out = eqn.outvars[0].aval.shape
        out_channels = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        return math.prod(out) * (math.prod(rhs) // out_channels)
    return 0


def _jaxpr_macs(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        if eqn.params.get("name") == "depthwise_conv":
            continue
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    total += _jaxpr_macs(inner if hasattr(inner, "eqns") else inner.jaxpr)
                elif hasattr(sub, "eqns"):
                    total += _jaxpr_macs(sub)
    return total


def count_macs(fn, *args) -> int:
    """Multiply–accumulates of every matmul and convolution `fn(*args)` really runs,
    read off its jaxpr (an independent check of a space's analytic FLOPs).
    Depthwise convolutions run as shifted multiply–adds are counted by their
    named call (`nas.layers.depthwise_conv`)."""
    closed = jax.make_jaxpr(fn)(*args)
    return _jaxpr_macs(closed.jaxpr)
