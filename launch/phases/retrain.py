"""Retrain phase: train the top distinct candidates again (from scratch or from inherited
weights), prune sparse ones to their budget, and test them.

The candidates (`launch.rounds`): the params baseline's picks when `search.baseline`
asks for them, then the search's top `search.candidates` by its score, or, with a
`search.predictor`, rounds of `search.round` picked by the predictor fitted on every
candidate retrained before them.

Its slice of the run state is `meta["retrain"]`: the baseline's picks, the
candidates (arch, search score, source), the predictor's pool and features, and the
results of those finished. Each finished candidate is also an export
directory, RUN_DIR/retrain/<i>/ (arch.json with its record, weights/, and the
masks of a sparse one), so a resumed run skips it and the export phase loads
the chosen one. A candidate interrupted mid-training is trained again from
its start (its training is a function of the seed: the result is the same); a stop
request saves the state without it at the next training step and abandons it.
"""
from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
from flax import nnx

import nas
from launch import __version__ as VERSION
from launch import config as configs
from launch import costs, export, phases, rounds
from launch.checkpoints import RunState
from launch.phases import search, supernet
from launch.prune import prune
from launch.train import SparseTraining, TrainConfig, train
from sparse import masks as masklib

NAME = "retrain"


@dataclasses.dataclass
class Retrained:
    """One retrained candidate; for sparse searches, after pruning and fine-tuning."""
    arch: dict                          # canonical choices (with sparsity choices when searched)
    supernet_accuracy: float
    model: nnx.Module
    val_accuracy: float
    test_accuracy: float
    dense_val_accuracy: float
    dense_test_accuracy: float
    masks: dict | None = None           # sparse: the export's masks {kernel: bool array}
    rounds: list | None = None          # sparse: the prune-then-fine-tune rounds


def network_size(ctx, arch: dict) -> int:
    """What ties are broken by: an arch's parameters (its nonzeros in a sparse run)."""
    return costs.cost(ctx.space, arch, "nonzero" if ctx.sparse is not None else "params", ctx.sparse)


def top_candidates(space, evaluated: list[tuple[dict, float]], k: int,
                   size=None) -> list[tuple[dict, float]]:
    """The `k` best distinct networks, each in canonical form (`Space.canonical`): two
    encodings of one network are retrained once. Of networks that tie on score the
    smaller (`size(arch)`, e.g. its parameters) comes first."""
    seen, out = set(), []
    size = size or (lambda arch: 0)
    for arch, acc in sorted(evaluated, key=lambda item: (-item[1], size(item[0]))):
        network = space.canonical(arch)
        key = tuple(network.items())
        if key not in seen:
            seen.add(key)
            out.append((network, acc))
        if len(out) == k:
            break
    return out


def finetune_config(cfg, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=cfg.sparse.finetune_epochs if epochs is None else epochs,
                       batch_size=cfg.retrain.batch_size,
                       learning_rate=cfg.sparse.finetune_learning_rate, warmup_epochs=0.0,
                       weight_decay=cfg.retrain.weight_decay, seed=cfg.seed)


def _nonzero_masks(model: nnx.Module, setup) -> dict | None:
    """Masks of the nonzero inherited weights of the prunable kernels (None when dense)."""
    if setup is None:
        return None
    leaves = masklib.named_leaves(nnx.state(model, nnx.Param))
    return {n: np.asarray(leaves[n]) != 0 for n in setup.names if n in leaves}


