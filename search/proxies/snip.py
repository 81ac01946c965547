"""SNIP (Lee et al., "SNIP: Single-shot Network Pruning based on Connection
Sensitivity", ICLR 2019; as a NAS proxy, Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS", ICLR 2021): the loss's sensitivity to removing each weight.

With L the mean cross-entropy of the batch (x, y), BatchNorm in train mode (the batch's
statistics), score = Σ over the conv/dense kernels of Σ |θ ⊙ ∂L/∂θ|.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from search import engine
from search.proxies.core import Network, register


def kernel_loss_gradient(net: Network, x, y) -> dict[str, jax.Array]:
    """∂L/∂θ on the kernels, L the batch's mean cross-entropy (BatchNorm in train mode)."""
    return net.kernel_gradient(lambda params: engine.cross_entropy(net.logits(params, x, train=True), y))


@register("snip")
def snip(net: Network, x, y):
    """Σ |θ ⊙ ∂L/∂θ| over the kernels, L the batch's mean cross-entropy (higher is better)."""
    kernels = net.kernel_leaves(net.params)
    grads = kernel_loss_gradient(net, x, y)
    return sum(jnp.sum(jnp.abs(kernels[name] * grads[name])) for name in kernels)
