"""Cost of entanglement at inference: the masked supernet at a hard arch against the
extracted compact model of the same arch, both jitted, same batch, same run.

Prints, per space, milliseconds per batch of the masked supernet and of the compact
model for the largest and the smallest architecture, and their ratio. The masked
supernet always pays for the max-size tensors; the ratio at the smallest arch is
what a search pays for not slicing (the retrain phase trains compact models).
"""
from __future__ import annotations

import time

import jax
import numpy as np

import nas
import spaces

SHAPES = {"mlp": (64,), "cnn1d": (40, 1), "convnet": (32, 32, 3), "vit": (32, 32, 3),
          "nb201": (32, 32, 3)}
BATCH = 64


def _time(fn, x, repeats: int) -> float:
    jax.block_until_ready(fn(x))  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def run(repeats: int = 20) -> list[dict]:
    rows = []
    print(f"supernet (masked, hard arch) vs compact extracted model, batch {BATCH}, "
          f"best of {repeats}, {jax.devices()[0].platform}")
    print(f"{'space':<8} {'arch':<8} {'params':>9} {'supernet ms':>12} {'compact ms':>11} {'ratio':>6}")
    for name, shape in SHAPES.items():
        space = spaces.get(name).bind(shape, 10)
        model = nas.supernet(space, seed=0)
        x = np.random.default_rng(0).normal(size=(BATCH,) + shape).astype(np.float32)
        low, high, _ = space.extremes(space.params)
        for label, arch in (("largest", high), ("smallest", low)):
            sub = nas.extract(model, arch)
            masked_ms = _time(lambda z: model(z, arch), x, repeats)
            compact_ms = _time(sub, x, repeats)
            row = {"space": name, "arch": label, "params": space.params(arch),
                   "supernet_ms": masked_ms, "compact_ms": compact_ms,
                   "ratio": masked_ms / compact_ms}
            rows.append(row)
            print(f"{name:<8} {label:<8} {row['params']:>9,} {masked_ms:>12.2f} {compact_ms:>11.2f} "
                  f"{row['ratio']:>6.2f}")
    return rows
