"""Jacobian covariance (Mellor et al., "Neural Architecture Search without Training",
arXiv:2006.04647 v1, 2020): how uncorrelated the input Jacobians of the examples are.

J_i = ∂(Σ logits)/∂x_i, the gradient of the logits summed over the batch and the classes
with respect to example i's input (BatchNorm in train mode, so the batch's statistics
couple the examples), flattened to a row of J [N, D]. C = corrcoef(J), the N × N
correlation matrix of the rows, has eigenvalues v; score = −Σ (log(v + k) + 1/(v + k))
with k = 1e-5. nan when some J_i is constant (its correlations are undefined).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from search.proxies.core import Network, register

EIGENVALUE_SHIFT = 1e-5   # the paper's k: keeps log and 1/v finite at eigenvalue 0


def input_jacobians(net: Network, x) -> jax.Array:
    """J [N, D]: the gradient of the summed logits with respect to each example's input."""
    grads = jax.grad(lambda inputs: jnp.sum(net.logits(net.params, inputs, train=True)))(x)
    return grads.reshape(len(x), -1)


def correlation(rows) -> jax.Array:
    """The correlation matrix of the rows of `rows` [N, D] (NumPy's corrcoef)."""
    centred = rows - jnp.mean(rows, axis=1, keepdims=True)
    cov = jnp.matmul(centred, centred.T, precision=jax.lax.Precision.HIGHEST)
    scale = jnp.sqrt(jnp.diag(cov))
    return cov / scale[:, None] / scale[None, :]


@register("jacob_cov")
def jacob_cov(net: Network, x, y):
    """−Σ (log(v + k) + 1/(v + k)), v the eigenvalues of corrcoef(input Jacobians) (higher is better)."""
    del y   # the Jacobians read no labels
    eigenvalues = jnp.linalg.eigvalsh(correlation(input_jacobians(net, x)))
    return -jnp.sum(jnp.log(eigenvalues + EIGENVALUE_SHIFT) + 1.0 / (eigenvalues + EIGENVALUE_SHIFT))
