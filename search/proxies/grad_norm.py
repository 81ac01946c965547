"""Grad-norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021):
how large the loss gradient is at initialisation.

With L the mean cross-entropy of the batch (x, y), BatchNorm in train mode (the batch's
statistics), score = Σ over the conv/dense kernels of ‖∂L/∂θ‖₂: each layer's L2 norm,
summed over layers as in the paper (not the norm of all gradients together).
"""
from __future__ import annotations

import jax.numpy as jnp

from search.proxies.core import Network, register
from search.proxies.snip import kernel_loss_gradient


@register("grad_norm")
def grad_norm(net: Network, x, y):
    """Σ over the kernels of ‖∂L/∂θ‖₂, L the batch's mean cross-entropy (higher is better)."""
    return sum(jnp.sqrt(jnp.sum(jnp.square(g))) for g in kernel_loss_gradient(net, x, y).values())
