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


def checkpoint(ctx, state: RunState, sync=None, units: int = 1, metrics: dict | None = None,
               force: bool = False) -> None:
    """Count `units` of progress; when the policy says so (or `force`) or a stop was requested,
    first `sync()` (the phase writes its progress into `state`), then save; after a stop
    request, raise `launch.checkpoints.Stopped`."""
    if not (ctx.checkpoints.due(units) or force):
        return
    if sync is not None:
        sync()
    _stamp(ctx, state)
    ctx.checkpoints.save(state, metrics)
    ctx.checkpoints.raise_if_stopped()


def stop_point(ctx, state: RunState) -> None:
    """For loops that cannot save their own progress (a candidate's training): on a stop
    request save the state as it is (the clock and this process counted) and raise
    `launch.checkpoints.Stopped`; the interrupted work is redone on resume."""
    if ctx.checkpoints.stop_requested() is not None:
        _stamp(ctx, state)
        ctx.checkpoints.save(state)
        ctx.checkpoints.raise_if_stopped()


def finish(ctx, state: RunState, name: str, metrics: dict | None = None) -> RunState:
    """Mark phase `name` done and save."""
    state.finish(name)
    _stamp(ctx, state)
    ctx.checkpoints.save(state, metrics)
    return state
