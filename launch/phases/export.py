"""Export phase: the chosen candidate as RUN_DIR/best/, plots and the report.

The candidate with the best validation accuracy is chosen. best/ holds
arch.json (choices, costs, metrics, what the search cost over every process
of the run) and the compact weights (Orbax); a sparse run adds the COO
storage and, where the space describes its layer chain, best/compact/ (the
smaller dense model without dead units). Only the writing process writes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import nas
import spaces
import sparse
from launch import __version__ as VERSION
from launch import config as configs
from launch import costs, export, phases, plots, report, rounds
from launch.checkpoints import RunState
from launch.files import write_json_atomic, write_text_atomic
from launch.phases import retrain, search, supernet
from launch.train import TrainConfig
from nas import surgery
from search.parallel import local_copy
from sparse import masks as masklib

NAME = "export"


def _export_sparse(best_dir: Path, model: nnx.Module, names: list[str], info: dict) -> dict:
    """The two extra forms of a sparse export: compressed storage (COO, `sparse.storage`)
    and, where the space describes its layer chain, the smaller dense model without
    dead units (`nas.surgery`) as a second export directory `best/compact/`."""
    ratios = sparse.storage.save(best_dir / "sparse_weights.npz", nnx.state(model, nnx.Param), names)
    sizes = {n: v["size"] for n, v in info["sparsity"]["layers"].items()}
    out = {"coo_file": "sparse_weights.npz",
           "coo_bytes_vs_dense": sum(ratios[n] * sizes[n] for n in ratios) / sum(sizes[n] for n in ratios)}
    if not hasattr(model.space, "unit_chain"):
        out["compact"] = None
        return out
    smaller = surgery.remove_dead_units(model)
    fixed = smaller.space
    choices = {k: v[0] for k, v in fixed.choices.items()}
    space_config = spaces.get(fixed.name, **fixed.config).bind(fixed.input_shape, fixed.num_classes)
    compact_info = {"space": fixed.name, "choices": choices, "params": nas.count_params(smaller),
                    "flops": fixed.flops(choices), "space_config": space_config.to_dict(),
                    "derived_from": "../arch.json (dead units removed; same outputs)",
                    **{k: info[k] for k in ("standardization", "plugins") if k in info},
                    "engine": f"jaxnas {VERSION}"}
    export.save(best_dir / "compact", smaller, compact_info)
    out["compact"] = {"dir": "compact", "params": compact_info["params"], "flops": compact_info["flops"]}
    return out


def _sparsity_info(ctx, chosen: retrain.Retrained) -> dict:
    """arch.json's sparse part, counted from the exported weights' masks."""
    params = nnx.state(chosen.model, nnx.Param)
    counted = masklib.summary(params, chosen.masks)
    arch = chosen.arch
    target = {k: v for k, v in arch.items() if k not in ctx.space.structure(arch)}
    return {
        "nonzero_params": counted["nonzero_params"],
        "sparsity": {
            "target": target or ctx.sparse.target, "allocation": ctx.cfg.sparse.allocation,
            "supernet_method": ctx.cfg.sparse.method,
            "prunable_params": counted["prunable_params"], "prunable_nonzero": counted["prunable_nonzero"],
            "prunable_sparsity": counted["prunable_sparsity"], "overall_sparsity": counted["sparsity"],
            "layers": counted["layers"], "rounds": chosen.rounds,
        },
    }


def _cost(ctx, state: RunState) -> dict:
    seconds = ctx.clock.snapshot()
    return {
        "supernet_seconds": round(seconds.get(supernet.NAME, 0.0), 1),
        "supernet_steps": state.meta[supernet.NAME]["step"],
        **supernet.cost(ctx, state),
        "search_seconds": round(seconds.get(search.NAME, 0.0), 1),
        "search_evaluations": len(search.evaluated(ctx, state)),
        "retrain_seconds": round(seconds.get(retrain.NAME, 0.0), 1),
        "retrained_candidates": len(retrain.results(state)),
        "total_seconds": round(sum(seconds.values()), 1),
        "processes": state.meta.get("processes", 1),
    }


def _info(ctx, state: RunState, chosen: retrain.Retrained) -> dict:
    cfg, space = ctx.cfg, ctx.space
    structural = space.structure(chosen.arch)
    ctrl = search.controller(ctx)
    return {
        "space": space.name, "choices": structural,
        "params": ctx.retrain_space.params(structural), "flops": ctx.retrain_space.flops(structural),
        "metrics": {"test_accuracy": chosen.test_accuracy, "val_accuracy": chosen.val_accuracy,
                    "supernet_val_accuracy": chosen.supernet_accuracy},
        "search": {"method": cfg.supernet.method,
                   "controller": ctrl.name if ctrl is not None else "argmax",
                   "budget": {k: getattr(cfg.search, k) for k in ("max_params", "min_params", "max_flops")},
                   "candidates": [{"choices": r["choices"], "params": space.params(r["choices"]),
                                   **_sub_supernet(ctx, state, r["choices"]),
                                   "supernet_val_accuracy": r["supernet_accuracy"],
                                   "val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
                                   "dense_test_accuracy": r["dense_test_accuracy"], "source": r["source"]}
                                  for r in retrain.results(state)],
                   "predictor": cfg.search.predictor,
                   **({"split": supernet.tree(state).to_dict()} if supernet.is_split(ctx) else {})},
        "baseline": baseline_comparison(ctx, state, chosen),
        "cost": _cost(ctx, state), "data": cfg.data.name,
        "retrain": dataclasses.asdict(TrainConfig.from_config(cfg)),
        "space_config": ctx.retrain_space.to_dict(), **export.preprocessing(ctx.data),
        "plugins": cfg.plugins, "engine": f"jaxnas {VERSION}",
    }


def baseline_comparison(ctx, state: RunState, chosen: retrain.Retrained) -> dict:
    """What the params baseline ("the largest networks within the budget", as many as
    `search.candidates`) would have picked, and the pick's validation accuracy against
    the best of the baseline's picks this run retrained."""
    space, records = ctx.space, retrain.results(state)
    measured = {rounds.key(space, r["choices"]): r["val_accuracy"] for r in records}
    picks = [{"choices": a, "params": space.params(a), "val_accuracy": measured.get(rounds.key(space, a))}
             for a in retrain.baseline(state)]
    known = [p["val_accuracy"] for p in picks if p["val_accuracy"] is not None]
    searched = [r["val_accuracy"] for r in records if r["source"] != "baseline"]
    best = max(known) if known else None
    return {"picks": picks, "retrained": len(known), "best_val_accuracy": best,
            "search_best_val_accuracy": max(searched) if searched else None,
            "pick_val_accuracy": chosen.val_accuracy,
            "pick_minus_baseline": None if best is None else chosen.val_accuracy - best}


