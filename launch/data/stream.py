"""Batches of a split as a resumable stream, on grain.

    batches = Batches(data.train, 128, seed=0, scaling=data.scaling, augment=data.augment,
                      workers=2)
    x, y = next(batches)            # this process's rows of global batch 0
    state = batches.state_dict()    # {"seed", "epoch", "position"}: a resume restarts here

Global batch s of epoch e is rows [s·B, (s+1)·B) of the epoch's permutation, a function of
(seed, e) alone; with P processes, process p reads and yields its contiguous B/P of
them, so the run is the same for any process count. A batch is one grain element:
`MapDataset.range(step, …).map(load)` read by a prefetch thread, or by worker processes
(`mp_prefetch`) that each build whole batches, round-robin, so the stream does not depend
on the worker count. Augmentation draws each record's crop and flip from a hash of (seed,
epoch, record index), never from a worker's state. The last partial batch of an epoch is
dropped: every batch has one shape (one compilation).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import signal
import sys

import numpy as np

from launch.data.core import Split

# Batches decoded ahead of the one being trained on (each a whole batch).
PREFETCH = 2


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-batch augmentation of images [k, H, W, C]: a random crop of the image padded
    by `crop_padding` zeros on each side, and a horizontal flip with probability ½ (`flip`)."""
    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self):
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ValueError(f"config data.augment.crop_padding must be an integer ≥ 0, got "
                             f"{self.crop_padding!r}")

    def __str__(self) -> str:
        parts = ([f"crop with padding {self.crop_padding}"] if self.crop_padding else []) + \
                (["flip"] if self.flip else [])
        return ", ".join(parts) or "none"

    def __call__(self, x: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """`x` augmented record by record, record i by the random bits `keys[i]`."""
        x = np.array(x, np.float32)
        if self.flip:
            flipped = (keys & np.uint64(1)).astype(bool)
            x[flipped] = x[flipped, :, ::-1]
        pad = self.crop_padding
        if pad:
            height, width = x.shape[1:3]
            padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            span = np.uint64(2 * pad + 1)
            top = ((keys >> np.uint64(8)) % span).astype(np.int64)
            left = ((keys >> np.uint64(24)) % span).astype(np.int64)
            for i in range(len(x)):
                x[i] = padded[i, top[i]:top[i] + height, left[i]:left[i] + width]
        return x


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective scramble of uint64 words."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def record_keys(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """64 random bits per record, a function of (seed, epoch, record index) alone."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        base = _mix(np.asarray([seed], np.uint64) * golden + np.uint64(epoch))
        return _mix(base ^ (np.asarray(indices, np.uint64) * golden))


@dataclasses.dataclass(frozen=True, eq=False)
class BatchLoader:
    """Step → this process's rows of that global batch: read, augmented, scaled. Pickled
    into each worker process, where it keeps its own cache of an epoch's permutation."""
    split: Split
    batch_size: int
    seed: int
    augment: Augment | None
    scaling: object | None
    process_index: int
    process_count: int
    orders: dict = dataclasses.field(default_factory=dict, repr=False)  # epoch → permutation

    @property
    def steps_per_epoch(self) -> int:
        return len(self.split) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self.orders:
            if len(self.orders) >= 2:  # a stream moves forward: older epochs are done
                self.orders.pop(min(self.orders))
            self.orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
        return self.orders[epoch]

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, k = divmod(int(step), self.steps_per_epoch)
        own = self.batch_size // self.process_count
        start = k * self.batch_size + self.process_index * own
        positions = self.order(epoch)[start:start + own]
        x, y = self.split.read(positions)
        if self.augment is not None:
            x = self.augment(x, record_keys(self.seed, epoch, self.split.indices(positions)))
        if self.scaling is not None:
            x = self.scaling(x)
        return np.asarray(x, np.float32), np.asarray(y, np.int32)


def _parse_absl_flags() -> None:
    """grain's worker processes read absl flags, which a program not run by absl.app never
    parsed; mark them parsed (their defaults) once."""
    from absl import flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _die_with(parent: int, worker_index: int, worker_count: int) -> None:
    """Run in each input worker: end it when the training process ends, however it ends.
    A SIGKILLed trainer would otherwise leave its workers running, holding memory and the
    pipes of whoever waits for its output."""
    if sys.platform.startswith("linux"):
        set_parent_death_signal = 1  # prctl's PR_SET_PDEATHSIG
        ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGKILL)
    if os.getppid() != parent:  # the trainer died before the line above took effect
        os._exit(1)


class Batches:
    """Endless batches of `split` (see the module doc), resumable from `state_dict()`."""

    def __init__(self, split, batch_size: int, seed: int = 0, *, augment: Augment | None = None,
                 scaling=None, workers: int = 0, process_index: int | None = None,
                 process_count: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if len(split) < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the {len(split)} examples available")
        if workers < 0:
            raise ValueError(f"config data.workers must be ≥ 0, got {workers}")
        if process_index is None or process_count is None:
            import jax
            process_index, process_count = jax.process_index(), jax.process_count()
        if batch_size % process_count:
            raise ValueError(f"batch_size={batch_size} does not divide over {process_count} processes")
        split = split if isinstance(split, Split) else Split(split)
        self.loader = BatchLoader(split, batch_size, seed, augment, scaling, process_index,
                                  process_count)
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.epoch, self.position = 0, 0
        self._stream = None

    @property
    def steps_per_epoch(self) -> int:
        return self.loader.steps_per_epoch

    @property
    def split(self) -> Split:
        return self.loader.split

    @property
    def step(self) -> int:
        """Global batches taken so far."""
        return self.epoch * self.steps_per_epoch + self.position // self.batch_size

    def _open(self):
        import grain
        steps = grain.MapDataset.range(self.step, 2 ** 62).map(self.loader)
        if self.workers == 0:
            return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=1,
                                                                prefetch_buffer_size=PREFETCH)))
        _parse_absl_flags()
        return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
                    .mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers,
                                                              per_worker_buffer_size=PREFETCH),
                                 worker_init_fn=functools.partial(_die_with, os.getpid())))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stream is None:
            self._stream = self._open()
        batch = next(self._stream)
        self.position += self.batch_size
        if self.position + self.batch_size > len(self.loader.split):
            self.epoch, self.position = self.epoch + 1, 0
        return batch

    def take(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [next(self) for _ in range(count)]

    def close(self) -> None:
        """Stop the prefetch thread or worker processes (a stream left open at exit leaks
        shared memory); the next batch reopens it where it stood."""
        if self._stream is not None:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
            self._stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 — interpreter shutdown: nothing left to close with
            pass

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        seed = int(state["seed"])
        if seed != self.seed:
            self.seed = seed
            self.loader = dataclasses.replace(self.loader, seed=seed, orders={})
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def in_order(split, batch_size: int, scaling=None):
    """`split` from first to last example in batches of at most `batch_size`, scaled:
    what evaluation reads (every example once, no augmentation)."""
    for start in range(0, len(split), batch_size):
        x, y = split.read(np.arange(start, min(start + batch_size, len(split))))
        yield (x if scaling is None else np.asarray(scaling(x), np.float32)), y
