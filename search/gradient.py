"""Weight-entangled gradient search (TangleNAS), first-order bi-level.

Every decision has logits α (one per option). Each step a sampler
(`search.samplers`: DARTS softmax/sparsemax, DrNAS, GDAS) turns α into mixing
probabilities, which the supernet consumes as soft masks — the candidates'
weights are superposed before the op, so memory stays that of one max-size
model. One step alternates

    α-step  on a validation batch: loss(w, sampler(α)) + penalty(α), Adam on α;
    w-step  on a training batch:   loss(w, sampler(α) with α frozen), SGD on w.

Defaults (`docs/algorithms.md` §1): weights SGD momentum 0.9, cosine lr
0.025 → 0.001, wd 3e-4; α Adam lr 3e-4, betas (0.5, 0.999), wd 1e-3 (L2 on the
gradient, as torch's Adam does). The result is discretised by argmax per decision.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from search import engine, samplers


def init_alpha(space, key, scale: float = 1e-3) -> dict[str, jax.Array]:
    """Near-uniform logits: `scale`·N(0, 1) per option (DARTS' initialisation)."""
    keys = jax.random.split(key, len(space.names))
    return {name: scale * jax.random.normal(k, (len(opts),))
            for k, (name, opts) in zip(keys, space.choices.items())}


def weight_optimizer(steps: int, learning_rate: float = 0.025, min_learning_rate: float = 0.001,
                     momentum: float = 0.9, weight_decay: float = 3e-4):
    """DARTS' weight optimizer: SGD with momentum, cosine from `learning_rate` to
    `min_learning_rate`, L2 weight decay."""
    return engine.optimizer("sgd", learning_rate, steps, min_learning_rate=min_learning_rate,
                            momentum=momentum, weight_decay=weight_decay)


def alpha_optimizer(learning_rate: float = 3e-4, b1: float = 0.5, b2: float = 0.999,
                    weight_decay: float = 1e-3):
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.adam(learning_rate, b1=b1, b2=b2))


def make_step(graphdef, sampler: samplers.Sampler, w_tx, alpha_tx, stacked: bool = False,
              donate: bool = False):
    """The jitted bi-level step:

        params, rest, w_state, alpha, a_state, metrics = step(
            params, rest, w_state, alpha, a_state, x_train, y_train, x_val, y_val, key, progress,
            allowed=None)

    `allowed` (name → bool[K]) keeps only some options of each choice: a sub-supernet
    of a split (`search.splits`); it is traced, so one compilation serves every one.
    `stacked`: one step of N sub-supernets at once — every argument but the batches and
    `progress` has a leading axis N (`allowed` required), and all see the same batches.
    `donate`: the step may reuse the buffers of params, rest, w_state, alpha and a_state
    for its outputs (a training loop's memory; the caller must not read them again).
    """

    def alpha_loss(alpha, params, rest, x, y, key, progress, allowed):
        probs = sampler.sample(alpha, key, progress, allowed)
        logits, _ = engine.apply(graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y) + sampler.penalty(alpha, allowed)

    def weight_loss(params, rest, probs, x, y):
        logits, rest = engine.apply(graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y), rest

    def step(params, rest, w_state, alpha, a_state, x_train, y_train, x_val, y_val, key, progress,
             allowed=None):
        key_alpha, key_weights = jax.random.split(key)
        a_loss, a_grads = jax.value_and_grad(alpha_loss)(alpha, params, rest, x_val, y_val,
                                                         key_alpha, progress, allowed)
        a_updates, a_state = alpha_tx.update(a_grads, a_state, alpha)
        alpha = optax.apply_updates(alpha, a_updates)
        probs = jax.lax.stop_gradient(sampler.sample(alpha, key_weights, progress, allowed))
        (w_loss, rest), w_grads = jax.value_and_grad(weight_loss, has_aux=True)(
            params, rest, probs, x_train, y_train)
        w_updates, w_state = w_tx.update(w_grads, w_state, params)
        params = optax.apply_updates(params, w_updates)
        return params, rest, w_state, alpha, a_state, {"loss": w_loss, "alpha_loss": a_loss}

    donated = (0, 1, 2, 3, 4) if donate else ()
    if stacked:
        return jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, 0, None, None, None, None, 0, None, 0)),
                       donate_argnums=donated)
    return jax.jit(step, donate_argnums=donated)


def discretise(space, alpha, allowed=None) -> dict:
    """The arch of the largest logit of every decision (among its `allowed` options)."""
    return space.from_probs({k: np.asarray(samplers.masked_logits(
        v, None if allowed is None else np.asarray(allowed[k]))) for k, v in alpha.items()})


def entropy(alpha, allowed=None) -> float:
    """Mean entropy (nats) of softmax(α) over decisions (over the `allowed` options of
    each): near log K = undecided, 0 = decided."""
    def one(name, a):
        logits = samplers.masked_logits(a, None if allowed is None else allowed[name])
        p, log_p = jax.nn.softmax(logits), jax.nn.log_softmax(logits)
        return float(-jnp.sum(jnp.where(p > 0, p * log_p, 0.0)))
    return float(np.mean([one(name, a) for name, a in alpha.items()]))
