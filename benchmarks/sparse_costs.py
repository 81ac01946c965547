"""What sparsity costs and buys, measured side by side in one run.

1. DST training step against the dense step (cnn1d at its largest arch, batch
   128, AdamW): 100 consecutive steps with one mask update among them
   (ΔT = 100), best of `repeats`. Target ≤ 1.05×.
2. DP allocation time for 50 layers × 100 levels (random curves, layers of
   1k–100k weights, 10 % kept). Target < 1 s.
3. Allocation quality at equal budget on a trained cnn1d (largest arch, 30
   epochs): per-layer sparsities by DP (101-level grid, at most the budget)
   and by uniform, ERK, global magnitude and LAMP (off the grid, the budget up
   to rounding) at 30/50/70/90 %; the weights each keeps, the measured output
   distortion of pruning all layers at once (mean over the 800 validation
   examples of the squared logit error), the additive estimate Σ_l δ_l(s_l)
   the DP minimises (each layer pruned alone to its own sparsity on the
   calibration batch), and the test accuracy right after one-shot pruning,
   before any fine-tuning. (At 90 % one-shot every allocation destroys this
   network; `nas search` prunes in rounds with fine-tuning in between.)
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import nas
import spaces
import sparse
from launch import data as datasets
from launch.train import TrainConfig, train
from search import engine
from sparse import allocate as alloc
from sparse import masks as masklib

BATCH = 128
METHODS = ("static", "set", "rigl", "granet")


def _cnn1d(seed: int = 0):
    space = spaces.get("cnn1d").bind((40, 1), 10)
    arch = space.extremes(space.params)[1]
    return nas.extract(nas.supernet(space, seed=seed), arch)


def step_overhead(repeats: int = 5, interval: int = 100) -> dict[str, tuple[float, float]]:
    """{method: (ms per step amortised over `interval` steps, ratio to dense)}."""
    model = _cnn1d()
    graphdef, params, rest = engine.split(model)
    probs = model.space.encode(None)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, 40, 1)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).integers(0, 10, BATCH), jnp.int32)
    names = masklib.kernel_names(params)

    def loss(p, rest):
        logits, rest = engine.apply(graphdef, p, rest, x, probs, True)
        return engine.cross_entropy(logits, y), rest

    def make(tx, masked):
        @jax.jit
        def step(p, rest, opt):
            (value, rest), grads = jax.value_and_grad(loss, has_aux=True)(masked(p, opt), rest)
            updates, opt = tx.update(grads, opt, p)
            return optax.apply_updates(p, updates), rest, opt
        return step

    def timed(tx, masked):
        step = make(tx, masked)
        p, r, opt = params, rest, tx.init(params)
        p, r, opt = step(p, r, opt)
        jax.block_until_ready(p)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(interval):
                p, r, opt = step(p, r, opt)
            jax.block_until_ready(p)
            best = min(best, (time.perf_counter() - start) / interval)
        return best

    base = optax.adamw(1e-3, weight_decay=1e-4)
    dense = timed(base, lambda p, opt: p)
    out = {"dense": (1e3 * dense, 1.0)}
    for method in METHODS:
        # total_steps far ahead so the schedules keep updating; one event per `interval` steps
        updater = sparse.updaters.get(method, sparsity=0.9, total_steps=10**7, update_every=interval)
        ms = timed(sparse.wrap(base, updater, names), lambda p, opt: masklib.apply(p, opt.masks))
        out[method] = (1e3 * ms, ms / dense)
    return out


def dp_time(layers: int = 50, levels: int = 100, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    distortion = np.cumsum(rng.random((layers, levels)), axis=1)
    sizes = rng.integers(1_000, 100_000, layers)
    grid = np.linspace(0.0, 0.99, levels)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        sparse.allocate_dp(distortion, grid, sizes, int(0.1 * sizes.sum()))
        best = min(best, time.perf_counter() - start)
    return best


def additive_estimate(fn, params, names, sparsity, x) -> float:
    """Σ_l δ_l(s_l): each layer pruned alone to its own sparsity, distortions summed."""
    return float(sum(alloc.distortion_curves(fn, params, [n], [s], x)[0, 0] for n, s in zip(names, sparsity)))


def allocation_quality(epochs: int = 30, sparsities=(0.3, 0.5, 0.7, 0.9), grid: int = 101) -> dict:
    """{sparsity: {method: (kept weights, measured distortion, additive estimate, accuracy)}},
    plus the budget of each sparsity and the dense accuracy."""
    data = datasets.load("mnist1d", seed=0, val_fraction=0.2)
    model = train(_cnn1d(), data, TrainConfig(epochs=epochs), progress=False).model
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(jnp.copy, params)
    probs = model.space.encode(None)
    x_test, y_test = data.test.arrays()

    @jax.jit
    def logits(p, x):
        return nnx.merge(graphdef, p, rest, copy=True).forward(x, probs, train=False)

    def test_accuracy(p):
        return float(jnp.mean(jnp.argmax(logits(p, jnp.asarray(x_test)), -1) == y_test))

    names = masklib.kernel_names(params)
    weights = masklib.kernels(params, names)
    shapes = masklib.shapes_of(params, names)
    sizes = np.array([math.prod(s) for s in shapes.values()])
    calib = data.train.read(np.arange(1024))[0]
    held_out = jnp.asarray(data.val.arrays()[0])
    reference = logits(params, held_out)
    out = {"dense_accuracy": test_accuracy(params), "budget": {}}
    for s in sparsities:
        levels = alloc.grid_levels(grid, s)
        curves = alloc.distortion_curves(logits, params, names, levels, calib)
        keep = int(round((1 - s) * sizes.sum()))
        out["budget"][s] = keep
        row = {}
        for method in alloc.METHODS:
            chosen = alloc.allocate(method, levels, sizes, keep, distortion=curves,
                                    weights=[np.asarray(weights[n]) for n in names], shapes=shapes)
            masks = alloc.magnitude_masks(weights, dict(zip(names, chosen)))
            pruned = masklib.apply(params, masks)
            kept = sum(int(np.sum(np.asarray(m))) for m in masks.values())
            measured = float(jnp.mean(jnp.sum(jnp.square(logits(pruned, held_out) - reference), -1)))
            estimate = additive_estimate(logits, params, names, chosen, calib)
            row[method] = (kept, measured, estimate, test_accuracy(pruned))
        out[s] = row
    return out


def quality_table(quality: dict) -> str:
    lines = [f"allocation at equal budget on a trained cnn1d (max arch; dense test accuracy "
             f"{quality['dense_accuracy']:.4f}); one-shot magnitude pruning, no fine-tuning",
             f"{'sparsity':<9} {'method':<8} {'kept':>7} {'distortion':>11} {'additive est.':>14} "
             f"{'test acc':>9}"]
    for s, keep in quality["budget"].items():
        for method, (kept, measured, estimate, acc) in quality[s].items():
            lines.append(f"{s:<9.0%} {method:<8} {kept:>7} {measured:>11.3f} {estimate:>14.3f} {acc:>9.4f}")
        lines.append(f"{'':<9} {'budget':<8} {keep:>7}")
    return "\n".join(lines)


def run(repeats: int = 5) -> None:
    platform = jax.devices()[0].platform
    print(f"\nDST step vs dense step (cnn1d max arch, batch {BATCH}, AdamW, 90 % sparse, one mask "
          f"update per 100 steps, best of {repeats}, {platform})")
    print(f"{'method':<8} {'ms/step':>8} {'ratio':>6}")
    for method, (ms, ratio) in step_overhead(repeats).items():
        print(f"{method:<8} {ms:>8.3f} {ratio:>6.3f}")
    print(f"\nDP allocation, 50 layers × 100 levels: {dp_time():.3f} s")
    print("\n" + quality_table(allocation_quality()))


if __name__ == "__main__":
    run()
