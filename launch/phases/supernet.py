"""Supernet phase: train the weight-entangled supernet (sampled rules or TangleNAS gradients).

Its slice of the run state: `arrays["supernet"]` (params, BatchNorm statistics,
optimizer state with the sparse masks, arch logits and their optimizer for
gradient methods, the PRNG key, the losses of the epoch in progress) and
`meta["supernet"]` (global step, data cursors, the max and min archs). It
resumes at any step and ends where an uninterrupted run ends, bit for bit.
Sampled rules train every weight on the whole train split; gradient methods
halve it, weights learning on one half and α on the other.

With `split.epochs` (GM-NAS, `search.splits`) the supernet becomes a split
tree of sub-supernets: after each listed epoch every sub-supernet is scored
decision by decision and cut in two along its most conflicting decision; its
children inherit its weights, BatchNorm statistics, optimizer state and α.
Every per-sub-supernet array then carries a leading axis (one entry per
sub-supernet, also before the first split), `meta["supernet"]["tree"]` holds
the tree, and all sub-supernets train on the same batches: jointly in one
vmapped step, or one after another through one compiled step (`split.training`).
With `split.only` only that sub-supernet trains after the last split, on the
batches and keys it gets in the full run (`trained`), so one job per
sub-supernet reproduces the full run's sub-supernets.
"""
from __future__ import annotations

import functools
import itertools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import nas
import sparse
from launch import config as configs
from launch import phases
from launch.checkpoints import RunState
from launch.train import check_finite
from search import controllers, engine, gradient, oneshot, samplers, splits
from search.parallel import local_copy
from sparse import masks as masklib

NAME = "supernet"
POOL_SIZE = 4096  # feasible archs the sampled supernet step draws from under a budget
ENUMERATE_LIMIT = 200_000  # spaces with at most this many archs are enumerated, not sampled
PER_SUPERNET = ("params", "rest", "opt", "alpha", "alpha_opt")  # what each sub-supernet has its own of


def _size(ctx):
    """What the sandwich's max and min nets are the largest and smallest by."""
    if ctx.sparse is None:
        return ctx.space.params
    return functools.partial(ctx.sparse.nonzero, ctx.space)


def anchors(ctx, space=None) -> tuple[dict, dict]:
    """(max, min) archs of `space` (default: the run's) by parameters (nonzeros when
    sparse), the max within the budget."""
    space = space or ctx.space
    low, high, _ = space.extremes(_size(ctx))
    if ctx.constraint is not None and not ctx.constraint(high) and space.size() <= ENUMERATE_LIMIT:
        size, best = _size(ctx), None
        for arch in space.enumerate(limit=ENUMERATE_LIMIT):
            if ctx.constraint(arch):
                charged = size(arch)
                if best is None or charged > best[0]:
                    best = (charged, arch)
        high = high if best is None else best[1]
    return high, low


def feasible_pool(ctx, space) -> np.ndarray:
    """Index vectors (int32[P, C] of the run's space) of the networks of `space` within the
    budget: every feasible distinct network when the space is small enough to enumerate
    (a seeded draw of `POOL_SIZE` of them when there are more), else `POOL_SIZE` feasible
    archs sampled at random."""
    if space.size() <= ENUMERATE_LIMIT:
        feasible = {}
        for arch in space.enumerate(limit=ENUMERATE_LIMIT):
            if ctx.constraint(arch):
                network = space.canonical(arch)
                feasible.setdefault(tuple(network.items()), network)
        if not feasible:
            raise ValueError(f"no network of space {space.name!r} satisfies the budget "
                             f"({_budget(ctx.cfg)}); loosen it")
        archs = list(feasible.values())
        if len(archs) > POOL_SIZE:
            keep = np.random.default_rng(ctx.cfg.seed).choice(len(archs), POOL_SIZE, replace=False)
            archs = [archs[i] for i in sorted(keep)]
        share = "all of them" if len(archs) == len(feasible) else f"{len(archs):,} of them"
        ctx.say(f"budget {_budget(ctx.cfg)}: {len(feasible):,} of {space.distinct_size():,} networks "
                f"are feasible; the supernet samples {share}")
    else:
        ctx.say(f"budget {_budget(ctx.cfg)}: sampling {POOL_SIZE:,} feasible archs for the supernet "
                "to train")
        sampler = controllers.get("random", space, seed=ctx.cfg.seed, constraint=ctx.constraint)
        archs = sampler.ask(POOL_SIZE)
    return np.stack([ctx.space.index_vector(a) for a in archs]).astype(np.int32)


