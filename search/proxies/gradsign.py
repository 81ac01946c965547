"""GradSign (Zhang & Jia, ICLR 2022): how consistently the examples' gradients agree
in sign at initialisation.

For each of N examples (128 recommended) the cross-entropy gradient of that example
alone, on the conv/dense kernels (no biases, no normalisation parameters), with
BatchNorm normalising by the single example's statistics (train mode); then
score = Σ_k |Σ_i sign(g_ik)| over every kernel entry k. The sum, not the mean, so
networks of different sizes rank as in the paper. Per-example gradients are one
`vmap(grad)` per slice of `SLICE` examples, the slices' signs summed in an
unrolled `scan` (a rolled loop ran about 5× slower on CPU). Only the sign sums
are kept, but unrolled, XLA may schedule several slices' gradients at once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from search import engine
from search.proxies.core import Network, register

SLICE = 32   # examples whose gradients are held at once


def example_gradient(net: Network, x, y) -> dict[str, jax.Array]:
    """Gradient of one example's cross-entropy on the kernels (x without a batch axis)."""
    return net.kernel_gradient(
        lambda params: engine.cross_entropy(net.logits(params, x[None], train=True), y[None]))


def sign_sums(net: Network, x, y) -> dict[str, jax.Array]:
    """Σ_i sign(g_i) per kernel entry over the N examples of `x`."""
    size = min(SLICE, len(x))
    slices = -(-len(x) // size)
    pad = slices * size - len(x)
    # Padding rows get weight 0, so their signs add nothing.
    weight = jnp.concatenate([jnp.ones(len(x)), jnp.zeros(pad)]).reshape(slices, size)
    xs = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]).reshape((slices, size) + x.shape[1:])
    ys = jnp.concatenate([y, jnp.repeat(y[:1], pad, 0)]).reshape(slices, size)

    def add_slice(total, batch):
        xb, yb, wb = batch
        grads = jax.vmap(lambda xi, yi: example_gradient(net, xi, yi))(xb, yb)
        signs = jax.tree.map(lambda g: jnp.tensordot(wb, jnp.sign(g), axes=1), grads)
        return jax.tree.map(jnp.add, total, signs), None

    zeros = jax.tree.map(jnp.zeros_like, net.kernel_leaves(net.params))
    total, _ = jax.lax.scan(add_slice, zeros, (xs, ys, weight), unroll=True)
    return total


@register("gradsign")
def gradsign(net: Network, x, y):
    """Σ_k |Σ_i sign(g_ik)| of per-example gradients on the kernels (higher is better)."""
    return sum(jnp.sum(jnp.abs(s)) for s in sign_sums(net, x, y).values())
