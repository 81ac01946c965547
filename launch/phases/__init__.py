"""The phases of a run, in order. Each module has `NAME` and `run(ctx, state) -> state`.

A phase resumes itself from its slice of the `RunState` (`state.meta[NAME]`,
`state.arrays[NAME]`), saves through `checkpoint` as it goes and with `finish`
at its end, and reads other phases' slices only through their public
functions (e.g. `supernet.weights`).
"""
from __future__ import annotations

from launch.checkpoints import RunState


def _stamp(ctx, state: RunState) -> None:
    """What every checkpoint records besides the phases' own progress."""
    state.meta["seconds"] = ctx.clock.snapshot()
    state.meta["log_rows"] = ctx.log.rows


def _save(ctx, state: RunState, metrics: dict | None = None) -> None:
    _stamp(ctx, state)
    step = ctx.checkpoints.save(state, metrics)
    if ctx.on_save is not None:
        ctx.on_save(ctx, state, step)


def checkpoint(ctx, state: RunState, sync=None, units: int = 1, metrics: dict | None = None,
               force: bool = False) -> None:
    """Count `units` of progress; when the policy says so (or `force`) or a stop was requested,
    first `sync()` (the phase writes its progress into `state`), then save; after a stop
    request, raise `launch.checkpoints.Stopped`. A run with an `on_save` reporter (a Ray Tune
    trial) also saves as soon as a metrics row was logged after the last save, so that each row
    it reports comes with the checkpoint holding it."""
    due = ctx.checkpoints.due(units)
    logged = ctx.on_save is not None and ctx.log.rows > state.meta.get("log_rows", 0)
    if not (due or force or logged):
        return
    if sync is not None:
        sync()
    _save(ctx, state, metrics)
    ctx.checkpoints.raise_if_stopped()


def stop_point(ctx, state: RunState) -> None:
    """For loops that cannot save their own progress (a candidate's training): on a stop
    request save the state as it is (the clock and this process counted) and raise
    `launch.checkpoints.Stopped`; the interrupted work is redone on resume."""
    if ctx.checkpoints.stop_requested() is not None:
        _save(ctx, state)
        ctx.checkpoints.raise_if_stopped()


def finish(ctx, state: RunState, name: str, metrics: dict | None = None) -> RunState:
    """Mark phase `name` done and save."""
    state.finish(name)
    _save(ctx, state, metrics)
    return state