def _budget(cfg) -> str:
    return ", ".join(f"{k} {v:,}" for k in ("min_params", "max_params", "max_flops", "max_nonzero")
                     if (v := getattr(cfg.search, k)) is not None)


def is_split(ctx) -> bool:
    """Whether the run splits its supernet (`split.epochs`)."""
    return bool(ctx.cfg.split.epochs)


def tree(state: RunState) -> splits.SplitTree | None:
    """The run's split tree (None for a run without splits)."""
    data = state.meta[NAME].get("tree")
    return None if data is None else splits.SplitTree.from_dict(data)


def sub_supernets(ctx, state: RunState) -> list:
    """The space of every sub-supernet (the run's space alone when it does not split)."""
    split_tree = tree(state)
    if split_tree is None:
        return [ctx.space]
    return [split_tree.space(ctx.space, i) for i in range(split_tree.size)]


def trained(ctx, state: RunState) -> list[int]:
    """The sub-supernets that train from now on (and are searched): all of them, or after the
    last split only `split.only`'s."""
    return _trained(ctx, state.meta[NAME])


def _trained(ctx, meta: dict) -> list[int]:
    if not is_split(ctx):
        return [0]
    count, only = len(meta["tree"]["leaves"]), ctx.cfg.split.only
    if only is None or meta["rounds"] < len(ctx.cfg.split.epochs):
        return list(range(count))
    if only >= count:
        raise ValueError(f"config split.only = {only}: the split tree has {count} sub-supernets "
                         f"(0–{count - 1}; a round found no decision worth splitting)")
    return [only]


def extremes(ctx, state: RunState, sub: int = 0) -> list[dict]:
    """[max, min] archs of sub-supernet `sub` (the sandwich's fixed nets)."""
    return _extremes(ctx, state.meta[NAME], sub)


def _extremes(ctx, meta: dict, sub: int = 0) -> list[dict]:
    found = meta["sub_extremes"][sub] if "sub_extremes" in meta else meta["extremes"]
    return [ctx.space.validate(a) for a in found]


def cost(ctx, state: RunState) -> dict:
    """The supernet training the search stands on: sub-supernets and their epochs summed
    (a split run trains every live sub-supernet on each step)."""
    meta = state.meta[NAME]
    if not is_split(ctx):
        return {"sub_supernets": 1, "supernet_epochs": ctx.cfg.supernet.epochs}
    steps_per_epoch = _batches(ctx)[0].steps_per_epoch
    return {"sub_supernets": len(meta["tree"]["leaves"]),
            "supernet_epochs": round(meta["sub_supernet_steps"] / steps_per_epoch, 3)}


def _slice(tree, index):
    """Entry `index` (an int or an index array) of every leaf's leading axis."""
    return jax.tree.map(lambda a: a[index], tree)


def _own(arrays: dict, sub: int | None) -> dict:
    """Sub-supernet `sub`'s slice of the per-sub-supernet arrays (all of them for None)."""
    mine = {k: arrays[k] for k in PER_SUPERNET if k in arrays}
    return mine if sub is None else _slice(mine, sub)


def _batches(ctx):
    """(weight batches, α batches or None): gradient methods split the train set in halves."""
    data, sc, seed = ctx.data, ctx.cfg.supernet, ctx.cfg.seed
    if not ctx.gradient:
        return data.batches(data.train, sc.batch_size, seed), None
    half = len(data.train) // 2
    return (data.batches(data.train.part(0, half), sc.batch_size, seed),
            data.batches(data.train.part(half, len(data.train)), sc.batch_size, seed + 1))


def _updater(ctx, steps: int) -> sparse.Updater:
    """The supernet's DST updater at the lowest sparsity any arch uses."""
    setup = ctx.sparse
    base = min(setup.levels.options) if setup.levels is not None else setup.target
    return configs.updater(ctx.cfg, base, steps)