def _sub_supernet(ctx, state: RunState, arch: dict) -> dict:
    """{"sub_supernet": i}: which sub-supernet of a split run scored `arch` (nothing without splits)."""
    if not supernet.is_split(ctx):
        return {}
    return {"sub_supernet": search.sub_supernet_of(ctx, state, arch)}


def trajectory_title(cfg, space_name: str, controller_name: str) -> str:
    """"space · what scored the archs · controller": the supernet method, or for a
    zero-training search the proxy (no supernet was trained)."""
    scored_by = f"{cfg.search.evaluator} at init" if configs.uses_proxy(cfg) else cfg.supernet.method
    return f"{space_name} · {scored_by} · {controller_name}"


def _plots(ctx, state: RunState, chosen: retrain.Retrained, controller_name: str) -> None:
    cfg, space, setup = ctx.cfg, ctx.space, ctx.sparse
    plots.trajectory(ctx.run_dir / "trajectory.png", ctx.log.phase(supernet.NAME), ctx.log.phase(search.NAME),
                     title=trajectory_title(cfg, space.name, controller_name),
                     score=configs.score_label(cfg))
    size_name = "nonzero" if setup else "params"
    plots.pareto(ctx.run_dir / "pareto.png",
                 [(costs.cost(space, a, size_name, setup), acc) for a, acc in search.evaluated(ctx, state)],
                 (costs.cost(space, chosen.arch, size_name, setup), chosen.supernet_accuracy),
                 budget=cfg.search.max_nonzero if setup else cfg.search.max_params,
                 xlabel="nonzero parameters" if setup else "parameters", score=configs.score_label(cfg))
    if supernet.is_split(ctx):
        plots.split_matrices(ctx.run_dir / "splits.png", supernet.tree(state).splits)


def summary(ctx, info: dict, chosen_record: dict) -> report.Summary:
    sparse_run = ctx.sparse is not None
    return report.Summary(chosen_record["choices"], info["params"], info["flops"],
                          info["metrics"]["val_accuracy"], info["metrics"]["test_accuracy"], info["cost"],
                          ctx.run_dir, info["baseline"], chosen_record["source"], chosen_record["seconds"],
                          info.get("nonzero_params"),
                          chosen_record["dense_test_accuracy"] if sparse_run else None,
                          len(chosen_record["rounds"]) if sparse_run else None)


def chosen_index(ctx, state: RunState) -> int:
    """The retrained candidate with the best validation accuracy; of ties the smallest
    (`retrain.network_size`), then the first. So the pick is never dominated by another candidate
    (as accurate and smaller)."""
    records = retrain.results(state)
    return max(range(len(records)), key=lambda i: (records[i]["val_accuracy"],
                                                   -retrain.network_size(ctx, records[i]["choices"]), -i))


def write(ctx, state: RunState, chosen: retrain.Retrained, directory: Path, picked: str = "best") -> dict:
    """Write `chosen` as an export directory (weights, arch.json, and a sparse run's COO
    storage and compact model); returns its arch.json."""
    info = {**_info(ctx, state, chosen), "picked": picked}
    if ctx.sparse is not None:
        info.update(_sparsity_info(ctx, chosen))
    export.save(directory, chosen.model, info)
    if ctx.sparse is not None:
        info["export"] = _export_sparse(directory, chosen.model, list(chosen.masks), info)
        write_json_atomic(directory / "arch.json", info)
    return info


def run(ctx, state: RunState) -> RunState:
    if state.done(NAME):
        return state
    index = chosen_index(ctx, state)
    if ctx.parallel.is_writer:
        chosen = retrain.load_candidate(ctx, index)
        info = write(ctx, state, chosen, ctx.run_dir / "best")
        _plots(ctx, state, chosen, info["search"]["controller"])
        # A proxy search trains no α: its collapse lines would describe the initial logits;
        # a split run has one α per sub-supernet.
        alpha = None if configs.uses_proxy(ctx.cfg) or supernet.is_split(ctx) else \
            state.arrays[supernet.NAME].get("alpha")
        text = report.report(summary(ctx, info, retrain.results(state)[index]), ctx.space, ctx.cfg,
                             None if alpha is None else jax.tree.map(np.asarray, local_copy(alpha)),
                             split=supernet.tree(state))
        write_text_atomic(ctx.run_dir / "report.txt", text)
    return phases.finish(ctx, state, NAME)
