"""`nas search` and `nas resume`: a run is a pipeline of phases over one run state.

    ctx   = setup(cfg, run_dir)                    # data, spaces, budget, devices, log, checkpoints
    state = latest checkpoint, or a fresh state
    for phase in (supernet, search, retrain, export):    # launch/phases/<name>.py
        state = phase.run(ctx, state)              # resumes itself; saves as it goes and at its end

    RUN_DIR/config.yaml        the validated config (with every default spelled out)
    RUN_DIR/checkpoints/       Orbax checkpoints of the whole run state (resume points)
    RUN_DIR/metrics.jsonl      one JSON record per supernet epoch / search generation / retrain
    RUN_DIR/tensorboard/       the same scalars as TensorBoard events
    RUN_DIR/search_state.json  the controller's state (history with scores)
    RUN_DIR/retrain/<i>/       each retrained candidate (an export directory)
    RUN_DIR/trajectory.png     supernet loss and search progress
    RUN_DIR/pareto.png         accuracy against params of every evaluated arch
    RUN_DIR/best/arch.json     the chosen arch, its costs, metrics and what the search cost
    RUN_DIR/best/weights/      the retrained compact model (Orbax)

`nas resume RUN_DIR` (or the same `nas search` into the same run dir) continues
from the newest readable checkpoint and ends exactly where an uninterrupted run
ends. SIGTERM or SIGINT saves a checkpoint and exits with status 0.

Sparse searches (`sparse.sparsity` or `sparse.levels`): the supernet trains
with a DST updater (masks in the optimizer state, checkpointed with it), so
sub-networks inherit sparse weights; with `levels` each arch also chooses its
sparsity (`sparse.levels`), and budgets and objectives can count nonzero
parameters. Each retrained candidate is then pruned to its sparsity with the
configured per-layer allocation (DP by default) and fine-tuned sparse
(`launch.prune`); the export holds exact zeros and arch.json the per-layer
sparsity and `nonzero_params`.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax

import nas
from launch import config as configs
from launch import report
from launch.checkpoints import RunState, Stopped, StopSignal
from launch.context import Context, setup
from launch.phases import export, retrain, search, supernet

PHASES = (supernet, search, retrain, export)


def restore(ctx: Context) -> RunState:
    """The newest readable checkpoint of the run (the log cut back to its rows), or a fresh
    state (the log emptied: rows without a checkpoint belong to work done again)."""
    arrays, meta = supernet.init(ctx)  # also the restore target: shapes and shardings
    restored = ctx.checkpoints.restore(lambda saved: {supernet.NAME: supernet.layout(ctx, arrays, saved)},
                                       warn=ctx.say)
    if restored is None:
        ctx.log.truncate(0)
        return RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
    state, step = restored
    ctx.clock.restore(state.meta.get("seconds", {}))
    ctx.log.truncate(state.meta.get("log_rows", ctx.log.rows))
    ctx.say(f"resumed from checkpoint {step} ({', '.join(state.meta['phases_done']) or 'no phase'} "
            "done)")
    return state


def run_search(cfg: configs.Config, run_dir: Path, progress: bool = True,
               echo=print, on_save=None) -> report.Summary | None:
    """Run (or resume) the whole search of `cfg` in `run_dir`. Returns None when stopped by
    SIGTERM/SIGINT (after saving a checkpoint). `on_save(ctx, state, step)`: called after each
    checkpoint save (a Ray Tune trial reports there; `launch.context.Context.on_save`)."""
    # Multi-process runs leave SIGTERM to JAX's preemption service (all processes agree on
    # the step to stop at); a lone process handles SIGTERM and SIGINT itself.
    with StopSignal(handle=jax.process_count() == 1) as stop:
        ctx = setup(cfg, run_dir, progress, echo, stop=stop, on_save=on_save)
        try:
            ctx.say(ctx.data.summary())
            state = restore(ctx)
            state.meta["processes"] = state.meta.get("processes", 0) + 1
            ctx.say(f"space {ctx.space.name}: {ctx.space.size():,} architectures; supernet "
                    f"{nas.count_params(ctx.model):,} parameters; {_devices(ctx)}")
            try:
                for phase in PHASES:
                    state = phase.run(ctx, state)
            except Stopped as reason:
                ctx.say(f"stopped by {reason} after saving checkpoint {ctx.checkpoints.steps()[0]}; "
                        f"continue with: nas resume {run_dir}")
                return None
            text = (Path(run_dir) / "report.txt").read_text() if ctx.parallel.is_writer else ""
            ctx.say(text.rstrip("\n"))
            return summary(ctx, state)
        finally:
            ctx.close()


def _devices(ctx: Context) -> str:
    p = ctx.parallel
    hosts = f" over {p.num_processes} processes" if p.num_processes > 1 else ""
    return f"data parallel over {p.num_devices} {p.mesh.devices.flat[0].platform} device(s){hosts}"


def summary(ctx: Context, state: RunState) -> report.Summary:
    """The finished run's summary, read from best/arch.json."""
    info = json.loads((Path(ctx.run_dir) / "best" / "arch.json").read_text())
    return export.summary(ctx, info, retrain.results(state)[export.chosen_index(ctx, state)])


def resume(run_dir: Path, progress: bool = True, echo=print) -> report.Summary | None:
    """Continue the run in `run_dir` with the config stored there."""
    stored = Path(run_dir) / "config.yaml"
    if not stored.exists():
        raise ValueError(f"run dir {str(run_dir)!r} has no config.yaml: not a run directory "
                         "(`nas search` creates one)")
    return run_search(configs.load(stored), run_dir, progress, echo)


def export_arch(run_dir: Path, arch: dict, directory: Path, picked: str,
                progress: bool = True) -> retrain.Retrained:
    """Retrain `arch` the way run `run_dir` retrains its candidates (its config, its trained
    supernet for `finetune`, pruning for sparse runs) and write it as an export into
    `directory` (e.g. another point of the run's Pareto front)."""
    ctx = setup(configs.load(Path(run_dir) / "config.yaml"), run_dir, progress, read_only=True)
    try:
        state = restore(ctx)
        if not state.done(search.NAME):
            raise ValueError(f"run dir {str(run_dir)!r} has not finished its search; "
                             f"run `nas resume {run_dir}` first")
        search.measure(ctx, state)
        accuracy = {tuple(ctx.space.canonical(a).items()): s for a, s in search.evaluated(ctx, state)}
        arch = ctx.space.canonical(ctx.space.validate(arch))
        retrained = retrain.train_candidate(ctx, state, arch, accuracy.get(tuple(arch.items()), float("nan")))
        export.write(ctx, state, retrained, Path(directory), picked)
        return retrained
    finally:
        ctx.close()
