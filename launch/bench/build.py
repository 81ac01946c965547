"""`nas bench build`: train archs of a space from scratch with one recipe, into a table.

Archs are spread evenly over the log of the parameter count (from the smallest
network of the space to the largest), so small and large networks are both well
represented; `archs=None` takes every distinct network. Each arch trains for
every seed in a worker process (one per core by default), largest first; a row
is written (atomically, the whole table) as soon as its arch is done, so an
interrupted build loses only the archs in flight, and building again with the
same settings skips the finished rows.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from launch.bench.table import Table, info_path
from launch.bench.table import load as load_table


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The one training recipe of a table (`launch.train.TrainConfig` fields). The
    defaults take the MNIST-1D paper's CNN to about 95.7 % test on MNIST-1D."""
    epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 0.01
    warmup_epochs: float = 2.0
    weight_decay: float = 1e-4


def select(space, archs: int | None, seed: int = 0, pool: int = 100_000) -> list[dict]:
    """`archs` distinct networks of `space` spread evenly over log(params): for each of
    `archs` targets spaced evenly in log(params) between the space's smallest and
    largest network, the unpicked network of a pool (every network when the space has
    at most `pool` encodings, else `pool` random samples plus the extremes) closest to
    it. `archs=None`: every distinct network (the space must be enumerable)."""
    if archs is not None and archs < 1:
        raise ValueError(f"bench build: archs must be ≥ 1, got {archs}")
    if space.size() <= pool:
        candidates = space.enumerate()
    else:
        if archs is None:
            raise ValueError(f"bench build: space {space.name!r} has {space.size():,} encodings, "
                             f"too many for --all (at most {pool:,}); pass --archs N")
        rng = np.random.default_rng(seed)
        low, high, _ = space.extremes(space.params)
        candidates = [low, high] + [space.sample(rng) for _ in range(pool)]
    networks = {tuple(space.canonical(a).items()): None for a in candidates}
    found = [dict(k) for k in networks]
    if archs is None:
        return sorted(found, key=space.params)
    if archs > len(found):
        raise ValueError(f"bench build: asked for {archs} archs, the space has {len(found)} "
                         "distinct networks")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(found))              # ties go to a random network
    found = [found[i] for i in order]
    logp = np.log(np.array([space.params(a) for a in found], np.float64))
    targets = np.linspace(logp.min(), logp.max(), archs)
    free = np.ones(len(found), bool)
    picked = []
    for target in targets:
        distance = np.where(free, np.abs(logp - target), np.inf)
        best = int(np.argmin(distance))
        free[best] = False
        picked.append(found[best])
    return sorted(picked, key=space.params)


_DATA_CACHE: dict = {}


def _train(job: dict) -> tuple[dict, list[float], float]:
    """Worker: train one arch for every seed; (arch, test accuracies, seconds)."""
    import nas
    import spaces
    from launch import data as datasets
    from launch.train import TrainConfig, train
    key = json.dumps(job["data"], sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = datasets.load(job["data"]["name"], seed=0, val_fraction=0.0,
                                         **job["data"]["options"])
    data = _DATA_CACHE[key]
    space = spaces.from_dict(job["space"]).bind(data.input_shape, data.num_classes)
    accuracies, started = [], time.perf_counter()
    for seed in job["seeds"]:
        model = nas.supernet(space.fix(job["arch"]), seed=seed)
        result = train(model, data, TrainConfig(**job["recipe"], seed=seed), progress=False)
        accuracies.append(result.test_accuracy)
    return job["arch"], accuracies, time.perf_counter() - started


def build(space, out: str | Path, data: str = "mnist1d", data_options: dict | None = None,
          archs: int | None = 150, seeds: int = 2, recipe: Recipe = Recipe(),
          workers: int | None = None, seed: int = 0, progress: bool = True) -> Table:
    """Build (or finish) the table at `out` for `space` (a `Space`, bound to the data
    here) trained on `data`'s whole training split and tested on its test split."""
    from launch import data as datasets
    if seeds < 1:
        raise ValueError(f"bench build: seeds must be ≥ 1, got {seeds}")
    data_spec = {"name": data, "options": dict(data_options or {})}
    loaded = datasets.load(data, seed=0, val_fraction=0.0, **data_spec["options"])
    space = space.bind(loaded.input_shape, loaded.num_classes)
    info = {"space": space.to_dict(), "data": data_spec, "seeds": list(range(seeds)),
            "recipe": dataclasses.asdict(recipe), "selection": {"archs": archs, "seed": seed},
            "train_examples": len(loaded.train), "test_examples": len(loaded.test)}
    out = Path(out)
    table = _existing(out, info, space)
    done = table.index()
    wanted = select(space, archs, seed)
    todo = [a for a in wanted if tuple(space.canonical(a).items()) not in done]
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"bench build: workers must be ≥ 1, got {workers}")
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc=f"bench {space.name}",
               unit="arch", disable=not progress)
    jobs = [{"arch": a, "space": info["space"], "data": data_spec, "seeds": info["seeds"],
             "recipe": info["recipe"]} for a in sorted(todo, key=space.params, reverse=True)]
    context = multiprocessing.get_context("spawn")   # a forked JAX runtime is not safe
    with concurrent.futures.ProcessPoolExecutor(min(workers, max(len(jobs), 1)), mp_context=context) as pool:
        futures = [pool.submit(_train, job) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                arch, accuracies, seconds = future.result()
                table = _with_row(table, space, arch, accuracies, seconds)
                table.save(out)
                bar.update(1)
                bar.set_postfix(last=f"{np.mean(accuracies):.3f}")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    bar.close()
    if not jobs:
        table.save(out)
    return table


def _existing(out: Path, info: dict, space) -> Table:
    """The finished rows at `out` when it was built with the same settings, else none."""
    if not out.exists():
        return Table(space, [], np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros((0, len(info["seeds"]))), np.zeros(0), info)
    table = load_table(out)
    for key in ("space", "data", "seeds", "recipe"):
        if json.loads(json.dumps(table.info.get(key))) != json.loads(json.dumps(info[key])):
            raise ValueError(f"bench build: {str(out)!r} was built with {key} = "
                             f"{json.dumps(table.info.get(key))}, not {json.dumps(info[key])}; "
                             f"use another --out, or delete it and {info_path(out).name}")
    table.info = info
    return table


def _with_row(table: Table, space, arch, accuracies, seconds) -> Table:
    arch = space.canonical(arch)
    rows = sorted([*zip(table.archs, table.accuracy.tolist(), table.seconds.tolist()),
                   (arch, list(accuracies), seconds)], key=lambda r: space.params(r[0]))
    archs = [r[0] for r in rows]
    return Table(space, archs, np.array([space.params(a) for a in archs], np.int64),
                 np.array([space.flops(a) for a in archs], np.int64),
                 np.array([r[1] for r in rows], np.float64).reshape(len(rows), -1),
                 np.array([r[2] for r in rows], np.float64), table.info)
