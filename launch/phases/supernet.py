"""Supernet phase: train the weight-entangled supernet (sampled rules or TangleNAS gradients).

Its slice of the run state: `arrays["supernet"]` (params, BatchNorm statistics,
optimizer state with the sparse masks, arch logits and their optimizer for
gradient methods, the PRNG key, the losses of the epoch in progress) and
`meta["supernet"]` (global step, data cursors, the max and min archs). It
resumes at any step and ends where an uninterrupted run ends, bit for bit.
Sampled rules train every weight on the whole train split; gradient methods
halve it, weights learning on one half and α on the other.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

import sparse
from launch import config as configs
from launch import phases
from launch.checkpoints import RunState
from launch.data import Batches
from search import controllers, engine, gradient, oneshot, samplers
from sparse import masks as masklib

NAME = "supernet"
POOL_SIZE = 4096  # feasible archs the sampled supernet step draws from under a budget


def _size(ctx):
    """What the sandwich's max and min nets are the largest and smallest by."""
    if ctx.sparse is None:
        return ctx.space.params
    return functools.partial(ctx.sparse.nonzero, ctx.space)


def anchors(ctx) -> tuple[dict, dict]:
    """(max, min) archs by parameters (nonzeros when sparse), the max within the budget."""
    low, high, _ = ctx.space.extremes(_size(ctx))
    if ctx.constraint is not None and not ctx.constraint(high):
        feasible = [a for a in ctx.space.enumerate(limit=200_000) if ctx.constraint(a)] \
            if ctx.space.size() <= 200_000 else []
        if feasible:
            high = max(feasible, key=_size(ctx))
    return high, low


def _batches(ctx) -> tuple[Batches, Batches | None]:
    """(weight batches, α batches or None): gradient methods split the train set in halves."""
    data, sc, seed = ctx.data, ctx.cfg.supernet, ctx.cfg.seed
    if not ctx.gradient:
        return Batches(data.x_train, data.y_train, sc.batch_size, seed), None
    half = len(data.x_train) // 2
    return (Batches(data.x_train[:half], data.y_train[:half], sc.batch_size, seed),
            Batches(data.x_train[half:], data.y_train[half:], sc.batch_size, seed + 1))


def _updater(ctx, steps: int) -> sparse.Updater:
    """The supernet's DST updater at the lowest sparsity any arch uses."""
    setup = ctx.sparse
    base = min(setup.levels.options) if setup.levels is not None else setup.target
    return configs.updater(ctx.cfg, base, steps)


class _Trainer:
    """The configured rule's optimizers and batches, and its compiled step (built when first
    used: `init` needs only the optimizers)."""

    def __init__(self, ctx, meta: dict):
        self.ctx, self.meta = ctx, meta
        sc = ctx.cfg.supernet
        self.batches, self.arch_batches = _batches(ctx)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.steps = sc.epochs * self.steps_per_epoch
        if ctx.gradient:
            self.tx = gradient.weight_optimizer(self.steps, sc.learning_rate, sc.min_learning_rate,
                                                weight_decay=sc.weight_decay)
            self.alpha_tx = gradient.alpha_optimizer(sc.arch_learning_rate,
                                                     weight_decay=sc.arch_weight_decay)
            return
        warmup = int(sc.warmup_epochs * self.steps_per_epoch)
        self.tx = engine.optimizer("adamw", sc.learning_rate, self.steps, warmup_steps=max(warmup, 1),
                                   weight_decay=sc.weight_decay)
        if ctx.sparse is not None:
            self.tx = sparse.wrap(self.tx, _updater(ctx, self.steps), ctx.sparse.names)

    @functools.cached_property
    def step_fn(self):
        ctx, sc = self.ctx, self.ctx.cfg.supernet
        if ctx.gradient:
            return gradient.make_step(ctx.graphdef, samplers.get(sc.method), self.tx, self.alpha_tx)
        high, low = (ctx.space.validate(a) for a in self.meta["extremes"])
        pool = None
        if ctx.constraint is not None:
            sampler = controllers.get("random", ctx.space, seed=ctx.cfg.seed, constraint=ctx.constraint)
            pool = np.stack([ctx.space.index_vector(a) for a in sampler.ask(POOL_SIZE)])
        return oneshot.make_step(
            ctx.graphdef, ctx.space, self.tx, sc.method, sc.num_random, sc.distill, max_arch=high,
            min_arch=low, pool=pool, levels=ctx.sparse.levels if ctx.sparse else None)


def init(ctx) -> tuple[dict, dict]:
    """(arrays, meta) of an untrained supernet."""
    meta = {"step": 0, "extremes": list(anchors(ctx))}
    trainer = _Trainer(ctx, meta)
    meta.update(batches=trainer.batches.state_dict(),
                arch_batches=trainer.arch_batches.state_dict() if trainer.arch_batches else None)
    _, params, rest = engine.split(ctx.model)
    key = jax.random.key(ctx.cfg.seed)
    arrays = {"params": params, "rest": rest, "opt": trainer.tx.init(params),
              "epoch_losses": jnp.full((trainer.steps_per_epoch,), jnp.nan, jnp.float32)}
    if ctx.gradient:
        arrays["alpha"] = gradient.init_alpha(ctx.space, jax.random.fold_in(key, 1))
        arrays["alpha_opt"] = trainer.alpha_tx.init(arrays["alpha"])
        arrays["epoch_alpha_losses"] = arrays["epoch_losses"]
    elif ctx.sparse is not None:
        # BatchNorm makes each layer scale-free: rescaling would only shrink AdamW's
        # relative step; without it a sparse start needs the rescale to keep its signal.
        if not engine.has_batch_norm(ctx.model):
            params = masklib.rescale(params, arrays["opt"].masks)
        arrays["params"] = masklib.apply(params, arrays["opt"].masks)
    arrays["key"] = jax.random.key_data(key)
    return ctx.parallel.replicate(arrays), meta


