"""The run state, its Orbax checkpoints, and stopping cleanly.

A run's whole mutable state is one `RunState`: `arrays` (supernet params,
arch logits, optimizer and sparse states, PRNG key, the current epoch's
losses: saved with Orbax's StandardSave, restored onto the same shardings)
and `meta` (plain JSON: each phase's progress, the data cursor, the
controller state, retrain progress, the seconds each phase has cost, how many
metrics rows belong to the state). A checkpoint is both, committed atomically
by Orbax; saves are asynchronous (only the device-to-host copy blocks).

Every step carries, inside its own commit, the CRC-32 of each array's bytes
(`meta["array_crc"]`), so even the newest step of a killed run — written, but
not yet recorded below — is checked after restoring. Once a save has finished,
the writing process also records every file of the step with its size and
CRC-32 in `<step>/files.json`. `Checkpoints.restore` walks the committed steps
from the newest, checks them against both records, and reports a damaged step
naming the file (truncated, altered or missing) or the array, then tries the
previous step. A step Orbax itself cannot read, or whose record is unreadable,
is skipped the same way.
`StopSignal` turns SIGTERM/SIGINT into a flag the phases check between steps
(never saving from inside a handler); a phase that sees it saves and raises
`Stopped`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import signal
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as keep_policy


@dataclasses.dataclass
class RunState:
    arrays: dict      # pytree of arrays: {"supernet": {...}}
    meta: dict        # JSON: {"phases_done": [...], "<phase>": {...}, "seconds": {...}, "log_rows": n}

    def done(self, phase: str) -> bool:
        return phase in self.meta.setdefault("phases_done", [])

    def finish(self, phase: str) -> None:
        if not self.done(phase):
            self.meta["phases_done"].append(phase)


class Stopped(Exception):
    """A stop was requested (SIGTERM/SIGINT or a preemption notice); the state is saved."""


class CorruptCheckpoint(ValueError):
    """No committed checkpoint of the run could be read (a bad-input error: one line, exit 2)."""


class StopSignal:
    """SIGTERM and SIGINT set `requested` instead of killing the process (main thread only).
    Multi-process runs leave SIGTERM to JAX's preemption service, which makes every process
    stop at the same step (`CheckpointManager.reached_preemption`)."""

    def __init__(self, handle: bool = True):
        self.requested: str | None = None
        self.handle = handle
        self._previous: dict = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT) if self.handle else ():
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (a Ray worker, a test thread): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once (a save under way is finished)
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclasses.dataclass
class SavePolicy:
    """Save after `every_steps` units of a phase's progress or `every_seconds`, whichever first."""
    every_steps: int | None
    every_seconds: float | None
    last: float = dataclasses.field(default_factory=time.monotonic)
    units: int = 0

    def tick(self, units: int = 1) -> bool:
        """Count progress; True when a save is due (the caller then saves and calls `saved`)."""
        self.units += units
        if self.every_steps is not None and self.units >= self.every_steps:
            return True
        return self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds

    def saved(self) -> None:
        self.units, self.last = 0, time.monotonic()


