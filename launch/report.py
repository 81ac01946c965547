"""The report a run prints and writes (report.txt), and its summary."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from launch import config as configs


@dataclasses.dataclass
class Summary:
    arch: dict
    params: int
    flops: int
    val_accuracy: float
    test_accuracy: float
    cost: dict
    run_dir: Path
    baseline: dict                          # arch.json's "baseline" (`export.baseline_comparison`)
    source: str                             # where the pick came from: search, predictor, baseline
    train_seconds: float | None             # retraining the pick once
    nonzero_params: int | None = None       # sparse searches
    dense_test_accuracy: float | None = None  # sparse searches: the pick before pruning
    prune_rounds: int | None = None         # sparse searches: prune-then-fine-tune rounds



def cheapest_decisions(space, arch) -> list[str]:
    """The decisions of `arch` on their cheapest option: fewest parameters with the
    other decisions held (parameter-free ops, smallest widths). Decisions whose
    options all cost the same are never counted."""
    out = []
    for name, options in space.choices.items():
        costs = [space.params({**arch, name: option}) for option in options]
        if min(costs) < max(costs) and costs[options.index(arch[name])] == min(costs):
            out.append(name)
    return out


def collapse_lines(space, arch, alpha) -> list[str]:
    """How decided the gradient search was, and a warning when it drifted toward the
    cheapest arch (DARTS' failure mode: parameter-free ops win the edges)."""
    confidence = [float(np.max(np.asarray(jax.nn.softmax(v)))) for v in alpha.values()]
    lines = [f"  α: argmax holds {np.mean(confidence):.0%} of the softmax mass on average "
             f"(min {min(confidence):.0%}) over {len(confidence)} decisions"]
    cheapest = cheapest_decisions(space, arch)
    priced = [n for n, o in space.choices.items() if len({space.params({**arch, n: v}) for v in o}) > 1]
    if priced and 2 * len(cheapest) >= len(priced):
        lines.append(f"  warning: {len(cheapest)} of {len(priced)} decisions chose their cheapest option "
                     f"(parameter-free ops, smallest widths: {', '.join(cheapest)}), the collapse "
                     "gradient searches are known for; compare with a sampled search")
    return lines


def baseline_lines(summary: Summary, cfg: configs.Config) -> list[str]:
    """What the params baseline would have picked and how the pick compares on validation."""
    b = summary.baseline
    sizes = [p["params"] for p in b["picks"]]
    if not sizes:
        return []
    head = (f"  params baseline (the {len(sizes)} largest networks within the budget, "
            f"{max(sizes):,}–{min(sizes):,} params): ")
    if b["best_val_accuracy"] is None:
        return [head + "none retrained by this run (search.baseline: true retrains them)"]
    retrained = (f"{b['retrained']} of {len(sizes)} retrained" +
                 ("" if b["retrained"] == len(sizes) else ", the others not (search.baseline: true)"))
    searched = "" if b["search_best_val_accuracy"] is None else \
        f"; the search's own best {b['search_best_val_accuracy']:.4f}"
    return [head + f"best val accuracy {b['best_val_accuracy']:.4f} ({retrained}); the pick "
            f"{b['pick_val_accuracy']:.4f} ({100 * b['pick_minus_baseline']:+.2f} points, from the "
            f"{summary.source}){searched}"]


def report(summary: Summary, space, cfg: configs.Config, alpha=None, split=None) -> str:
    """The run's report; `split`: its split tree (`search.splits.SplitTree`), if any."""
    c = summary.cost
    trained = (f"{c['sub_supernets']} sub-supernets, {c['supernet_epochs']:g} sub-supernet epochs in all"
               if split is not None else f"{cfg.supernet.epochs} epochs")
    budget = ", ".join(f"{k} ≤ {v:,}" if k.startswith("max") else f"{k} ≥ {v:,}"
                       for k, v in (("max_params", cfg.search.max_params),
                                    ("min_params", cfg.search.min_params),
                                    ("max_flops", cfg.search.max_flops)) if v is not None)
    lines = [
        f"best arch ({space.name}): {json.dumps(summary.arch)}",
        f"  params {summary.params:,}, FLOPs {summary.flops:,}" + (f"  (budget: {budget})"
                                                                   if budget else ""),
        f"  retrained {cfg.retrain.epochs} epochs ({cfg.retrain.mode}): val accuracy "
        f"{summary.val_accuracy:.4f}, test accuracy {summary.test_accuracy:.4f}",
        *([f"  sparse: {summary.nonzero_params:,} nonzero of {summary.params:,} parameters "
           f"({1 - summary.nonzero_params / summary.params:.1%} zeros; allocation "
           f"{cfg.sparse.allocation}, {summary.prune_rounds} rounds); the dense pick before pruning "
           f"tested {summary.dense_test_accuracy:.4f}"] if summary.nonzero_params is not None else []),
        *baseline_lines(summary, cfg),
        *(collapse_lines(space, summary.arch, alpha) if alpha is not None else []),
        ("search cost: no supernet, search " if configs.uses_proxy(cfg) else
         f"search cost: supernet {c['supernet_seconds']:.0f} s ({trained}, "
         f"{c['supernet_steps']:,} steps, {cfg.supernet.method}), search ") +
        f"{c['search_seconds']:.0f} s ({c['search_evaluations']:,} archs evaluated: "
        f"{configs.score_label(cfg)}), retrain {c['retrain_seconds']:.0f} s ({c['retrained_candidates']} "
        f"candidates); total {c['total_seconds']:.0f} s" +
        (f", {c['total_seconds'] / summary.train_seconds:.1f}× training the pick once"
         if summary.train_seconds else ""),
        *([f"  the pick is the best of {c['sub_supernets']} sub-supernets' searches; split tree:",
           *("    " + line for line in split.describe().splitlines())] if split is not None else []),
        f"wrote {summary.run_dir / 'best'} (arch.json + Orbax weights), trajectory.png, pareto.png"
        + (", splits.png" if split is not None else ""),
    ]
    return "\n".join(lines)
