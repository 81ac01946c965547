"""NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021):
how differently the network's ReLUs split the examples of one batch at initialisation.

For each of the N examples of the batch, c_i is the binary code of the inputs of every
ReLU unit (one unit per position and channel of every ReLU): 1 where the pre-activation
is > 0. With C the [N, U] matrix of codes, K = C Cᵀ + (1 − C)(1 − C)ᵀ (K_ij counts the
units on which examples i and j agree) and score = log|det K| (BatchNorm in train mode,
normalising by the batch's statistics). −inf when two examples share a code, or when
the arch uses none of the supernet's ReLUs (K = 0).

The ReLUs are found in the forward pass's jaxpr: `jax.nn.relu` lowers to `max(x, 0)`,
so every `max` equation with a literal (or constant) zero operand is one. That includes
the relu6 inside `jax.nn.hard_swish` (its input is x + 3). A small interpreter evaluates
the jaxpr equation by equation (inlining calls such as `jit` and `custom_jvp_call` that
contain ReLUs), recording each ReLU's input; it runs inside `jit` and `vmap`.

Only the units of the arch's own network count. The supernet runs at its largest size:
a unit outside the arch's width is masked, its pre-activation exactly 0 on every example;
a layer beyond the arch's depth computes real values that a depth mixture then weighs
by 0. So a unit counts iff its pre-activation is nonzero on some example and its ReLU
reaches the logits: the gradient of the summed logits with respect to a zero probe added
to the ReLU's output is nonzero somewhere. Reaching is decided per ReLU, not per unit:
the gradient of a masked unit is not 0 (the next layer reads it with nonzero weights),
and a unit of a used layer whose own gradient is 0 on every example (one that always
loses a max-pool) still counts, as in the paper, which reads every ReLU unit.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxprs_in_params

from search.proxies.core import Network, register

# Call-like primitives whose body is evaluated in place when it contains a ReLU: the
# parameter holding the body, which takes the equation's operands as its inputs.
INLINED = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "remat2": "jaxpr",
           "checkpoint": "jaxpr"}


def _is_zero(atom, zero_consts: set) -> bool:
    if isinstance(atom, Literal):
        return bool(np.all(np.asarray(atom.val) == 0))
    return atom in zero_consts


def _zero_consts(jaxpr: Jaxpr, consts: Sequence) -> set:
    """The constvars bound to a concrete all-zero constant."""
    return {var for var, value in zip(jaxpr.constvars, consts)
            if not isinstance(value, jax.core.Tracer) and np.all(np.asarray(value) == 0)}


def _relu_operand(eqn, zero_consts: set) -> int | None:
    """Which operand of `eqn` is the ReLU's input, if `eqn` is `max(x, 0)` or `max(0, x)`."""
    if eqn.primitive.name != "max":
        return None
    for i in (0, 1):
        if _is_zero(eqn.invars[1 - i], zero_consts):
            return i
    return None


def _body(eqn) -> tuple[Jaxpr, Sequence]:
    body = eqn.params[INLINED[eqn.primitive.name]]
    return (body.jaxpr, body.consts) if isinstance(body, ClosedJaxpr) else (body, ())


def _has_relu(jaxpr: Jaxpr, consts: Sequence = ()) -> bool:
    zero_consts = _zero_consts(jaxpr, consts)
    for eqn in jaxpr.eqns:
        if _relu_operand(eqn, zero_consts) is not None:
            return True
        if eqn.primitive.name in INLINED:
            if _has_relu(*_body(eqn)):
                return True
        elif any(_has_relu(sub) for sub in jaxprs_in_params(eqn.params)):
            return True
    return False


def _evaluate(jaxpr: Jaxpr, consts: Sequence, args: Sequence, probes, relu_inputs: list) -> list:
    """The outputs of `jaxpr` on `args`. Appends every ReLU's input to `relu_inputs` in
    evaluation order and, when `probes` is a list, adds the next probe to that ReLU's
    output."""
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    zero_consts = _zero_consts(jaxpr, consts)

    def read(atom):
        return atom.val if isinstance(atom, Literal) else env[atom]

    for eqn in jaxpr.eqns:
        operands = [read(atom) for atom in eqn.invars]
        relu = _relu_operand(eqn, zero_consts)
        if relu is not None:
            out = eqn.primitive.bind(*operands, **eqn.params)
            if probes is not None:
                out = out + probes[len(relu_inputs)]
            relu_inputs.append(operands[relu])
            outs = [out]
        elif eqn.primitive.name in INLINED and _has_relu(*_body(eqn)):
            outs = _evaluate(*_body(eqn), operands, probes, relu_inputs)
        elif any(_has_relu(sub) for sub in jaxprs_in_params(eqn.params)):
            raise ValueError(f"naswot: a ReLU inside `{eqn.primitive.name}` (control flow) cannot "
                             "be read out; only ReLUs in straight-line code and calls are")
        else:
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*operands, **eqn.primitive.get_bind_params(eqn.params))
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    return [read(atom) for atom in jaxpr.outvars]


def relu_units(forward: Callable, *args) -> tuple[list[jax.Array], list[jax.Array]]:
    """(inputs, used) of every ReLU of `forward(*args)` (which returns logits [N, classes]):
    each ReLU's input [N, ...], and whether each of its units (one per position and
    channel) counts, [...]: nonzero on some example, in a ReLU that reaches the logits."""
    closed = jax.make_jaxpr(forward)(*args)
    flat_args = jax.tree.leaves(args)
    if not _has_relu(closed.jaxpr, closed.consts):
        raise ValueError("naswot: the network has no ReLU (no max(x, 0) in its forward pass)")

    def run(probes):
        relu_inputs = []
        logits, = _evaluate(closed.jaxpr, closed.consts, flat_args, probes, relu_inputs)
        return jnp.sum(logits), relu_inputs

    shapes = jax.eval_shape(lambda: run(None)[1])
    probes = [jnp.zeros(s.shape, s.dtype) for s in shapes]
    _, backward, inputs = jax.vjp(run, probes, has_aux=True)
    reach, = backward(jnp.ones((), jnp.float32))
    used = [jnp.any(x != 0, axis=0) & jnp.any(g != 0) for x, g in zip(inputs, reach)]
    return inputs, used


@register("naswot")
def naswot(net: Network, x, y):
    """log|det K| of the ReLU codes' agreement kernel K = C Cᵀ + (1 − C)(1 − C)ᵀ (higher is better)."""
    del y   # NASWOT reads no labels

    def forward(params, rest, probs, x):
        return net._replace(rest=rest, probs=probs).logits(params, x, train=True)

    inputs, used = relu_units(forward, net.params, net.rest, net.probs, x)
    n = len(x)
    agreement = jnp.zeros((n, n), jnp.float32)
    for pre, counts in zip(inputs, used):
        if pre.shape[0] != n:
            raise ValueError(f"naswot: a ReLU input has shape {pre.shape}; expected a leading batch "
                             f"axis of {n}")
        codes = (pre > 0).reshape(n, -1).astype(jnp.float32)
        weight = counts.reshape(-1).astype(jnp.float32)
        # The counts are integers: full float32 precision keeps them exact on GPUs and TPUs.
        agreement += jnp.matmul(codes * weight, codes.T, precision=jax.lax.Precision.HIGHEST)
        agreement += jnp.matmul((1 - codes) * weight, (1 - codes).T, precision=jax.lax.Precision.HIGHEST)
    return jnp.linalg.slogdet(agreement)[1]