class _Trainer:
    """The configured rule's optimizers and batches, and its compiled steps (built when first
    used: `init` needs only the optimizers). The steps donate the state they are given (the
    steppers keep only what a step returns); a buffer an asynchronous save still reads is
    copied instead, so a save in flight is never overwritten."""

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

    def _make(self, stacked: bool):
        ctx, sc = self.ctx, self.ctx.cfg.supernet
        if ctx.gradient:
            return gradient.make_step(ctx.graphdef, samplers.get(sc.method), self.tx, self.alpha_tx,
                                      stacked=stacked, donate=True)
        high, low = _extremes(ctx, self.meta)
        # A split run passes each sub-supernet's domain (pool included) to every step.
        return oneshot.make_step(
            ctx.graphdef, ctx.space, self.tx, sc.method, sc.num_random, sc.distill, max_arch=high,
            min_arch=low, pool=None if is_split(ctx) else self.pool(ctx.space),
            levels=ctx.sparse.levels if ctx.sparse else None, stacked=stacked, donate=True)

    def pool(self, space):
        """Feasible archs of `space` the sampled step draws from under a budget (None: all),
        made once per run and kept in the run state (`meta["pools"]`)."""
        ctx = self.ctx
        if ctx.constraint is None:
            return None
        key = json.dumps({k: list(v) for k, v in space.choices.items()}, sort_keys=True)
        pools = self.meta.setdefault("pools", {})
        if key not in pools:
            pools[key] = feasible_pool(ctx, space).tolist()
        return np.asarray(pools[key], np.int32)

    def close(self) -> None:
        """Stop the input streams' prefetching (their state stays in the run state)."""
        for batches in (self.batches, self.arch_batches):
            if batches is not None:
                batches.close()

    @functools.cached_property
    def step_fn(self):
        return self._make(stacked=False)

    @functools.cached_property
    def stacked_step_fn(self):
        return self._make(stacked=True)


def init(ctx) -> tuple[dict, dict]:
    """(arrays, meta) of an untrained supernet (of its root sub-supernet when it splits)."""
    meta = {"step": 0, "extremes": list(anchors(ctx))}
    trainer = _Trainer(ctx, meta)
    meta.update(batches=trainer.batches.state_dict(),
                arch_batches=trainer.arch_batches.state_dict() if trainer.arch_batches else None)
    arrays = _fresh(ctx, trainer, jax.random.key(ctx.cfg.seed), ctx.model)
    arrays["epoch_losses"] = jnp.full((trainer.steps_per_epoch,), jnp.nan, jnp.float32)
    if ctx.gradient:
        arrays["epoch_alpha_losses"] = arrays["epoch_losses"]
    arrays["key"] = jax.random.key_data(jax.random.key(ctx.cfg.seed))
    if is_split(ctx):
        meta.update(tree=splits.SplitTree().to_dict(), sub_extremes=[meta["extremes"]], rounds=0,
                    sub_supernet_steps=0)
        arrays.update(jax.tree.map(lambda a: a[None], _own(arrays, None)))
    return ctx.parallel.replicate(arrays), meta


def _fresh(ctx, trainer, key, model) -> dict:
    """A sub-supernet's own arrays at initialisation: `model`'s weights, fresh optimizer
    states, and α from `key`."""
    _, params, rest = engine.split(model)
    arrays = {"params": params, "rest": rest, "opt": trainer.tx.init(params)}
    if ctx.gradient:
        arrays["alpha"] = gradient.init_alpha(ctx.space, jax.random.fold_in(key, 1))
        arrays["alpha_opt"] = trainer.alpha_tx.init(arrays["alpha"])
    elif ctx.sparse is not None:
        # BatchNorm makes each layer scale-free: rescaling would only shrink AdamW's
        # relative step; without it a sparse start needs the rescale to keep its signal.
        if not engine.has_batch_norm(model):
            params = masklib.rescale(params, arrays["opt"].masks)
        arrays["params"] = masklib.apply(params, arrays["opt"].masks)
    return arrays


def layout(ctx, arrays: dict, saved_meta: dict) -> dict:
    """The restore target for a checkpoint with meta `saved_meta`: `arrays` (from `init`)
    with one entry per sub-supernet the checkpoint holds."""
    saved = saved_meta.get(NAME, {}).get("tree")
    if saved is None:
        return arrays
    count = len(saved["leaves"])
    grown = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], (count, *a.shape[1:])), _own(arrays, None))
    return {**arrays, **ctx.parallel.replicate(grown)}


