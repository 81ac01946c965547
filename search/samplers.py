"""Samplers: architecture logits α → mixing weights p, one vector per choice.

A sampler is a pair of pure functions (optax style), registered by name:

    sampler = samplers.get("drnas")
    probs = sampler.sample(alpha, key, progress)   # dict name → [K], differentiable in α
    loss = task_loss + sampler.penalty(alpha)      # regulariser on α (0 for most)

`progress` ∈ [0, 1] is the fraction of the search done (GDAS anneals its
temperature with it). Rules and defaults: `docs/algorithms.md` §1.

A sub-supernet of a split (`search.splits`) keeps only some options of a choice:
`sample(alpha, key, progress, allowed)` and `penalty(alpha, allowed)` take
`allowed`, a dict name → bool[K] (None: every option), and give the sampler of
the kept options alone, exactly: disallowed options get probability 0 and no
gradient, and the kept ones are distributed as if the choice had only them
(softmax and sparsemax over the kept logits, a Dirichlet over the kept
concentrations, Gumbel argmax among the kept options, the KL penalty over them).
A registered sampler takes the same four and two arguments.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from spaces.core import closest


class Sampler(NamedTuple):
    name: str
    sample: Callable  # (alpha: dict, key, progress, allowed=None) -> dict of probability vectors
    penalty: Callable  # (alpha: dict, allowed=None) -> scalar


def sparsemax(z, allowed=None):
    """Euclidean projection of `z: [K]` onto the probability simplex (Martins &
    Astudillo 2016): p = max(z − τ, 0) with τ chosen so that Σ p = 1; with
    `allowed: bool[K]`, the projection of the allowed entries alone (0 elsewhere)."""
    if allowed is None:
        allowed = jnp.ones(z.shape, bool)
    # Disallowed entries sort last and never enter the support.
    z_sorted = jnp.sort(jnp.where(allowed, z, -jnp.inf))[::-1]
    finite = jnp.isfinite(z_sorted)
    z_finite = jnp.where(finite, z_sorted, 0.0)
    cumulative = jnp.cumsum(z_finite)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    support = finite & (1 + k * z_finite > cumulative)
    size = jnp.sum(support)
    tau = (jnp.sum(jnp.where(support, z_finite, 0.0)) - 1) / size
    return jnp.where(allowed, jnp.maximum(z - tau, 0.0), 0.0)


def dirichlet_concentration(alpha):
    """DrNAS's positive concentration ELU(α) + 1."""
    return jax.nn.elu(alpha) + 1.0


def dirichlet_kl(concentration, prior: float = 1.0, allowed=None):
    """KL(Dir(concentration) ‖ Dir(prior · 1)) in closed form; with `allowed: bool[K]`,
    that of the Dirichlets over the allowed entries."""
    keep = jnp.ones(concentration.shape, bool) if allowed is None else allowed
    a = jnp.where(keep, concentration, 1.0)  # any positive value: masked out of every sum
    b = jnp.full_like(a, prior)

    def total(v):
        return jnp.sum(jnp.where(keep, v, 0.0))
    a0, b0 = total(a), total(b)
    return (gammaln(a0) - total(gammaln(a)) - gammaln(b0) + total(gammaln(b))
            + total((a - b) * (digamma(a) - digamma(a0))))


def restricted_dirichlet(key, concentration, allowed=None):
    """A Dirichlet draw over the allowed entries (0 elsewhere): independent log-gamma
    draws of the allowed concentrations, normalised by a softmax (a Dirichlet is gammas
    over their sum; the log space keeps small concentrations exact). Without `allowed`,
    `jax.random.dirichlet` itself."""
    if allowed is None:
        return jax.random.dirichlet(key, concentration)
    log_gamma = jax.random.loggamma(key, jnp.where(allowed, concentration, 1.0))
    return jax.nn.softmax(jnp.where(allowed, log_gamma, -jnp.inf))


def masked_logits(alpha, allowed=None):
    """α with disallowed options at −inf (probability 0 under any softmax or argmax)."""
    return alpha if allowed is None else jnp.where(allowed, alpha, -jnp.inf)


def gumbel_hard(key, alpha, temperature):
    """GDAS: forward one-hot of argmax(α + Gumbel noise); backward the gradient of
    softmax((α + g) / temperature) (straight-through). Options at α = −inf never win."""
    soft = jax.nn.softmax((alpha + jax.random.gumbel(key, alpha.shape)) / temperature)
    hard = jax.nn.one_hot(jnp.argmax(soft), alpha.shape[-1], dtype=soft.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))  # x − x is exactly 0: forward stays one-hot


def gdas_temperature(progress, start: float = 10.0, end: float = 0.1):
    """Linear from `start` at progress 0 to `end` at progress 1."""
    return start + (end - start) * jnp.clip(progress, 0.0, 1.0)


def _allowed_of(allowed, name):
    return None if allowed is None else allowed[name]


def _per_choice(fn):
    """A keyless sampler from `fn(α_choice, allowed_choice)`."""
    def sample(alpha, key, progress, allowed=None):
        return {k: fn(v, _allowed_of(allowed, k)) for k, v in alpha.items()}
    return sample


def _keyed(fn):
    """A sampler from `fn(key, α_choice, progress, allowed_choice)`, one key per choice."""
    def sample(alpha, key, progress, allowed=None):
        keys = jax.random.split(key, len(alpha))
        return {k: fn(subkey, v, progress, _allowed_of(allowed, k))
                for subkey, (k, v) in zip(keys, alpha.items())}
    return sample


def _no_penalty(alpha, allowed=None):
    return jnp.zeros(())


def _drnas_penalty(alpha, allowed=None, weight: float = 1e-3):
    return weight * sum(dirichlet_kl(dirichlet_concentration(v), allowed=_allowed_of(allowed, k))
                        for k, v in alpha.items())


_SAMPLERS = {
    "darts": Sampler("darts", _per_choice(lambda a, allowed: jax.nn.softmax(masked_logits(a, allowed))),
                     _no_penalty),
    "darts_sparsemax": Sampler("darts_sparsemax", _per_choice(sparsemax), _no_penalty),
    "drnas": Sampler("drnas", _keyed(lambda key, a, progress, allowed: restricted_dirichlet(
        key, dirichlet_concentration(a), allowed)), _drnas_penalty),
    "gdas": Sampler("gdas", _keyed(lambda key, a, progress, allowed: gumbel_hard(
        key, masked_logits(a, allowed), gdas_temperature(progress))), _no_penalty),
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
