"""The mask tax: one supernet training step at the largest arch, split into mask
construction, forward, backward and optimizer update, against the same network as a
plain compact model, in one run.

The supernet runs at the hard largest arch with its probabilities as step inputs, as a
search runs it. The compact model is the same module class over the one-arch space,
its (single-option) probabilities compiled in as constants, so XLA folds its masks
away. Parts are timed as nested jitted functions — masks (the part of the forward that
reads only the probabilities, cut out of its jaxpr), forward (the loss), forward +
backward (`value_and_grad`), whole step (+ SGD with momentum) — and reported as
differences; repetitions alternate between the two models. Target: step ≤ 1.15× plain.
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.core import Literal

import nas
import spaces
from benchmarks.conv_macro import ConvMacroSpace
from search import engine

BATCH = 64
SPACES = {"cnn1d": lambda: spaces.get("cnn1d").bind((40, 1), 10),
          "convnet": lambda: spaces.get("convnet").bind((32, 32, 3), 10),
          "vit": lambda: spaces.get("vit").bind((32, 32, 3), 10),
          "conv_macro": lambda: ConvMacroSpace().bind()}
PARTS = ("masks", "forward", "backward", "update")


def _largest(space) -> dict:
    """The arch of most parameters; spaces without a cost model take every last option."""
    try:
        return space.extremes(space.params)[1]
    except TypeError:
        return {k: v[-1] for k, v in space.choices.items()}


def masks_only(fn, probs, *args):
    """A function of `probs` alone computing what `fn(probs, *args)` derives from the
    probabilities and constants only (its masks), cut out of the traced jaxpr."""
    closed = jax.make_jaxpr(fn)(probs, *args)
    jaxpr = closed.jaxpr
    n_probs = len(jax.tree.leaves(probs))
    from_probs = set(jaxpr.invars[:n_probs])
    static = set(from_probs) | set(jaxpr.constvars)
    kept, used_outside = [], set()
    for eqn in jaxpr.eqns:
        inputs = [v for v in eqn.invars if not isinstance(v, Literal)]
        if all(v in static for v in inputs):
            kept.append(eqn)
            static.update(eqn.outvars)
            if any(v in from_probs for v in inputs):
                from_probs.update(eqn.outvars)
        else:
            used_outside.update(v for v in inputs if v in from_probs)
    outs = [v for v in from_probs if v in used_outside]
    cut = jaxpr.replace(invars=jaxpr.invars[:n_probs], outvars=outs, eqns=kept,
                        effects=frozenset(), debug_info=None)

    def run(probs):
        return jax.core.eval_jaxpr(cut, closed.consts, *jax.tree.leaves(probs))
    return run


def _parts(space, arch, plain: bool, x, y):
    """Jitted callables, each of no arguments, for masks / forward / grad / step."""
    tx = optax.sgd(0.01, momentum=0.9)
    model_space = space.fix(arch) if plain else space
    graphdef, params, rest = engine.split(nas.supernet(model_space, seed=0))
    probs = {k: jnp.asarray(v) for k, v in model_space.encode(None if plain else arch).items()}

    def loss(probs, params):
        logits, _ = engine.apply(graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y)

    if plain:  # the probabilities become compile-time constants
        fixed = probs
        loss_of = jax.jit(lambda params: loss(fixed, params))
        masks = None
    else:
        loss_of = jax.jit(loss)
        masks = jax.jit(masks_only(loss, probs, params))
    grad_of = jax.jit(jax.value_and_grad(lambda *a: loss_of(*a), argnums=-1))

    @jax.jit
    def step(*args):
        params, opt_state = args[-2], args[-1]
        _, grads = jax.value_and_grad(lambda p: loss_of(*args[:-2], p))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    head = () if plain else (probs,)
    opt_state = tx.init(params)
    calls = {"forward": lambda: loss_of(*head, params), "grad": lambda: grad_of(*head, params),
             "step": lambda: step(*head, params, opt_state)}
    if masks is not None:
        calls["masks"] = lambda: masks(probs)
    return calls


def _time(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def profile(name: str, repeats: int) -> dict:
    space = SPACES[name]()
    arch = _largest(space)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(BATCH,) + space.input_shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, space.num_classes, BATCH))
    models = {"supernet": _parts(space, arch, False, x, y), "plain": _parts(space, arch, True, x, y)}
    times = {(m, c): [] for m, calls in models.items() for c in calls}
    for calls in models.values():
        for fn in calls.values():
            jax.block_until_ready(fn())  # compile and warm up
    for _ in range(repeats):
        for m, calls in models.items():
            for c, fn in calls.items():
                times[m, c].append(_time(fn))
    out = {}
    for m in models:
        best = {c: min(v) for (mm, c), v in times.items() if mm == m}
        out[m] = {"masks": best.get("masks", 0.0), "forward": best["forward"],
                  "backward": best["grad"] - best["forward"], "update": best["step"] - best["grad"],
                  "step": best["step"], "step_median": statistics.median(times[m, "step"])}
    out["tax"] = out["supernet"]["step"] / out["plain"]["step"]
    return out


def run(repeats: int = 20) -> dict:
    print(f"\nmask tax: one training step at the largest arch, supernet vs plain compact model "
          f"(batch {BATCH}, {jax.devices()[0].platform}, ms, min of {repeats}; parts by difference)")
    print(f"{'space':<11} {'model':<9} {'masks':>7} {'forward':>8} {'backward':>9} {'update':>7} "
          f"{'step':>8} {'median':>8} {'tax':>6}")
    rows = {}
    for name in SPACES:
        rows[name] = result = profile(name, repeats)
        for m in ("supernet", "plain"):
            r = result[m]
            tax = f"{result['tax']:>6.2f}" if m == "supernet" else ""
            print(f"{name:<11} {m:<9} " + " ".join(f"{r[p] * 1e3:>{w}.2f}" for p, w in zip(
                PARTS + ("step", "step_median"), (7, 8, 9, 7, 8, 8))) + f" {tax}")
    return rows
