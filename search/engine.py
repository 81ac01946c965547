"""Pure pieces every training step shares: split a model, run it at an encoding, losses,
accuracy, the weight optimizer.

A model travels through `jit` as `(graphdef, params, rest)`: `params` are the
trainable `nnx.Param` leaves, `rest` everything else (BatchNorm statistics).
`apply` re-merges a copy, runs it, and hands back the updated `rest`, so the
same compiled step serves any architecture and any mixture of them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nas import layers

OPTIMIZERS = ("adamw", "sgd")


def split(model: nnx.Module):
    """(graphdef, params, rest) of a model."""
    return nnx.split(model, nnx.Param, ...)


def apply(graphdef, params, rest, x, probs, train: bool):
    """Logits of the model at `probs` (float32 whatever its compute dtype, so every loss is
    float32), and `rest` after the pass (train mode moves BatchNorm statistics)."""
    net = nnx.merge(graphdef, params, rest, copy=True)
    logits = net.forward(x, probs, train=train)
    return jnp.asarray(logits, jnp.float32), nnx.split(net, nnx.Param, ...)[2]


def recalibrate(graphdef, params, rest, x, probs):
    """`rest` with every BatchNorm's running statistics replaced by the statistics of
    the batch `x` under the architecture `probs` (active channels only), as OFA
    and BigNAS do before evaluating a sub-network with inherited weights."""
    net = nnx.merge(graphdef, params, rest, copy=True)
    for _, module in nnx.iter_modules(net):
        if isinstance(module, layers.BatchNorm):
            module.momentum = 0.0
    net.forward(x, probs, train=True)
    return nnx.split(net, nnx.Param, ...)[2]


def has_batch_norm(model: nnx.Module) -> bool:
    return any(isinstance(m, layers.BatchNorm) for _, m in nnx.iter_modules(model))


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy; logits [batch, classes], integer labels [batch]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def distillation(logits, teacher_logits):
    """In-place distillation loss: cross-entropy against the teacher's softmax, with
    no gradient into the teacher."""
    target = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits), -1)
    return optax.softmax_cross_entropy(logits, target).mean()


def accuracy_count(logits, labels):
    return jnp.sum(jnp.argmax(logits, -1) == labels)


def optimizer(name: str, learning_rate: float, steps: int, *, warmup_steps: int = 0,
              min_learning_rate: float = 0.0, weight_decay: float = 0.0,
              momentum: float = 0.9) -> optax.GradientTransformation:
    """The weight optimizer of every training loop: `adamw` (decoupled weight decay) or
    `sgd` (momentum, weight decay as L2 added to the gradient). The learning rate warms
    up linearly from 0 over `warmup_steps`, then decays by a cosine from `learning_rate`
    to `min_learning_rate` at `steps`."""
    if warmup_steps > 0:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps, max(steps, warmup_steps + 1), end_value=min_learning_rate)
    else:
        end = min_learning_rate / learning_rate if min_learning_rate else 0.0
        schedule = optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=end)
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum))
    if name == "adamw":
        return optax.adamw(schedule, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; optimizers are {list(OPTIMIZERS)}")