class Checkpoints:
    """Orbax checkpoints of the run state in RUN_DIR/checkpoints: the last `keep`, plus the
    one with the lowest supernet loss."""

    def __init__(self, directory: Path, keep: int = 3, every_steps: int | None = None,
                 every_seconds: float | None = 300.0, is_writer: bool = True,
                 stop: StopSignal | None = None, read_only: bool = False):
        self.directory = Path(directory).absolute()
        policy = keep_policy.AnyPreservationPolicy([
            keep_policy.LatestN(keep),
            keep_policy.BestN(get_metric_fn=lambda m: m["supernet_loss"], reverse=True, n=1,
                              keep_checkpoints_without_metrics=False)])
        # Read-only (another command reading a run, maybe a live one): never touch its files.
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only))
        self.read_only = read_only
        self.policy = SavePolicy(every_steps, every_seconds)
        self.stop = stop or StopSignal()
        self.is_writer = is_writer
        self._unrecorded: int | None = None
        self._ticks = 0  # progress checks so far: the same count in every process
        self._preempted = False

    def save(self, state: RunState, metrics: dict | None = None) -> int:
        """Start an asynchronous save of `state` as the next step; returns the step."""
        self.wait()
        step = (self.manager.latest_step() or 0) + 1
        # The JSON is written on a background thread: give it a copy the run cannot change.
        # Only the writing process's JSON is written: the others skip the checksums' copy.
        meta = {**copy.deepcopy(state.meta), CRC_KEY: array_checksums(state.arrays) if self.is_writer else {}}
        self.manager.save(step, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave(state.arrays), meta=ocp.args.JsonSave(meta)),
            metrics=metrics, force=True)
        self._unrecorded = step
        self.policy.saved()
        return step

    def due(self, units: int = 1) -> bool:
        """Count `units` of progress; True when a save is due (the policy, or a stop request).
        Every process of a multi-process run gets process 0's answer (their clocks differ)."""
        due = self.policy.tick(units) or self.stop_requested() is not None
        if jax.process_count() > 1:
            due = bool(multihost_utils.broadcast_one_to_all(np.bool_(due)))
        return due

    def stop_requested(self) -> str | None:
        """Why the run must stop (a signal's name, or a preemption notice), else None."""
        if self.stop.requested:
            return self.stop.requested
        # JAX's preemption sync point wants an id that grows with every call, alike in all
        # processes, and is reached once: remember it.
        self._ticks += 1
        if self._preempted or self.manager.reached_preemption(self._ticks):
            self._preempted = True
            return "a preemption notice"
        return None

    def raise_if_stopped(self) -> None:
        reason = self.stop_requested()
        if reason is not None:
            self.wait()
            raise Stopped(reason)

    def wait(self) -> None:
        """Block until the last save is committed, then record its files."""
        self.manager.wait_until_finished()
        if self._unrecorded is not None and self.is_writer:
            _record_files(self.directory / str(self._unrecorded))
        self._unrecorded = None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(), reverse=True)

    def restore(self, template, warn=print) -> tuple[RunState, int] | None:
        """The newest readable checkpoint as (state, step) with arrays laid out like `template`
        (a pytree, or a function of the step's meta giving one: shapes that depend on progress,
        like the number of sub-supernets); None when there is none. Unreadable steps are
        reported and skipped."""
        steps = self.steps()
        # Process 0 checks the files and every process restores the step it names, so all
        # processes resume from the same step.
        damage = [_damaged_file(self.directory / str(step)) if jax.process_index() == 0 else None
                  for step in steps]
        if jax.process_count() > 1:
            flags = multihost_utils.broadcast_one_to_all(np.array([d is not None for d in damage]))
            damage = [d or ("damaged (found by process 0)" if f else None) for d, f in zip(damage, flags)]
        failures = []
        for step, found in zip(steps, damage):
            step_dir = self.directory / str(step)
            try:
                if found is None:
                    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                    layout = template(meta["meta"]) if callable(template) else template
                    arrays = self.manager.restore(step, args=ocp.args.Composite(
                        arrays=ocp.args.StandardRestore(layout)))
                    found = _altered_array(meta["meta"].get(CRC_KEY), arrays["arrays"])
                    if jax.process_count() > 1:  # every process resumes from process 0's choice
                        altered = multihost_utils.broadcast_one_to_all(np.bool_(found is not None))
                        found = found or ("altered (found by process 0)" if altered else None)
            except Exception as err:  # noqa: BLE001 - any unreadable file means: try the step before
                found = " ".join(str(err).split())[:300]
            if found is not None:
                failures.append(step)
                warn(f"checkpoint {step_dir} is unreadable ({found}); "
                     + ("falling back to the previous step" if step != steps[-1] else "no older step"))
                continue
            if not self.read_only:
                for damaged in failures:  # a damaged step would hold one of the `keep` places
                    self.manager.delete(damaged)
            meta = {k: v for k, v in meta["meta"].items() if k != CRC_KEY}
            return RunState(dict(arrays["arrays"]), meta), step
        if failures:
            named = (f"step {failures[0]} is" if len(failures) == 1 else
                     f"steps {', '.join(map(str, failures))} are")
            raise CorruptCheckpoint(f"no readable checkpoint in {self.directory} ({named} damaged); to "
                                    "run again from the start, move that directory away")
        return None

    def close(self) -> None:
        if not self.read_only:
            self.wait()
        self.manager.close()


FILES = "files.json"  # a step's record of its files
CRC_KEY = "array_crc"  # the meta entry recording each array's CRC-32 (within the step's commit)


def array_checksums(arrays) -> dict[str, int | None]:
    """{path: CRC-32 of the array's bytes} of a pytree of arrays. An array this process
    holds only a part of (sharded over hosts) records None: it is checked by the files'
    record alone."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(arrays)[0]:
        key = jax.tree_util.keystr(path)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                out[key] = None
                continue
            leaf = leaf.addressable_data(0)  # this process's copy of a replicated array
        out[key] = zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return out


def _altered_array(recorded: dict | None, arrays) -> str | None:
    """Which restored array differs from the checksums its step recorded (None: all equal,
    or a step written before checksums were recorded)."""
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        return f"its {CRC_KEY} record is not an object"
    restored = array_checksums(arrays)
    for path, crc in restored.items():
        # An array the record lacks (or holds no checksum of) is checked by files.json alone.
        if crc is not None and recorded.get(path) is not None and recorded[path] != crc:
            return f"array {path} was altered (CRC-32 differs from the one saved with the step)"
    return None


def _record_files(step_dir: Path) -> None:
    """Write `step_dir/files.json`: every file's size and CRC-32 (atomically)."""
    if not step_dir.exists():  # already removed by the preservation policy
        return
    record = {str(p.relative_to(step_dir)): [p.stat().st_size, zlib.crc32(p.read_bytes())]
              for p in sorted(step_dir.rglob("*")) if p.is_file() and p.name != FILES}
    tmp = step_dir / f".{FILES}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(step_dir / FILES)


def _damaged_file(step_dir: Path) -> str | None:
    """What is wrong with a step's files against its record (None when intact or unrecorded)."""
    recorded = step_dir / FILES
    if not recorded.exists():
        return None
    try:
        record = json.loads(recorded.read_text())
        entries = [(str(name), int(size), int(crc)) for name, (size, crc) in record.items()]
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return f"its record {recorded} is unreadable (not {{file: [size, crc32]}} JSON)"
    for name, size, crc in entries:
        path = step_dir / name
        if not path.exists():
            return f"file {path} is missing"
        if path.stat().st_size != size:
            return f"file {path} holds {path.stat().st_size:,} bytes, {size:,} were written"
        if zlib.crc32(path.read_bytes()) != crc:
            return f"file {path} was altered (CRC-32 differs from the one recorded)"
    return None
