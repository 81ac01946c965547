"""What every phase of a run reads and nothing changes: built once by `setup`.

The context holds the config, data, spaces, sparse setup, budget, the
supernet's graph and template state, the metrics log, checkpoints, devices
and the clock. Mutable progress lives in the `RunState` the phases pass on.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Callable

import nas
import spaces
from launch import config as configs
from launch import costs, devices
from launch import data as datasets
from launch.checkpoints import Checkpoints, StopSignal
from launch.files import write_text_atomic
from launch.metrics import MetricsLog
from search import engine


@dataclasses.dataclass
class Clock:
    """Seconds each phase has cost over every process of the run (restored with the state)."""
    seconds: dict = dataclasses.field(default_factory=dict)
    _since: dict = dataclasses.field(default_factory=dict)

    def start(self, phase: str) -> None:
        self._since[phase] = time.perf_counter()

    def stop(self, phase: str) -> None:
        self.seconds[phase] = self.read(phase)
        self._since.pop(phase, None)

    def read(self, phase: str) -> float:
        """Seconds spent in `phase` by earlier processes plus this one so far."""
        running = time.perf_counter() - self._since[phase] if phase in self._since else 0.0
        return self.seconds.get(phase, 0.0) + running

    def snapshot(self) -> dict:
        return {phase: round(self.read(phase), 3) for phase in {*self.seconds, *self._since}}

    def restore(self, seconds: dict) -> None:
        self.seconds = dict(seconds)
        now = time.perf_counter()
        self._since = {phase: now for phase in self._since}


@dataclasses.dataclass
class Context:
    cfg: configs.Config
    run_dir: Path
    data: datasets.Dataset
    space: spaces.Space                # the searched space (with sparsity choices when searched)
    retrain_space: spaces.Space        # the space candidates are retrained in
    model: object                      # the supernet at its initial weights (graph and template),
    #                                    computing in `precision.compute`
    graphdef: object
    sparse: costs.SparseSetup | None
    constraint: Callable | None
    log: MetricsLog
    checkpoints: Checkpoints
    parallel: devices.DataParallel
    clock: Clock
    progress: bool = True
    echo: Callable = print
    # A Ray Tune trial's reporter, `on_save(ctx, state, step)`, called after every save (the
    # step may still be committing); with one set, a save also follows every metrics row.
    on_save: Callable | None = None
    lock: object | None = None         # the run dir's lock file, held while the run writes

    @property
    def gradient(self) -> bool:
        return configs.is_gradient(self.cfg.supernet.method)

    def say(self, text: str) -> None:
        """Print on the writing process only."""
        if self.parallel.is_writer:
            self.echo(text)

    def close(self) -> None:
        """Finish the last save, close the log and let another process take the run dir."""
        try:
            self.checkpoints.close()
            self.log.close()
        finally:
            if self.lock is not None:
                self.lock.close()


def _retrain_space(cfg: configs.Config, space, data):
    if not cfg.retrain.space_options:
        return space
    retrain_space = spaces.get(cfg.space.name, **{**cfg.space.options, **cfg.retrain.space_options})
    retrain_space = retrain_space.bind(data.input_shape, data.num_classes)
    if retrain_space.choices != space.choices:
        raise ValueError(f"config retrain.space_options = {cfg.retrain.space_options}: the "
                         "retrained space must keep the searched space's choices")
    return retrain_space


def _check_batches(cfg: configs.Config, data, parallel: devices.DataParallel) -> None:
    supernet_examples = len(data.train) // (2 if configs.is_gradient(cfg.supernet.method) else 1)
    for section, size in (("supernet", supernet_examples), ("retrain", len(data.train))):
        batch = getattr(cfg, section).batch_size
        if batch > size:
            raise ValueError(f"config {section}.batch_size = {batch} exceeds the {size} "
                             f"training examples available")
        parallel.check_batch(f"config {section}.batch_size", batch)


def setup(cfg: configs.Config, run_dir: Path, progress: bool = True, echo=print,
          stop: StopSignal | None = None, read_only: bool = False,
          on_save: Callable | None = None) -> Context:
    """Everything the phases share; validates the config against the data and the devices and
    writes (or checks) RUN_DIR/config.yaml. `stop`: the run's signal flag. `read_only`: only
    read the run (its checkpoints, log and config are left as they are). `on_save`: see
    `Context.on_save`."""
    run_dir = Path(run_dir)
    parallel = devices.data_parallel()
    data = configs.dataset(cfg)
    space = spaces.get(cfg.space.name, **cfg.space.options).bind(data.input_shape, data.num_classes)
    model = nas.supernet(space, seed=cfg.seed, dtype=cfg.precision.compute)
    retrain_space = _retrain_space(cfg, space, data)
    if retrain_space is not space:  # budgets and sizes count the network the run exports
        space = space.costed_as(retrain_space)
    space, sparse_setup = costs.sparse_setup(cfg, space, model)
    constraint = costs.constraint(space, cfg.search, sparse_setup)
    _check_batches(cfg, data, parallel)
    config_text = configs.dump(cfg)
    stored = run_dir / "config.yaml"
    lock = None
    if not read_only:
        _check_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(run_dir) if parallel.is_writer else None
    try:
        if stored.exists() and not _same_config(stored, cfg):
            if read_only or _has_checkpoint(run_dir):
                raise ValueError(f"run dir {str(run_dir)!r} holds a different config; pass another "
                                 "--out (or delete it)")
            echo(f"run dir {run_dir} has no checkpoint yet: its config.yaml is replaced")
        if parallel.is_writer and not read_only:
            write_text_atomic(stored, config_text)
        ck = cfg.checkpoint
        checkpoints = Checkpoints(run_dir / "checkpoints", keep=ck.keep, every_steps=ck.every_steps,
                                  every_seconds=ck.every_seconds, stop=stop, read_only=read_only,
                                  is_writer=parallel.is_writer and not read_only)
        log = MetricsLog(run_dir, writer=parallel.is_writer and not read_only)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    graphdef = engine.split(model)[0]
    return Context(cfg, run_dir, data, space, retrain_space, model, graphdef, sparse_setup, constraint,
                   log, checkpoints, parallel, Clock(), progress, echo, on_save, lock)


LOCK_FILE = ".lock"  # held (flock) by the process writing the run dir


def _check_run_dir(run_dir: Path) -> None:
    """A run dir is new, empty, or a run dir (it has config.yaml): never a user's other folder,
    whose files a run would overwrite or delete."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"run dir {str(run_dir)!r} is a file; pass a directory (--out)")
    # Hidden names are the run's own (its lock, a config.yaml being written atomically).
    held = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    if held and "config.yaml" not in held:
        shown = ", ".join(held[:5]) + (", …" if len(held) > 5 else "")
        raise ValueError(f"run dir {str(run_dir)!r} is not empty and not a run directory (no "
                         f"config.yaml; it holds {shown}); pass a new or empty directory (--out)")


def _lock(run_dir: Path):
    """The run dir's lock, taken without waiting: a second process writing the same run dir
    would interleave its log and checkpoints with the first's."""
    import fcntl
    handle = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"run dir {str(run_dir)!r} is in use by another nas process (its "
                         f"{LOCK_FILE} is locked); wait for it to end, or stop it first") from None
    except OSError as err:  # a file system without locks: run, unguarded
        handle.close()
        warnings.warn(f"run dir {run_dir}: cannot lock {LOCK_FILE} ({err}); make sure no other nas "
                      "process writes this run dir", stacklevel=2)
        return None
    return handle


def _same_config(stored: Path, cfg: configs.Config) -> bool:
    """Whether the run dir's config.yaml says what `cfg` says (fields added to the config
    since it was written take their defaults)."""
    try:
        return configs.load(stored).to_dict() == cfg.to_dict()
    except ValueError:
        return False


def _has_checkpoint(run_dir: Path) -> bool:
    """Whether the run dir holds a committed checkpoint step (something to resume)."""
    directory = run_dir / "checkpoints"
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())