def weights(ctx, state: RunState, sub: int = 0):
    """Sub-supernet `sub`'s trained weights as the search sees them (sparse masks applied)."""
    arrays = state.arrays[NAME]
    own = _own(arrays, sub if is_split(ctx) else None)
    if ctx.sparse is None:
        return own["params"]
    return masklib.apply(own["params"], own["opt"].masks)


def own(ctx, state: RunState, sub: int = 0) -> dict:
    """Sub-supernet `sub`'s own arrays: params, rest, opt (and alpha, alpha_opt)."""
    return _own(state.arrays[NAME], sub if is_split(ctx) else None)


def allowed(ctx, state: RunState, sub: int = 0) -> dict | None:
    """bool[K] per choice: the options sub-supernet `sub` keeps (None without splits)."""
    if not is_split(ctx):
        return None
    return splits.allowed(ctx.space, sub_supernets(ctx, state)[sub])


def model_at(ctx, state: RunState, arch: dict):
    """The trained supernet as a module, with a searched sparsity applied at `arch`'s level."""
    params = weights(ctx, state)
    levels = ctx.sparse.levels if ctx.sparse else None
    if levels is not None:
        params = levels.apply(params, ctx.space.one_hot(arch), levels.ranks(params))
    return nnx.merge(ctx.graphdef, params, state.arrays[NAME]["rest"])


def _epoch_record(ctx, arrays, meta, epoch, losses, alpha_losses) -> dict:
    where = f"supernet phase, epoch {epoch}"
    record = {"loss": check_finite(float(jnp.mean(jnp.stack(losses))), where, ctx.cfg.supernet.learning_rate)}
    if ctx.gradient:
        record["alpha_loss"] = check_finite(float(jnp.mean(jnp.stack(alpha_losses))), where + " (α)",
                                            ctx.cfg.supernet.arch_learning_rate)
        alpha = arrays["alpha"]
        if not is_split(ctx):
            record["alpha_entropy"] = gradient.entropy(alpha)
        else:
            split_tree = splits.SplitTree.from_dict(meta["tree"])
            record["alpha_entropy"] = float(np.mean([gradient.entropy(
                _slice(alpha, i), splits.allowed(ctx.space, split_tree.space(ctx.space, i)))
                for i in range(split_tree.size)]))
    return record


def _pending(losses: list, length: int):
    """The epoch's losses so far as one fixed-shape array (NaN where not run yet)."""
    if not losses:
        return jnp.full((length,), jnp.nan, jnp.float32)
    done = jnp.stack(losses)
    return jnp.concatenate([done, jnp.full((length - len(losses),), jnp.nan, jnp.float32)])


class _Single:
    """Steps the one supernet of a run without splits."""

    def __init__(self, ctx, trainer, arrays: dict):
        self.ctx, self.trainer, self.arrays = ctx, trainer, arrays
        self.active = [0]

    def step(self, x, y, xv, yv, key, progress):
        a, fn = self.arrays, self.trainer.step_fn
        if self.ctx.gradient:
            a["params"], a["rest"], a["opt"], a["alpha"], a["alpha_opt"], metrics = fn(
                a["params"], a["rest"], a["opt"], a["alpha"], a["alpha_opt"], x, y, xv, yv, key, progress)
            return metrics["loss"], metrics["alpha_loss"]
        a["params"], a["rest"], a["opt"], loss = fn(a["params"], a["rest"], a["opt"], x, y, key)
        return loss, None

    def write(self, arrays: dict) -> None:
        arrays.update(self.arrays)