def train_candidate(ctx, state: RunState, arch: dict, supernet_accuracy: float) -> Retrained:
    """Retrain `arch` as the config says (scratch or finetune; pruned when sparse)."""
    cfg, space, setup = ctx.cfg, ctx.space, ctx.sparse
    structural = space.structure(arch)
    stop = functools.partial(phases.stop_point, ctx, state)
    if cfg.retrain.mode == "scratch":
        model = nas.supernet(ctx.retrain_space.fix(structural), seed=cfg.seed, dtype=cfg.precision.compute)
        inherited = None
    else:
        model = nas.extract(supernet.model_at(ctx, state, arch), structural)
        inherited = _nonzero_masks(model, setup)
    result = train(model, ctx.data, TrainConfig.from_config(cfg), progress=ctx.progress,
                   sparse=SparseTraining("static", masks=inherited) if inherited else None,
                   parallel=ctx.parallel, stop=stop)
    out = Retrained(arch, supernet_accuracy, result.model, result.val_accuracy, result.test_accuracy,
                    result.val_accuracy, result.test_accuracy)
    if setup is None:
        return out
    pruned = prune(result.model, ctx.data, setup.names, setup.keep(space, arch),
                   allocation=cfg.sparse.allocation, grid=cfg.sparse.grid, rate=cfg.sparse.prune_rate,
                   calibration=cfg.sparse.calibration, finetune=finetune_config(cfg),
                   final=finetune_config(cfg, cfg.sparse.final_epochs), masks=result.masks,
                   progress=ctx.progress, seed=cfg.seed, stop=stop)
    return dataclasses.replace(out, model=pruned.model, val_accuracy=pruned.val_accuracy,
                               test_accuracy=pruned.test_accuracy, masks=pruned.masks,
                               rounds=pruned.rounds)


def _record(r: Retrained, source: str = "search", seconds: float | None = None) -> dict:
    return {"choices": r.arch, "supernet_accuracy": r.supernet_accuracy, "val_accuracy": r.val_accuracy,
            "test_accuracy": r.test_accuracy, "dense_val_accuracy": r.dense_val_accuracy,
            "dense_test_accuracy": r.dense_test_accuracy, "rounds": r.rounds, "source": source,
            "seconds": seconds}


def _save_candidate(ctx, directory, r: Retrained) -> None:
    structural = ctx.space.structure(r.arch)
    export.save(directory, r.model, {
        "space": ctx.space.name, "choices": structural, "space_config": ctx.retrain_space.to_dict(),
        "record": _record(r), **export.preprocessing(ctx.data), "plugins": ctx.cfg.plugins,
        "engine": f"jaxnas {VERSION}"})
    if r.masks is not None:
        np.savez(directory / "masks.npz", **r.masks)


def load_candidate(ctx, index: int) -> Retrained:
    """Finished candidate `index` as the retrain phase left it."""
    directory = ctx.run_dir / NAME / str(index)
    record = json.loads((directory / "arch.json").read_text())["record"]
    _, _, model = export.load(directory)
    masks = None
    if (directory / "masks.npz").exists():
        with np.load(directory / "masks.npz") as f:
            masks = {n: f[n] for n in f.files}
    return Retrained(record["choices"], record["supernet_accuracy"], model, record["val_accuracy"],
                     record["test_accuracy"], record["dense_val_accuracy"],
                     record["dense_test_accuracy"], masks, record["rounds"])


def results(state: RunState) -> list[dict]:
    """The records of the finished candidates, in order."""
    return state.meta[NAME]["results"]


def baseline(state: RunState) -> list[dict]:
    """The params baseline's picks: the `search.candidates` largest networks within the budget."""
    return state.meta[NAME]["baseline"]


def _plan(ctx, state: RunState, meta: dict) -> None:
    """The candidates known before any training: the baseline's (`search.baseline`), then,
    without a predictor, the search's top distinct networks not among them."""
    cfg, size = ctx.cfg.search, functools.partial(network_size, ctx)
    picks = rounds.largest_within_budget(ctx, state, cfg.candidates, size)
    meta.update(baseline=picks, candidates=[], results=[])
    if cfg.baseline:
        scores = search.score(ctx, state, picks)
        meta["candidates"] = [(a, float(s), "baseline") for a, s in zip(picks, scores)]
    if cfg.predictor == "none":
        planned = {rounds.key(ctx.space, a) for a, _, _ in meta["candidates"]}
        top = top_candidates(ctx.space, search.evaluated(ctx, state), cfg.candidates + len(planned), size)
        meta["candidates"] += [(a, s, "search") for a, s in top
                               if rounds.key(ctx.space, a) not in planned][:cfg.candidates]