def weights(ctx, state: RunState):
    """The trained supernet's weights as the search sees them (sparse masks applied)."""
    arrays = state.arrays[NAME]
    if ctx.sparse is None:
        return arrays["params"]
    return masklib.apply(arrays["params"], arrays["opt"].masks)


def model_at(ctx, state: RunState, arch: dict):
    """The trained supernet as a module, with a searched sparsity applied at `arch`'s level."""
    params = weights(ctx, state)
    levels = ctx.sparse.levels if ctx.sparse else None
    if levels is not None:
        params = levels.apply(params, ctx.space.one_hot(arch), levels.ranks(params))
    return nnx.merge(ctx.graphdef, params, state.arrays[NAME]["rest"])


def _epoch_record(ctx, arrays, losses, alpha_losses) -> dict:
    record = {"loss": float(jnp.mean(jnp.stack(losses)))}
    if ctx.gradient:
        record["alpha_loss"] = float(jnp.mean(jnp.stack(alpha_losses)))
        record["alpha_entropy"] = gradient.entropy(arrays["alpha"])
    return record


def _pending(losses: list, length: int):
    """The epoch's losses so far as one fixed-shape array (NaN where not run yet)."""
    if not losses:
        return jnp.full((length,), jnp.nan, jnp.float32)
    done = jnp.stack(losses)
    return jnp.concatenate([done, jnp.full((length - len(losses),), jnp.nan, jnp.float32)])


def _sync(ctx, state, trainer, arrays, key, step, losses, alpha_losses) -> None:
    """Write the loop's progress into the run state (before a save)."""
    length = trainer.steps_per_epoch
    arrays["key"] = jax.random.key_data(key)
    arrays["epoch_losses"] = ctx.parallel.replicate(_pending(losses, length))
    if ctx.gradient:
        arrays["epoch_alpha_losses"] = ctx.parallel.replicate(_pending(alpha_losses, length))
    state.arrays[NAME] = arrays
    state.meta[NAME].update(step=step, batches=trainer.batches.state_dict(), arch_batches=(
        trainer.arch_batches.state_dict() if trainer.arch_batches else None))


def run(ctx, state: RunState) -> RunState:
    if state.done(NAME):
        return state
    if configs.uses_proxy(ctx.cfg):
        ctx.say(f"no supernet training: search.evaluator = {ctx.cfg.search.evaluator} scores each "
                "arch at its initialisation")
        return phases.finish(ctx, state, NAME)
    meta, arrays = state.meta[NAME], dict(state.arrays[NAME])
    trainer = _Trainer(ctx, meta)
    trainer.batches.load_state_dict(meta["batches"])
    if trainer.arch_batches is not None:
        trainer.arch_batches.load_state_dict(meta["arch_batches"])
    spe, epochs = trainer.steps_per_epoch, ctx.cfg.supernet.epochs
    step = meta["step"]
    # Losses of the epoch in progress (restored ones are part of the epoch's mean).
    losses = [arrays["epoch_losses"][i] for i in range(step % spe)]
    alpha_losses = [arrays["epoch_alpha_losses"][i] for i in range(step % spe)] if ctx.gradient else []
    if step:
        ctx.say(f"resumed the supernet phase at step {step:,}/{trainer.steps:,} "
                f"(epoch {step // spe}/{epochs})")
    ctx.clock.start(NAME)
    bar = tqdm(total=trainer.steps, initial=step, desc=f"supernet ({ctx.cfg.supernet.method})",
               unit="step", disable=not (ctx.progress and ctx.parallel.is_writer))
    key = jax.random.wrap_key_data(arrays["key"])
    done = ctx.log.phase(NAME)
    last = done[-1]["loss"] if done else None  # the latest epoch's loss: what "best" ranks by
    shard = ctx.parallel.shard
    while step < trainer.steps:
        key, sub = jax.random.split(key)
        x, y = next(trainer.batches)
        if ctx.gradient:
            xv, yv = next(trainer.arch_batches)
            (arrays["params"], arrays["rest"], arrays["opt"], arrays["alpha"], arrays["alpha_opt"],
             metrics) = trainer.step_fn(
                arrays["params"], arrays["rest"], arrays["opt"], arrays["alpha"], arrays["alpha_opt"],
                shard(x), shard(y), shard(xv), shard(yv), sub, jnp.float32(step / max(trainer.steps, 1)))
            losses.append(metrics["loss"])
            alpha_losses.append(metrics["alpha_loss"])
        else:
            arrays["params"], arrays["rest"], arrays["opt"], loss = trainer.step_fn(
                arrays["params"], arrays["rest"], arrays["opt"], shard(x), shard(y), sub)
            losses.append(loss)
        step += 1
        bar.update(1)
        if step % spe == 0:
            record = _epoch_record(ctx, arrays, losses, alpha_losses)
            ctx.log.log(NAME, step // spe, **record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items()})
            last = record["loss"]
            losses, alpha_losses = [], []

        if step < trainer.steps:  # the last step's state is saved by `finish`
            phases.checkpoint(ctx, state, functools.partial(_sync, ctx, state, trainer, arrays, key,
                                                            step, losses, alpha_losses),
                              metrics=None if last is None else {"supernet_loss": last})
    _sync(ctx, state, trainer, arrays, key, step, losses, alpha_losses)
    bar.close()
    ctx.clock.stop(NAME)
    return phases.finish(ctx, state, NAME, metrics=None if last is None else {"supernet_loss": last})