class _Split:
    """Steps every sub-supernet of a split tree (or `split.only`'s after the last split) on
    the same batch: in one vmapped step (`joint`, state stacked), or one after another
    through one compiled step."""

    def __init__(self, ctx, trainer, arrays: dict, meta: dict, joint: bool):
        split_tree = splits.SplitTree.from_dict(meta["tree"])
        self.count = split_tree.size
        self.active = _trained(ctx, meta)
        self.ctx, self.trainer = ctx, trainer
        self.joint = joint and len(self.active) == self.count
        per_sub = {i: _where(ctx, trainer, meta, split_tree.space(ctx.space, i), i) for i in self.active}
        stacked = _own(arrays, None)
        replicate = ctx.parallel.replicate
        if self.joint:
            self.state = stacked
            self.where = replicate(jax.tree.map(lambda *a: jnp.stack(a), *per_sub.values()))
        else:
            self.state = [_slice(stacked, i) for i in range(self.count)]
            self.where = {i: replicate(w) for i, w in per_sub.items()}

    def _one(self, fn, own, where, x, y, xv, yv, key, progress):
        if self.ctx.gradient:
            params, rest, opt, alpha, alpha_opt, metrics = fn(
                own["params"], own["rest"], own["opt"], own["alpha"], own["alpha_opt"], x, y, xv, yv,
                key, progress, where)
            return ({"params": params, "rest": rest, "opt": opt, "alpha": alpha, "alpha_opt": alpha_opt},
                    metrics["loss"], metrics["alpha_loss"])
        params, rest, opt, loss = fn(own["params"], own["rest"], own["opt"], x, y, key, where)
        return {"params": params, "rest": rest, "opt": opt}, loss, None

    def step(self, x, y, xv, yv, key, progress):
        # Before the first split the one sub-supernet draws what an unsplit supernet would.
        keys = key[None] if self.count == 1 else jax.random.split(key, self.count)
        if self.joint:
            self.state, loss, alpha_loss = self._one(self.trainer.stacked_step_fn, self.state, self.where,
                                                     x, y, xv, yv, keys, progress)
            return jnp.mean(loss), None if alpha_loss is None else jnp.mean(alpha_loss)
        losses, alpha_losses = [], []
        for i in self.active:
            self.state[i], loss, alpha_loss = self._one(self.trainer.step_fn, self.state[i], self.where[i],
                                                        x, y, xv, yv, keys[i], progress)
            losses.append(loss)
            alpha_losses.append(alpha_loss)
        return (jnp.mean(jnp.stack(losses)),
                None if alpha_losses[0] is None else jnp.mean(jnp.stack(alpha_losses)))

    def write(self, arrays: dict) -> None:
        arrays.update(self.state if self.joint else jax.tree.map(lambda *a: jnp.stack(a), *self.state))


def joint_training(ctx) -> bool:
    """`split.training`: auto trains sub-supernets one after another on CPU (where a vmapped
    step gains nothing over a loop) and jointly on accelerators."""
    mode = ctx.cfg.split.training
    if mode == "auto":
        return jax.default_backend() != "cpu"
    return mode == "joint"


def _stepper(ctx, trainer, arrays, meta):
    if not is_split(ctx):
        return _Single(ctx, trainer, arrays)
    return _Split(ctx, trainer, arrays, meta, joint_training(ctx))


def _split_due(ctx, meta: dict, step: int, steps_per_epoch: int) -> bool:
    passed = sum(1 for e in ctx.cfg.split.epochs if e * steps_per_epoch <= step)
    return is_split(ctx) and meta["rounds"] < passed


def _where(ctx, trainer, meta: dict, sub_space, sub: int):
    """What a step needs to know of sub-supernet `sub` (`sub_space`): its allowed options
    (gradient methods) or its sampling `Domain` (sampled rules)."""
    if ctx.gradient:
        return jax.tree.map(jnp.asarray, splits.allowed(ctx.space, sub_space))
    return jax.tree.map(jnp.asarray, oneshot.domain(ctx.space, sub_space, *_extremes(ctx, meta, sub),
                                                    pool=trainer.pool(sub_space), pool_rows=POOL_SIZE))


def _mixing(ctx, trainer, own: dict, where, key, progress):
    """The other decisions' encoding while one decision's options are scored: the
    sampler's mixing of α (gradient methods), else an arch drawn the way the step draws."""
    if ctx.gradient:
        return jax.lax.stop_gradient(samplers.get(ctx.cfg.supernet.method).sample(
            own["alpha"], key, progress, where))
    return ctx.space.probs_from_index_vector(oneshot.draw_index_vector(key, where))


def _scoring_batches(ctx, trainer, meta) -> list:
    """The round's scoring batches (a fixed shuffle of the weight-training split), the same
    for every sub-supernet and decision: their distances are compared on equal data."""
    cfg = ctx.cfg
    scoring = ctx.data.batches(trainer.batches.split, cfg.supernet.batch_size,
                               seed=cfg.seed + 1000 + meta["rounds"], train=False)
    try:
        return [(ctx.parallel.shard_rows(bx), ctx.parallel.shard_rows(by))
                for bx, by in scoring.take(cfg.split.batches)]
    finally:
        scoring.close()