def _next_round(ctx, state: RunState, meta: dict) -> list:
    """The predictor's next round of candidates (empty once `search.candidates` are spent)."""
    cfg = ctx.cfg.search
    searched = sum(source != "baseline" for _, _, source in meta["candidates"])
    if cfg.predictor == "none" or searched >= cfg.candidates:
        return []
    if "pool" not in meta:
        archs, scores = rounds.pool(ctx, state, baseline(state))
        ctx.say(f"predictor ({cfg.predictor}): features {', '.join(cfg.features)} of {len(archs):,} networks")
        meta["pool"] = {"archs": archs, "scores": scores,
                        "columns": rounds.feature_columns(ctx, archs, scores)}
    pool = meta["pool"]
    measured = {rounds.key(ctx.space, r["choices"]): r["val_accuracy"] for r in meta["results"]}
    planned = {rounds.key(ctx.space, a) for a, _, _ in meta["candidates"]}
    source = "predictor" if len(measured) >= 2 else "search"
    if source == "predictor":
        best = max(meta["results"], key=lambda r: r["val_accuracy"])["choices"]
        added = rounds.grow(ctx, state, pool, rounds.neighbours_within(ctx, best))
        if added:
            ctx.say(f"predictor: {added} neighbours of the best measured network join the pool")
    picked = rounds.next_round(ctx, pool["archs"], pool["scores"],
                               rounds.features(ctx, pool["archs"], pool["columns"]), measured, planned,
                               min(cfg.round, cfg.candidates - searched))
    return [(a, s, source) for a, s in picked]


def run(ctx, state: RunState) -> RunState:
    if state.done(NAME):
        return state
    meta = state.meta.setdefault(NAME, {})
    if "candidates" not in meta:
        _plan(ctx, state, meta)
    ctx.clock.start(NAME)
    while True:
        candidates = meta["candidates"]
        for i in range(len(meta["results"]), len(candidates)):
            arch, supernet_accuracy, source = candidates[i]
            size = (f"{ctx.sparse.nonzero(ctx.space, arch):,} nonzero of {ctx.space.params(arch):,} params"
                    if ctx.sparse else f"{ctx.space.params(arch):,} params")
            ctx.say(f"retrain {i + 1} ({source}, {ctx.cfg.retrain.mode}): {json.dumps(arch)} — "
                    f"{size}, {configs.score_label(ctx.cfg)} {supernet_accuracy:.4g}")
            seconds = ctx.clock.read(NAME)
            outcome = train_candidate(ctx, state, arch, supernet_accuracy)
            seconds = round(ctx.clock.read(NAME) - seconds, 1)
            if ctx.parallel.is_writer:
                _save_candidate(ctx, ctx.run_dir / NAME / str(i), outcome)
            row = {"supernet_accuracy": supernet_accuracy, "params": ctx.space.params(arch)}
            if ctx.sparse is not None:
                row.update(dense_val_accuracy=outcome.dense_val_accuracy,
                           dense_test_accuracy=outcome.dense_test_accuracy,
                           nonzero=ctx.sparse.nonzero(ctx.space, arch))
            ctx.log.log(NAME, i + 1, **row, val_accuracy=outcome.val_accuracy,
                        test_accuracy=outcome.test_accuracy, seconds=seconds)
            meta["results"].append(_record(outcome, source, seconds))
            if i + 1 < len(candidates) or ctx.cfg.search.predictor != "none":
                phases.checkpoint(ctx, state, force=True)  # a candidate is worth a save
        more = _next_round(ctx, state, meta)
        if not more:
            break
        candidates.extend(more)
    ctx.clock.stop(NAME)
    return phases.finish(ctx, state, NAME)
