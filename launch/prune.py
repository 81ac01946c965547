"""Layer-adaptive pruning of a trained compact model, then sparse fine-tuning.

Each round removes the fraction `rate` (0.2, the reference's a) of the weights
still kept, so after round t a dense start keeps (1 − a)^t of them, until the
next round would pass the target; the last round prunes to it exactly. Each
round measures per-layer distortion curves on a calibration batch
(`sparse.allocate.distortion_curves`), allocates the round's budget across
layers (`sparse.allocate`, DP by default), prunes by magnitude within the
current masks (masks only shrink) and fine-tunes with the masks fixed — the
iterative schedule of the rate–distortion pruning paper
(`docs/algorithms.md` §6).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from flax import nnx

from launch.data import Dataset
from launch.train import SparseTraining, TrainConfig, TrainResult, split_accuracy, train
from search import engine
from sparse import allocate as alloc
from sparse import masks as masklib


@dataclasses.dataclass
class PruneResult:
    model: nnx.Module
    masks: dict                      # {kernel name: bool mask} of the compact model
    sparsity: dict                   # final per-kernel sparsity
    rounds: list[dict]               # per round: budget, allocated levels, accuracies
    val_accuracy: float
    test_accuracy: float


def round_budgets(start: int, keep: int, rate: float = 0.2) -> list[int]:
    """Weights kept after each pruning round from `start` to `keep`: start·(1 − rate)^t
    while above `keep`, then exactly `keep`."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"pruning rate must be in (0, 1), got {rate!r}")
    budgets = []
    while (budget := int(round(start * (1.0 - rate) ** (len(budgets) + 1)))) > keep:
        budgets.append(budget)
    return budgets + [keep]


def prune(model: nnx.Module, data: Dataset, names, keep: int, *, allocation: str = "dp",
          grid: int = 50, rate: float = 0.2, calibration: int = 1024, finetune: TrainConfig | None = None,
          final: TrainConfig | None = None, masks: dict | None = None, progress: bool = False,
          seed: int = 0, stop=None) -> PruneResult:
    """Prune `model`'s kernels `names` until at most `keep` of their weights survive.

    `masks` are the model's current masks (default: its nonzero pattern); with
    `finetune`, each round fine-tunes under the round's masks, the last one
    with `final` when given (recovery at the target sparsity takes longest). `stop` goes
    to `train` (called between steps; raises to abandon).
    """
    graphdef, params, rest = engine.split(model)
    leaves = masklib.named_leaves(params)
    names = [n for n in names if n in leaves]
    if not names:
        raise ValueError("no prunable kernel of the compact model matches the supernet's")
    shapes = {n: tuple(leaves[n].shape) for n in names}
    sizes = np.array([math.prod(s) for s in shapes.values()])
    if masks is None:
        masks = {n: np.asarray(leaves[n]) != 0 for n in names}
    probs = model.space.encode(None)

    def logits(p, x):
        return engine.apply(graphdef, p, rest, x, probs, train=False)[0]

    calib, _ = data.sample(data.train, calibration, seed)
    start = sum(int(np.sum(masks[n])) for n in names)
    levels = alloc.grid_levels(grid, 1.0 - keep / sizes.sum())
    history, result = [], None
    budgets = round_budgets(start, keep, rate)
    for r, budget in enumerate(budgets, start=1):
        params = nnx.state(model, nnx.Param)
        weights = masklib.kernels(masklib.apply(params, masks), names)
        curves = alloc.distortion_curves(logits, params, names, levels, calib, masks)
        chosen = alloc.allocate(allocation, levels, sizes, budget, distortion=curves,
                                weights=[np.asarray(weights[n]) for n in names],
                                shapes=shapes)
        masks = {n: np.asarray(m) for n, m in alloc.magnitude_masks(weights, dict(zip(names, chosen)),
                                                                     masks).items()}
        nnx.update(model, masklib.apply(params, masks))
        record = {"round": r, "budget": budget, "kept": sum(int(m.sum()) for m in masks.values()),
                  "levels": {n: float(s) for n, s in zip(names, chosen)}}
        schedule = final if r == len(budgets) and final is not None else finetune
        if schedule is not None and schedule.epochs > 0:
            result = train(model, data, schedule, progress=progress,
                           sparse=SparseTraining("static", masks=masks), stop=stop)
            masks = result.masks
            record.update(val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy)
        history.append(record)
    if result is None:
        result = TrainResult(model, [], split_accuracy(model, data, data.val),
                             split_accuracy(model, data, data.test), 0.0, masks)
    sparsity = {n: 1.0 - float(np.sum(masks[n])) / masks[n].size for n in names}
    return PruneResult(model, masks, sparsity, history, result.val_accuracy, result.test_accuracy)