def _candidates(ctx, trainer, meta, own: dict, leaf: int, where, progress: float, batches: list) -> list:
    """Every eligible decision of sub-supernet `leaf` with its mean distance matrix and cut
    (over the elements all its options use on some scoring batch), among the partitions
    whose two halves both keep an arch within the budget. A decision with no shared
    element or no such partition is left out."""
    cfg = ctx.cfg
    split_tree = splits.SplitTree.from_dict(meta["tree"])
    sub_space = split_tree.space(ctx.space, leaf)
    key = jax.random.fold_in(jax.random.key(cfg.seed + 1000 + meta["rounds"]), leaf)
    mixes = [_mixing(ctx, trainer, own, where, jax.random.fold_in(key, b), progress)
             for b in range(len(batches))]
    found = []
    for name in split_tree.eligible(ctx.space, leaf, cfg.split.decisions):
        used = functools.reduce(jnp.logical_or, (
            splits.option_support(ctx.graphdef, name, own["params"], own["rest"], bx, by, mix)
            for (bx, by), mix in zip(batches, mixes)))
        shared = jnp.all(used, axis=0)
        if not bool(local_copy(jnp.any(shared))):
            continue
        total = sum(splits.option_distances(ctx.graphdef, name, cfg.split.distance, own["params"],
                                            own["rest"], bx, by, mix, shared)
                    for (bx, by), mix in zip(batches, mixes))

        def feasible(*groups, name=name):
            return all(_has_feasible(ctx, sub_space.restrict(name, group)) for group in groups)
        pick = splits.candidate(name, ctx.space.choices[name], np.asarray(local_copy(total)) / len(batches),
                                None if ctx.constraint is None else feasible)
        if pick is not None:
            found.append(pick)
    return found


def _has_feasible(ctx, space, tries: int = 200) -> bool:
    """Whether `space` holds an arch within the budget: its smallest or largest (by
    coordinate descent: exact for the shipped spaces' costs, monotone in each choice),
    or one of `tries` random archs (for windows with a lower bound)."""
    smallest, largest, _ = space.extremes(_size(ctx), limit=0)
    rng = np.random.default_rng(0)
    archs = itertools.chain([smallest, largest], (space.sample(rng) for _ in range(tries)))
    return any(bool(ctx.constraint(a)) for a in archs)


def _split_round(ctx, state, trainer, stepper, arrays: dict, step: int):
    """Split every sub-supernet in two along its most conflicting decision; the children
    inherit everything of their parent (or start afresh at the last split with
    `split.restart`). Returns the new stepper."""
    meta, cfg = state.meta[NAME], ctx.cfg
    stepper.write(arrays)
    split_tree = splits.SplitTree.from_dict(meta["tree"])
    progress = step / max(trainer.steps, 1)
    picks, batches = [], _scoring_batches(ctx, trainer, meta)
    for i in range(split_tree.size):
        where = _where(ctx, trainer, meta, split_tree.space(ctx.space, i), i)
        found = _candidates(ctx, trainer, meta, _own(arrays, i), i, where, progress, batches)
        picks.append((splits.choose(found), found))
    epoch = step // trainer.steps_per_epoch
    parents = split_tree.split_round(picks, epoch)
    children = _slice(_own(arrays, None), np.asarray(parents))
    if cfg.split.restart and meta["rounds"] + 1 == len(cfg.split.epochs):
        children = _restarted(ctx, trainer, children, meta["rounds"])
    arrays.update(ctx.parallel.replicate(children))
    meta.update(tree=split_tree.to_dict(), rounds=meta["rounds"] + 1, sub_extremes=[
        list(anchors(ctx, split_tree.space(ctx.space, i))) for i in range(split_tree.size)])
    for s in split_tree.splits[-len(picks):]:
        ctx.log.log("split", meta["rounds"], epoch=epoch, decision=s["decision"], cut=s["cut"],
                    sub_supernets=split_tree.size)
    ctx.say(f"split at epoch {epoch}: {split_tree.size} sub-supernets\n" + split_tree.describe())
    return _stepper(ctx, trainer, arrays, meta)


