"""Data-parallel scaling: sampled supernet training steps per second on 1, 2, 4 and 8
fake CPU devices (`search.parallel`: batch rows split, weights replicated).

A process's device count is fixed when its backend starts, so each count runs in its
own subprocess (`python -m benchmarks.scale --devices N`). Fake devices share the
machine's cores: on a small CPU box the table shows the cost of splitting a step
(collectives, smaller per-device work), not a speed-up; on hosts with real devices
the same step is what spreads over them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax

DEVICE_COUNTS = (1, 2, 4, 8)
SPACE, SHAPE, BATCH = "cnn1d", (40, 1), 256


def steps_per_second(repeats: int, num_devices: int | None = None, batch: int = BATCH) -> float:
    """Sandwich steps (max + min + 2 random archs) per second on `num_devices` devices of
    this process (default: all), best of three blocks of `repeats` steps, each step's batch
    of `batch` rows sharded anew."""
    import numpy as np
    import optax

    import nas
    import spaces
    from search import engine, oneshot
    from search.parallel import data_parallel

    parallel = data_parallel(num_devices)
    space = spaces.get(SPACE, norm="batch").bind(SHAPE, 10)
    graphdef, params, rest = engine.split(nas.supernet(space, seed=0))
    tx = optax.adamw(1e-3)
    step = oneshot.make_step(graphdef, space, tx, "sandwich", num_random=2)
    params, rest, opt_state = parallel.replicate((params, rest, tx.init(params)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch,) + SHAPE).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    key = parallel.replicate(jax.random.key(0))

    def block(n, params, rest, opt_state):
        for _ in range(n):
            params, rest, opt_state, loss = step(params, rest, opt_state, parallel.shard(x),
                                                 parallel.shard(y), key)
        jax.block_until_ready(loss)
        return params, rest, opt_state

    params, rest, opt_state = block(2, params, rest, opt_state)  # compile and warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        params, rest, opt_state = block(repeats, params, rest, opt_state)
        best = min(best, time.perf_counter() - start)
    return repeats / best


def _measure(devices: int, repeats: int) -> float:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--devices", str(devices),
                          "--repeats", str(repeats)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["steps_per_second"]


def run(repeats: int = 20) -> dict[int, float]:
    print(f"\ndata-parallel sampled supernet steps ({SPACE}, sandwich, batch {BATCH}, "
          f"fake CPU devices, {os.cpu_count()} cores, best of 3 × {repeats} steps)")
    print(f"{'devices':>7} {'steps/s':>8} {'vs 1':>6}")
    rates = {}
    for devices in DEVICE_COUNTS:
        rates[devices] = _measure(devices, repeats)
        print(f"{devices:>7} {rates[devices]:>8.1f} {rates[devices] / rates[1]:>6.2f}", flush=True)
    return rates


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--devices", type=int, help="measure in this process on N fake CPU devices")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.devices is None:
        run(args.repeats)
        return
    jax.config.update("jax_num_cpu_devices", args.devices)
    print(json.dumps({"devices": args.devices, "steps_per_second": steps_per_second(args.repeats)}))


if __name__ == "__main__":
    main()
