"""What the search engine's compiled steps cost, measured side by side in one run.

1. Peak memory of one TangleNAS training step (weights superposed under soft
   masks, one op call per layer) on `vit` and `convnet`, against the same step
   of the plain max-size model and against a classic output-mixture step that
   runs each candidate separately (the K aligned candidates — every decision at
   its k-th option — as K forward passes, logits mixed by their joint
   probability). XLA's compiled memory analysis (temp + arguments + outputs).
   Target: superposed ≤ 1.2× plain.
2. Wall time of a supernet training step at a hard arch (the largest) against
   the same step of the compact max-size model. Target ≤ 1.15×.
3. Population evaluation: archs per second through one vmapped call per
   generation against one arch per call.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nas
import spaces
from search import engine
from search.population import PopulationEvaluator

SHAPES = {"vit": (32, 32, 3), "convnet": (32, 32, 3)}
BATCH = 64


def _train_step(graphdef, tx, loss_of):
    def step(params, rest, opt_state, x, y, probs):
        def loss_fn(params):
            return loss_of(params, rest, x, y, probs)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return jax.jit(step)


def _peak_bytes(step, *args) -> int:
    analysis = step.lower(*args).compile().memory_analysis()
    return int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
               + analysis.output_size_in_bytes)


def _aligned_candidates(space):
    """The K aligned candidates: every decision at option min(k, K_d − 1)."""
    k_max = max(len(o) for o in space.choices.values())
    return [space.from_indices([min(k, len(o) - 1) for o in space.choices.values()])
            for k in range(k_max)]


def memory(space_name: str, shape) -> dict:
    space = spaces.get(space_name).bind(shape, 10)
    model = nas.supernet(space, seed=0)
    graphdef, params, rest = engine.split(model)
    tx = optax.sgd(0.01, momentum=0.9)
    x = jnp.zeros((BATCH,) + shape, jnp.float32)
    y = jnp.zeros((BATCH,), jnp.int32)
    soft = {k: jnp.asarray(v) for k, v in space.uniform_probs().items()}

    def superposed(params, rest, x, y, probs):
        logits, _ = engine.apply(graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y)

    candidates = [{k: jnp.asarray(v) for k, v in space.one_hot(a).items()}
                  for a in _aligned_candidates(space)]

    def output_mixture(params, rest, x, y, probs):
        mixed = 0.0
        for hard in candidates:
            weight = jnp.prod(jnp.stack([jnp.sum(probs[k] * hard[k]) for k in probs]))
            logits, _ = engine.apply(graphdef, params, rest, x, hard, train=True)
            mixed = mixed + weight * logits
        return engine.cross_entropy(mixed, y)

    _, high, _ = space.extremes(space.params)
    plain_model = nas.supernet(space.fix(high), seed=0)
    p_graphdef, p_params, p_rest = engine.split(plain_model)
    plain_probs = plain_model.space.encode(None)

    def plain(params, rest, x, y, probs):
        logits, _ = engine.apply(p_graphdef, params, rest, x, probs, train=True)
        return engine.cross_entropy(logits, y)

    out = {}
    for label, fn, (g_params, g_rest, probs) in (
            ("superposed", superposed, (params, rest, soft)),
            ("output_mixture", output_mixture, (params, rest, soft)),
            ("plain", plain, (p_params, p_rest, plain_probs))):
        step = _train_step(graphdef, tx, fn)
        out[label] = _peak_bytes(step, g_params, g_rest, tx.init(g_params), x, y, probs)
    out["candidates"] = len(candidates)
    return out


def _best_ms(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def step_time(space_name: str, shape, repeats: int) -> tuple[float, float]:
    space = spaces.get(space_name).bind(shape, 10)
    _, high, _ = space.extremes(space.params)
    tx = optax.sgd(0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(BATCH,) + shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, BATCH))
    timings = []
    for model, probs in ((nas.supernet(space, seed=0), space.encode(high)),
                         (nas.supernet(space.fix(high), seed=0), space.fix(high).encode(None))):
        graphdef, params, rest = engine.split(model)

        def loss_of(params, rest, x, y, probs, graphdef=graphdef):
            logits, _ = engine.apply(graphdef, params, rest, x, probs, train=True)
            return engine.cross_entropy(logits, y)

        step = _train_step(graphdef, tx, loss_of)
        opt_state = tx.init(params)
        timings.append(_best_ms(lambda: step(params, rest, opt_state, x, y, probs), repeats))
    return timings[0], timings[1]


def population(repeats: int, generation: int = 50) -> tuple[float, float]:
    space = spaces.get("cnn1d").bind((40, 1), 10)
    model = nas.supernet(space, seed=0)
    graphdef, params, rest = engine.split(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 40, 1)).astype(np.float32)
    y = rng.integers(0, 10, 500)
    archs = [space.sample(i) for i in range(generation)]
    batched = PopulationEvaluator(graphdef, params, rest, space, x, y, chunk=generation)
    single = PopulationEvaluator(graphdef, params, rest, space, x, y, chunk=1)
    rates = []
    for evaluator in (batched, single):
        evaluator.evaluate(archs[:1])  # compile
        best = float("inf")
        for _ in range(max(repeats // 5, 1)):
            start = time.perf_counter()
            evaluator.evaluate(archs)
            best = min(best, time.perf_counter() - start)
        rates.append(generation / best)
    return rates[0], rates[1]


def run(repeats: int = 20) -> None:
    platform = jax.devices()[0].platform
    print(f"\nTangleNAS step peak memory (XLA memory analysis, batch {BATCH}, {platform})")
    print(f"{'space':<8} {'plain MB':>9} {'superposed MB':>14} {'output-mix MB':>14} "
          f"{'super/plain':>12} {'mix/plain':>10}")
    for name, shape in SHAPES.items():
        m = memory(name, shape)
        mb = {k: v / 2**20 for k, v in m.items() if k != "candidates"}
        print(f"{name:<8} {mb['plain']:>9.1f} {mb['superposed']:>14.1f} {mb['output_mixture']:>14.1f} "
              f"{m['superposed'] / m['plain']:>12.2f} {m['output_mixture'] / m['plain']:>10.2f}"
              f"   ({m['candidates']} candidates in the output mixture)")
    print(f"\ntraining step at the largest arch: masked supernet vs compact model "
          f"(batch {BATCH}, best of {repeats}, {platform})")
    print(f"{'space':<8} {'supernet ms':>12} {'compact ms':>11} {'ratio':>6}")
    for name, shape in SHAPES.items():
        supernet_ms, compact_ms = step_time(name, shape, repeats)
        print(f"{name:<8} {supernet_ms:>12.2f} {compact_ms:>11.2f} {supernet_ms / compact_ms:>6.2f}")
    vmapped, single = population(repeats)
    print(f"\npopulation evaluation (cnn1d, 50 archs × 500 examples, {platform}): "
          f"vmapped {vmapped:,.0f} archs/s, one per call {single:,.0f} archs/s, "
          f"speed-up {vmapped / single:.1f}×")