def _restarted(ctx, trainer, children: dict, rounds: int) -> dict:
    """Children with fresh weights, BatchNorm statistics, α and optimizer states (Adam's
    step count included, so its bias correction starts over); only the learning-rate
    schedules' step counts run on."""
    fresh = []
    for i in range(len(jax.tree.leaves(children["params"])[0])):
        key = jax.random.fold_in(jax.random.key(ctx.cfg.seed + 2000 + rounds), i)
        model = nas.supernet(ctx.space, seed=int(jax.random.randint(key, (), 0, 2 ** 30)))
        fresh.append(_fresh(ctx, trainer, key, model))
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *fresh)

    def schedule(node):
        return isinstance(node, optax.ScaleByScheduleState)
    return jax.tree.map(lambda new, old: old if schedule(new) else new, stacked, children, is_leaf=schedule)


def _sync(ctx, state, trainer, stepper, arrays, key, step, losses, alpha_losses) -> None:
    """Write the loop's progress into the run state (before a save); a diverged epoch in
    progress stops the run instead of being saved over the last good checkpoint."""
    length = trainer.steps_per_epoch
    for kind, values in (("", losses), (" (α)", alpha_losses)):
        if values:
            check_finite(float(jnp.mean(jnp.stack(values))),
                         f"supernet phase, epoch {step // length + 1}{kind}", ctx.cfg.supernet.learning_rate)
    stepper.write(arrays)
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
    if not ctx.gradient and not is_split(ctx):
        trainer.pool(ctx.space)  # made (and announced) before the progress bar starts
    bar = tqdm(total=trainer.steps, initial=step, desc=f"supernet ({ctx.cfg.supernet.method})",
               unit="step", disable=not (ctx.progress and ctx.parallel.is_writer))
    key = jax.random.wrap_key_data(arrays["key"])
    done = ctx.log.phase(NAME)
    last = done[-1]["loss"] if done else None  # the latest epoch's loss: what "best" ranks by
    shard = ctx.parallel.shard_rows
    stepper = _stepper(ctx, trainer, arrays, meta)
    # This process's first step (tracing, compiling or loading from the compilation cache, and
    # running it), timed to its result and logged with its epoch as `first_step_seconds`.
    first_step_timed, first_step_seconds = False, None
    while step < trainer.steps:
        if _split_due(ctx, meta, step, spe):
            stepper = _split_round(ctx, state, trainer, stepper, arrays, step)
            phases.checkpoint(ctx, state, functools.partial(
                _sync, ctx, state, trainer, stepper, arrays, key, step, losses, alpha_losses), force=True)
        key, sub = jax.random.split(key)
        x, y = next(trainer.batches)
        xv, yv = next(trainer.arch_batches) if ctx.gradient else (None, None)
        started = time.perf_counter()
        loss, alpha_loss = stepper.step(shard(x), shard(y), None if xv is None else shard(xv),
                                        None if yv is None else shard(yv), sub,
                                        jnp.float32(step / max(trainer.steps, 1)))
        if not first_step_timed:
            jax.block_until_ready(loss)
            first_step_timed, first_step_seconds = True, time.perf_counter() - started
        losses.append(loss)
        if alpha_loss is not None:
            alpha_losses.append(alpha_loss)
        step += 1
        if is_split(ctx):
            meta["sub_supernet_steps"] += len(stepper.active)
        bar.update(1)
        if step % spe == 0:
            stepper.write(arrays)
            record = _epoch_record(ctx, arrays, meta, step // spe, losses, alpha_losses)
            if first_step_seconds is not None:
                record["first_step_seconds"] = round(first_step_seconds, 3)
                first_step_seconds = None
            ctx.log.log(NAME, step // spe, **record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items()})
            last = record["loss"]
            losses, alpha_losses = [], []

        if step < trainer.steps:  # the last step's state is saved by `finish`
            phases.checkpoint(ctx, state, functools.partial(_sync, ctx, state, trainer, stepper, arrays,
                                                            key, step, losses, alpha_losses),
                              metrics=None if last is None else {"supernet_loss": last})
    _sync(ctx, state, trainer, stepper, arrays, key, step, losses, alpha_losses)
    trainer.close()
    bar.close()
    ctx.clock.stop(NAME)
    return phases.finish(ctx, state, NAME, metrics=None if last is None else {"supernet_loss": last})
