"""The input pipeline: memory, stall and throughput, on a generated ArrayRecord set of
32×32×3 images (uint8 noise, 10 classes) cached under $XDG_CACHE_HOME/jaxnas/bench/.

(a) Peak RSS of a process training a supernet (`mlp`, sandwich rule, batch 128) for 200
    steps over a set of ≥ 4 GB on disk, globally shuffled, augmented: the pipeline must
    not hold the set (target < 1.5 GB; JAX's own runtime is most of it).
(b) The share of a supernet step spent waiting for data (time inside `next(batches)` ÷
    wall time, each step synchronised) for `convnet` (batch 32; target ≤ 5 %) and `mlp`, with
    random crops and flips, decoded by a prefetch thread (0 workers) or 2 workers.
(c) Examples per second of the pipeline alone (read, decode, augment, batch) per
    worker count.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RECORD_SHAPE = (32, 32, 3)
FULL_RECORDS = 1_400_000   # × 3,076 bytes = 4.3 GB
QUICK_RECORDS = 20_000


class NoiseImages:
    """Random access to `n` reproducible noise images (pixel / 255) and labels."""
    kind = "image"

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def read(self, indices):
        rng = np.random.default_rng([self.seed, int(indices[0])])
        pixels = rng.integers(0, 256, size=(len(indices), *RECORD_SHAPE), dtype=np.uint8)
        return pixels.astype(np.float32) / 255, (np.asarray(indices) % 10).astype(np.int32)

    def __getitem__(self, index):
        x, y = self.read(np.asarray([index]))
        return x[0], int(y[0])


def noise_set(records: int, directory: Path | None = None) -> Path:
    """The ArrayRecord set of `records` noise images in `directory` (default: the user
    cache, where it is kept for the next run), written on first use."""
    from launch.data import array_record
    from launch.data.core import Sources
    cache = directory or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxnas" / "bench"
    path = cache / f"noise-32x32x3-{records}"
    if not (path / array_record.SPEC).is_file():
        if directory is None:
            print(f"writing {records:,} noise images to {path} (once)", flush=True)
        sources = Sources(NoiseImages(records), NoiseImages(1000, seed=1), 10, RECORD_SHAPE, "image")
        array_record.write(sources, path, dtype="uint8", divisor=255, progress=directory is None)
    return path


def _batches(path: Path, batch: int, workers: int):
    from launch import data
    found = data.loader("array_record")(path=str(path))
    return data.Batches(data.Split(found.train), batch, seed=0, augment=data.Augment(4, True),
                        workers=workers)


def supernet_steps(space_name: str, path: Path, steps: int, batch: int, workers: int) -> dict:
    """Train `space_name`'s supernet (sandwich rule) on the set for `steps` steps after 3 of
    warm-up, each step synchronised; the time inside `next(batches)` and in all."""
    import jax
    import optax

    import nas
    import spaces
    from search import oneshot
    from search.engine import split
    space = spaces.get(space_name).bind(RECORD_SHAPE, 10)
    graphdef, params, rest = split(nas.supernet(space, seed=0))
    tx = optax.adamw(1e-3)
    opt_state = tx.init(params)
    step = oneshot.make_step(graphdef, space, tx, "sandwich", donate=True)
    batches = _batches(path, batch, workers)
    key = jax.random.key(0)
    waited = 0.0
    try:
        for i in range(steps + 3):
            if i == 3:
                waited, started = 0.0, time.perf_counter()
            before = time.perf_counter()
            x, y = next(batches)
            waited += time.perf_counter() - before
            key, sub = jax.random.split(key)
            params, rest, opt_state, loss = step(params, rest, opt_state, x, y, sub)
            loss.block_until_ready()
        total = time.perf_counter() - started
    finally:
        batches.close()
    return {"space": space_name, "workers": workers, "steps": steps, "step_s": total / steps,
            "wait_share": waited / total}


def pipeline_rate(path: Path, workers: int, batches: int, batch: int = 128) -> float:
    """Examples per second of the pipeline alone (after each worker's first batch)."""
    stream = _batches(path, batch, workers)
    try:
        stream.take(max(workers, 1))
        started = time.perf_counter()
        stream.take(batches)
        return batches * batch / (time.perf_counter() - started)
    finally:
        stream.close()


def _peak_rss_child(path: str, steps: int, workers: int) -> None:
    """In a fresh process: train `steps` steps, print peak RSS (self, children) as JSON."""
    result = supernet_steps("mlp", Path(path), steps, 128, workers)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_worker_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def peak_rss(path: Path, steps: int, workers: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.data", "rss", str(path), str(steps),
                           str(workers)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    records = QUICK_RECORDS if quick else FULL_RECORDS
    path = noise_set(records)
    size_gb = sum(f.stat().st_size for f in path.iterdir()) / 1e9
    out = {"records": records, "gigabytes": size_gb}
    print(f"data pipeline: {records:,} records of 32×32×3 uint8, {size_gb:.2f} GB of ArrayRecord shards, "
          f"random crop (4) + flip")
    steps = 20 if quick else 200
    out["rss"] = [peak_rss(path, steps, workers) for workers in (0, 2)]
    out["stall"], out["rate"] = [], {}
    for row in out["rss"]:
        print(f"(a) mlp supernet, {steps} steps, {row['workers']} workers: "
              f"peak RSS {row['peak_rss_mb']:,.0f} MB (workers {row['peak_worker_rss_mb']:,.0f} MB each "
              "at most; target < 1,500 MB)")
    # convnet's sandwich step at batch 128 needs ~60 GB on CPU (four passes through 32×32
    # MBConv blocks of up to 192 channels); 32 rows keep it within a small machine.
    for space_name, batch, count in (("convnet", 32, 3 if quick else 5), ("mlp", 128, 20 if quick else 200)):
        for workers in (0, 2):
            row = supernet_steps(space_name, path, count, batch, workers)
            out["stall"].append(row)
            print(f"(b) {space_name:8s} batch {batch:3d}, {workers} workers: "
                  f"step {row['step_s'] * 1e3:8.1f} ms, waiting for data {row['wait_share']:6.1%}")
    for workers in (0, 1, 2, 4):
        out["rate"][workers] = pipeline_rate(path, workers, 20 if quick else 200)
        print(f"(c) pipeline alone, {workers} workers: {out['rate'][workers]:9,.0f} examples/s")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["rss"]:
        _peak_rss_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
