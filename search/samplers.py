"""Samplers: architecture logits α → mixing weights p, one vector per choice.

A sampler is a pair of pure functions (optax style), registered by name:

    sampler = samplers.get("drnas")
    probs = sampler.sample(alpha, key, progress)   # dict name → [K], differentiable in α
    loss = task_loss + sampler.penalty(alpha)      # regulariser on α (0 for most)

`progress` ∈ [0, 1] is the fraction of the search done (GDAS anneals its
temperature with it). Rules and defaults: `docs/algorithms.md` §1.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from spaces.core import closest


class Sampler(NamedTuple):
    name: str
    sample: Callable  # (alpha: dict, key, progress) -> dict of probability vectors
    penalty: Callable  # (alpha: dict) -> scalar


def sparsemax(z):
    """Euclidean projection of `z: [K]` onto the probability simplex (Martins &
    Astudillo 2016): p = max(z − τ, 0) with τ chosen so that Σ p = 1."""
    z_sorted = jnp.sort(z)[::-1]
    cumulative = jnp.cumsum(z_sorted)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    support = 1 + k * z_sorted > cumulative
    size = jnp.sum(support)
    tau = (jnp.sum(jnp.where(support, z_sorted, 0.0)) - 1) / size
    return jnp.maximum(z - tau, 0.0)


def dirichlet_concentration(alpha):
    """DrNAS's positive concentration ELU(α) + 1."""
    return jax.nn.elu(alpha) + 1.0


def dirichlet_kl(concentration, prior: float = 1.0):
    """KL(Dir(concentration) ‖ Dir(prior · 1)) in closed form."""
    a = concentration
    b = jnp.full_like(a, prior)
    a0, b0 = jnp.sum(a), jnp.sum(b)
    return (gammaln(a0) - jnp.sum(gammaln(a)) - gammaln(b0) + jnp.sum(gammaln(b))
            + jnp.sum((a - b) * (digamma(a) - digamma(a0))))


def gumbel_hard(key, alpha, temperature):
    """GDAS: forward one-hot of argmax(α + Gumbel noise); backward the gradient of
    softmax((α + g) / temperature) (straight-through)."""
    soft = jax.nn.softmax((alpha + jax.random.gumbel(key, alpha.shape)) / temperature)
    hard = jax.nn.one_hot(jnp.argmax(soft), alpha.shape[-1], dtype=soft.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))  # x − x is exactly 0: forward stays one-hot


def gdas_temperature(progress, start: float = 10.0, end: float = 0.1):
    """Linear from `start` at progress 0 to `end` at progress 1."""
    return start + (end - start) * jnp.clip(progress, 0.0, 1.0)


def _per_choice(fn):
    return lambda alpha: {k: fn(v) for k, v in alpha.items()}


def _keyed(fn):
    def sample(alpha, key, progress):
        keys = jax.random.split(key, len(alpha))
        return {k: fn(subkey, v, progress) for subkey, (k, v) in zip(keys, alpha.items())}
    return sample


def _no_penalty(alpha):
    return jnp.zeros(())


def _drnas_penalty(alpha, weight: float = 1e-3):
    return weight * sum(dirichlet_kl(dirichlet_concentration(v)) for v in alpha.values())


_SAMPLERS = {
    "darts": Sampler("darts", lambda alpha, key, progress: _per_choice(jax.nn.softmax)(alpha),
                     _no_penalty),
    "darts_sparsemax": Sampler("darts_sparsemax",
                               lambda alpha, key, progress: _per_choice(sparsemax)(alpha),
                               _no_penalty),
    "drnas": Sampler("drnas", _keyed(lambda key, a, progress: jax.random.dirichlet(
        key, dirichlet_concentration(a))), _drnas_penalty),
    "gdas": Sampler("gdas", _keyed(lambda key, a, progress: gumbel_hard(
        key, a, gdas_temperature(progress))), _no_penalty),
}


def names() -> list[str]:
    return sorted(_SAMPLERS)


def get(name: str) -> Sampler:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}{closest(name, _SAMPLERS)}; "
                         f"samplers are {names()}")
    return _SAMPLERS[name]


def register(sampler: Sampler) -> Sampler:
    """Add a sampler under `sampler.name`."""
    if sampler.name in _SAMPLERS:
        raise ValueError(f"sampler {sampler.name!r} is already registered")
    _SAMPLERS[sampler.name] = sampler
    return sampler
