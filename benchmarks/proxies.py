"""Zero-cost proxy throughput: GradSign archs scored per second, vmapped against a loop.

`score_population("gradsign", ...)` runs `chunk` archs per compiled call, each arch's
N per-example gradients vmapped in slices and their signs summed on the device. The
loop does what a reference implementation does: one jitted single-example gradient
function (compiled once, for every arch: the supernet at a one-hot encoding), called
N times per arch from Python, the signs accumulated on the host. Both score the same
archs at their own initialisation on the same N examples (128; 32 in quick mode),
timed after warm-up; the scores are checked to agree. Target: vmapped ≥ 10× the loop
on CPU; not met, see docs/proxies.md ("Cost") for the numbers and the reasons.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

import spaces
from search import engine
from search.proxies import init_factors, score_population
from search.proxies.core import _supernet, at_init
from sparse.masks import kernel_names, named_leaves

SHAPES = {"cnn1d": (40, 1), "convnet": (32, 32, 3)}   # MNIST-1D; convnet's default input
EXAMPLES = 128
CLASSES = 10


@functools.partial(jax.jit, static_argnums=(0, 1))
def _example_gradient(graphdef, kernels, params, rest, x, y, probs):
    """Kernel gradients of one example's cross-entropy (a batch of 1, BatchNorm in train mode)."""
    def loss(params):
        logits, _ = engine.apply(graphdef, params, rest, x[None], probs, train=True)
        return engine.cross_entropy(logits, y[None])
    grads = named_leaves(jax.grad(loss)(params))
    return {name: grads[name] for name in kernels}


def loop_scores(space, archs, examples, seed: int = 0) -> np.ndarray:
    """GradSign of each arch the reference way: a Python loop over `examples`, a list of
    (x, y) pairs already on the device."""
    model = _supernet(space, seed, "float32")
    graphdef, params, rest = engine.split(model)
    kernels = tuple(kernel_names(params))
    shapes = {name: leaf.shape for name, leaf in named_leaves(params).items()}
    scores = []
    for arch in archs:
        own = at_init(params, init_factors(model, arch, kernels))
        probs = jax.device_put(space.one_hot(arch))
        totals = {name: np.zeros(shapes[name], np.int32) for name in kernels}
        for xi, yi in examples:
            grads = _example_gradient(graphdef, kernels, own, rest, xi, yi, probs)
            for name in kernels:
                totals[name] += np.sign(np.asarray(grads[name])).astype(np.int32)
        scores.append(float(sum(np.abs(t).sum() for t in totals.values())))
    return np.array(scores)


def _setup(name: str, n_archs: int, examples: int):
    space = spaces.get(name).bind(SHAPES[name], CLASSES)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples,) + SHAPES[name]).astype(np.float32)
    y = rng.integers(0, CLASSES, examples)
    archs = [space.sample(seed) for seed in range(1, n_archs + 1)]
    return space, x, y, archs


def _timed(fn, repeats: int):
    """(best seconds over `repeats` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def compare(name: str, n_archs: int, chunks, repeats: int, examples: int = EXAMPLES) -> dict:
    """archs/s of the loop and of `score_population` at each chunk (after a warm-up call
    that compiles), the compile seconds, and the largest relative difference of the scores."""
    space, x, y, archs = _setup(name, n_archs, examples)
    examples = [(jnp.asarray(xi), jnp.asarray(yi, jnp.int32)) for xi, yi in zip(x, y)]
    loop_scores(space, archs[:1], examples[:1])                          # compile
    seconds, reference = _timed(lambda: loop_scores(space, archs, examples), 1)
    out = {"loop": n_archs / seconds, "vmapped": {}, "compile_s": {}, "max_rel_diff": 0.0}
    for chunk in chunks:
        start = time.perf_counter()
        score_population("gradsign", space, archs[:chunk], x, y, chunk=chunk)   # compile
        out["compile_s"][chunk] = time.perf_counter() - start
        seconds, scores = _timed(lambda chunk=chunk: score_population("gradsign", space, archs, x, y,
                                                                      chunk=chunk), repeats)
        out["vmapped"][chunk] = n_archs / seconds
        # Equal but for gradients at float32 rounding level, whose sign is arbitrary
        # (docs/proxies.md, "Caveats").
        out["max_rel_diff"] = max(out["max_rel_diff"], float(np.max(np.abs(scores - reference) / reference)))
    return out


def run(repeats: int = 3, n_archs: int = 16, chunks=(1, 4, 8), names=tuple(SHAPES),
        examples: int = EXAMPLES) -> None:
    platform = jax.devices()[0].platform
    print(f"\nGradSign throughput: {n_archs} archs × {examples} examples, score_population (vmapped, "
          f"best of {repeats}) vs a per-example Python loop ({platform})")
    print(f"{'space':<8} {'chunk':>5} {'vmapped archs/s':>16} {'loop archs/s':>13} {'ratio':>7} "
          f"{'compile s':>10} {'max rel diff':>13}")
    for name in names:
        r = compare(name, n_archs, chunks, repeats, examples)
        best = max(r["vmapped"], key=r["vmapped"].get)
        for chunk, rate in r["vmapped"].items():
            mark = " ← best" if chunk == best else ""
            print(f"{name:<8} {chunk:>5} {rate:>16.2f} {r['loop']:>13.2f} {rate / r['loop']:>6.1f}× "
                  f"{r['compile_s'][chunk]:>10.1f} {r['max_rel_diff']:>13.1e}{mark}", flush=True)
