"""SynFlow (Tanaka et al., "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020; as a NAS proxy, Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021): the synaptic flow through the network.

Every parameter θ (biases included) is replaced by |θ|, BatchNorm runs in inference
mode (at initialisation its running mean is 0 and variance 1), and the input is one
example of all ones. With R the sum of the logits, score = Σ over the conv/dense kernels
of Σ |θ ⊙ ∂R/∂θ|. No data and no labels are read.

Computed in float32: the flow through absolute weights grows with depth and width, so a
very deep or wide network can overflow to inf, and then to nan where a supernet's depth
mixture weighs an overflowing layer beyond the arch's depth by 0 (0 · inf).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from search.proxies.core import Network, register


@register("synflow")
def synflow(net: Network, x, y):
    """Σ |θ ⊙ ∂R/∂θ| over the kernels, R the summed logits of ones under |θ| (higher is better)."""
    del y   # SynFlow reads no labels
    positive = jax.tree.map(jnp.abs, net.params)
    ones = jnp.ones((1,) + x.shape[1:], jnp.float32)
    kernels = net.kernel_leaves(positive)
    grads = net.kernel_gradient(lambda params: jnp.sum(net.logits(params, ones, train=False)), positive)
    return sum(jnp.sum(jnp.abs(kernels[name] * grads[name])) for name in kernels)
