"""Accuracy against sparsity (80/90/95/98 %) for static, magnitude (GMP), SET, RigL and GraNet.

Tasks:
- `mnist1d-mlp`: the MLP recipe of `docs/algorithms.md` §5 (40→256→256→10,
  ReLU, SGD momentum 0.9, lr 0.05 cosine, wd 5e-4, batch 128, 200 epochs;
  static = random ERK, GMP = global cubic over the first half every 50 steps,
  SET/RigL = ERK with drop 0.3 cosine to 0 at 75 %, ΔT = 50, GraNet = GMP +
  per-layer regeneration every 50 steps to the end), final-epoch test accuracy,
  3 seeds, printed next to the reference table measured with that recipe.
- `digits-mlp`: the same recipe on scikit-learn digits (64→256→256→10).
- `mnist1d-cnn1d`: the largest `cnn1d` arch (58k weights), AdamW 1e-2 cosine,
  `epochs` epochs (default 60), same sparse settings.

Writes `runs/bench/sparse_accuracy.{json,png}` and prints one table per task.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

METHODS = ("dense", "static", "magnitude", "set", "rigl", "granet")
SPARSITIES = (0.8, 0.9, 0.95, 0.98)
REFERENCE = {  # earlier runs of the recipe (docs/algorithms.md §5), 3-seed means
    "dense": {s: 68.1 for s in SPARSITIES},
    "static": {0.8: 65.3, 0.9: 62.9, 0.95: 57.1, 0.98: 39.9},
    "magnitude": {0.8: 67.1, 0.9: 66.4, 0.95: 67.9, 0.98: 63.2},
    "set": {0.8: 66.1, 0.9: 65.5, 0.95: 64.0, 0.98: 52.8},
    "rigl": {0.8: 66.2, 0.9: 66.8, 0.95: 65.6, 0.98: 60.0},
    "granet": {0.8: 67.5, 0.9: 69.0, 0.95: 69.2, 0.98: 65.6},
}
TASKS = ("mnist1d-mlp", "digits-mlp", "mnist1d-cnn1d")
OUT = Path("runs/bench")


def updater_options(method: str, sparsity: float) -> tuple[str, dict]:
    """(updater name, options) of `method` in the reference recipe."""
    if method == "static":
        return "static", {"sparsity": sparsity, "distribution": "erk"}
    if method == "magnitude":
        return "gmp", {"sparsity": sparsity, "update_every": 50, "begin": 0.0, "end": 0.5,
                       "scope": "global"}
    if method in ("set", "rigl"):
        return method, {"sparsity": sparsity, "update_every": 50, "drop_fraction": 0.3, "end": 0.75,
                        "distribution": "erk"}
    if method == "granet":
        return "granet", {"sparsity": sparsity, "update_every": 50, "begin": 0.0, "end": 0.5}
    raise ValueError(f"unknown method {method!r}; methods are {list(METHODS)}")


def run_one(task: str, method: str, sparsity: float, seed: int, epochs: int | None) -> float:
    """Final test accuracy (%) of one training run."""
    import nas
    import spaces
    from launch import data as datalib
    from launch.train import SparseTraining, TrainConfig, train

    if task == "mnist1d-cnn1d":
        data = datalib.load("mnist1d", seed=seed, val_fraction=0.0)
        space = spaces.get("cnn1d").bind(data.input_shape, data.num_classes)
        arch = space.extremes(space.params)[1]
        cfg = TrainConfig(epochs=epochs or 60, batch_size=128, learning_rate=1e-2, warmup_epochs=2,
                          weight_decay=1e-4, seed=seed)
    else:
        data = datalib.load("mnist1d" if task == "mnist1d-mlp" else "digits", seed=seed, val_fraction=0.0)
        inputs = int(np.prod(data.input_shape))
        space = spaces.get("mlp", max_depth=2, widths=(256,), activations=("relu",)).bind(
            (inputs,), data.num_classes)
        arch = {"depth": 2, "width_0": 256, "width_1": 256, "activation": "relu"}
        cfg = TrainConfig(epochs=epochs or 200, batch_size=128, learning_rate=0.05, warmup_epochs=0,
                          weight_decay=5e-4, optimizer="sgd", momentum=0.9, seed=seed)
    model = nas.extract(nas.supernet(space, seed=seed), arch)
    spec = None
    if method != "dense":
        name, options = updater_options(method, sparsity)
        spec = SparseTraining(name, options)
    return 100.0 * train(model, data, cfg, progress=False, sparse=spec).test_accuracy


def table(task: str, results: dict, seeds: int) -> str:
    lines = [f"\n{task}: final test accuracy %, mean ± std over {seeds} seed(s)"
             + (" [reference Δ]" if task == "mnist1d-mlp" else "")]
    lines.append(f"{'method':<10}" + "".join(f"{f'{s:.0%}':>20}" for s in SPARSITIES))
    for method in METHODS:
        cells = []
        for s in SPARSITIES:
            values = results[method][s]
            cell = f"{np.mean(values):.1f} ± {np.std(values):.1f}"
            if task == "mnist1d-mlp":
                cell += f" [{np.mean(values) - REFERENCE[method][s]:+.1f}]"
            cells.append(f"{cell:>20}")
        lines.append(f"{method:<10}" + "".join(cells))
    return "\n".join(lines)


def plot(all_results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_results), figsize=(5 * len(all_results), 4), squeeze=False)
    for ax, (task, results) in zip(axes[0], all_results.items()):
        for method in METHODS:
            means = [np.mean(results[method][s]) for s in SPARSITIES]
            stds = [np.std(results[method][s]) for s in SPARSITIES]
            style = "--" if method == "dense" else "-o"
            ax.errorbar([100 * s for s in SPARSITIES], means, yerr=stds, fmt=style, label=method, capsize=3)
        if task == "mnist1d-mlp":
            for method in METHODS[1:]:
                ax.plot([100 * s for s in SPARSITIES], [REFERENCE[method][s] for s in SPARSITIES],
                        ":", color="gray", linewidth=0.8)
        ax.set(title=task, xlabel="sparsity (%)", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def run(tasks=TASKS, seeds: int = 3, epochs: dict | None = None, workers: int | None = None) -> dict:
    """Every (task, method, sparsity, seed) run in a process pool; tables, JSON and PNG."""
    epochs = epochs or {}
    jobs = [(task, method, s, seed, epochs.get(task)) for task in tasks for method in METHODS
            for s in (SPARSITIES if method != "dense" else SPARSITIES[:1]) for seed in range(seeds)]
    print(f"\nsparse accuracy: {len(jobs)} training runs on {workers or os.cpu_count()} workers …",
          flush=True)
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    accuracies = []
    with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count(), mp_context=context) as pool:
        # one line per finished run (in job order): progress, and partial results if stopped
        for job, accuracy in zip(jobs, pool.map(run_one, *zip(*jobs))):
            accuracies.append(accuracy)
            print(f"[{len(accuracies)}/{len(jobs)} {time.perf_counter() - start:.0f} s] "
                  f"{job[0]} {job[1]} {job[2]:.0%} seed {job[3]}: {accuracy:.1f}", flush=True)
    results = {task: {m: {s: [] for s in SPARSITIES} for m in METHODS} for task in tasks}
    for (task, method, s, _, _), accuracy in zip(jobs, accuracies):
        for level in (SPARSITIES if method == "dense" else (s,)):
            results[task][method][level].append(accuracy)
    for task in tasks:
        print(table(task, results[task], seeds))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sparse_accuracy.json").write_text(json.dumps(
        {t: {m: {str(s): v for s, v in r.items()} for m, r in res.items()} for t, res in results.items()},
        indent=1))
    plot(results, OUT / "sparse_accuracy.png")
    print(f"wrote {OUT / 'sparse_accuracy.png'} and {OUT / 'sparse_accuracy.json'}")
    return results


if __name__ == "__main__":
    run()
