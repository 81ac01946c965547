"""What a data set is: random-access sources of examples, split into train/val/test.

A *source* holds examples of one file split (`len`, `source[i] -> (x, y)`, and `read`
for many at once); in-memory arrays, ArrayRecord shards, image folders and Hugging Face
tables are all sources. A `Split` is a view of some of a source's rows (the validation
split is a seeded share of train, or a file split of its own). A `Dataset` holds the
three splits and how inputs are scaled (`scaling`, stored with the export as `standardization`);
its phases read batches through `launch.data.stream`, never a whole split.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class Source(Protocol):
    """Random access to one file split's examples: x float32 [*input_shape], y an int."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...


def read(source, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Examples `indices` of `source` stacked: (x float32 [k, …], y int32 [k]); sources with
    a vectorised `read` of their own use it."""
    indices = np.asarray(indices, np.int64)
    if hasattr(source, "read"):
        return source.read(indices)
    if len(indices) == 0:
        raise ValueError("read needs at least one index")
    pairs = [source[int(i)] for i in indices]
    return (np.stack([np.asarray(x, np.float32) for x, _ in pairs]),
            np.asarray([y for _, y in pairs], np.int32))


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Examples held in memory: x [n, …], y [n]."""
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.x[index], int(self.y[index])

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[indices], self.y[indices]


@dataclasses.dataclass(frozen=True)
class Split:
    """Rows `rows` of `source` (all of them for None), read by position 0 … len − 1."""
    source: Source
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source) if self.rows is None else len(self.rows)

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """The source indices of `positions` (what per-record randomness is keyed by)."""
        positions = np.asarray(positions, np.int64)
        return positions if self.rows is None else self.rows[positions]

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return read(self.source, self.indices(positions))

    def part(self, start: int, stop: int) -> Split:
        """Positions start … stop − 1 as a split of their own."""
        return Split(self.source, self.indices(np.arange(start, stop)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in memory: for small data (tests, tables), never a phase."""
        if len(self) == 0:
            shape = getattr(self.source, "x", np.zeros((0,))).shape[1:]
            return np.zeros((0, *shape), np.float32), np.zeros((0,), np.int32)
        return self.read(np.arange(len(self)))

    def sample(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` examples (all when fewer) at a seeded random choice of positions: the
        same for every process and resume. Fixed subsets (calibration, proxies) are these."""
        order = np.random.default_rng(seed).permutation(len(self))[:count]
        return self.read(order)


@dataclasses.dataclass(frozen=True)
class Scaling:
    """(x − mean) / std, with statistics broadcast over x's trailing axes: per feature
    (`data.standardize`) or per channel (`data.normalize`)."""
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, x):
        return (x - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "std": np.asarray(self.std).tolist()}


def statistics(x: np.ndarray, axes: tuple[int, ...] = (0,)) -> Scaling:
    """Mean and std of `x` over `axes` (float64 sums); a constant feature gets std 1 (it
    becomes 0, not NaN)."""
    x = np.asarray(x, np.float64)
    std = x.std(axis=axes)
    return Scaling(x.mean(axis=axes).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Sources:
    """What a data source gives `load`: the file splits (train and test, and any others such
    as "val"), the number of classes and the input shape. `kind` "image" marks [H, W, C]
    inputs, which augmentation and per-channel normalisation need."""
    train: Source
    test: Source
    num_classes: int
    input_shape: tuple[int, ...]
    kind: str = "array"
    others: dict = dataclasses.field(default_factory=dict)

    def split(self, name: str):
        found = {"train": self.train, "test": self.test, **self.others}
        if name not in found:
            raise ValueError(f"config data.val_split = {name!r}: this data set's file splits are "
                             f"{sorted(found)}; 'train' takes data.val_fraction of the training split")
        return found[name]


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    kind: str = "array"
    # Inputs are scaled on every read by these statistics of the training split (stored
    # with the export, which then takes raw inputs); None: inputs as the source gives them.
    scaling: Scaling | None = None
    scaled_by: str | None = None       # "feature" (data.standardize) or "channel" (data.normalize)
    augment: object | None = None      # launch.data.stream.Augment for training batches
    workers: int = 0                   # input worker processes (grain mp_prefetch)

    def scale(self, x: np.ndarray) -> np.ndarray:
        return x if self.scaling is None else self.scaling(x).astype(np.float32)

    def batches(self, split: Split, batch_size: int, seed: int, train: bool = True):
        """Endless shuffled batches of `split` (`launch.data.stream.Batches`), scaled, and
        augmented when they train (`train`)."""
        from launch.data.stream import Batches
        return Batches(split, batch_size, seed, augment=self.augment if train else None,
                       scaling=self.scaling, workers=self.workers)

    def sample(self, split: Split, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded subset of `split`, scaled (never augmented)."""
        x, y = split.sample(count, seed)
        return self.scale(x), y

    def summary(self) -> str:
        scaled = {"feature": ", standardized", "channel": ", normalized per channel"}.get(self.scaled_by, "")
        augmented = f", augmented ({self.augment})" if self.augment is not None else ""
        return (f"{self.name}: input {self.input_shape}, {self.num_classes} classes, "
                f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test{scaled}{augmented}")


def bad_path(path, message: str) -> ValueError:
    """The error of a data file or folder: one line naming it."""
    return ValueError(f"data path {str(path)!r}: {message}")


def directory_of(name: str, path: str | None, holds: str) -> Path:
    """`path` of data source `name` as a directory that exists."""
    if path is None:
        raise ValueError(f"data {name!r} needs path=DIR ({holds})")
    directory = Path(path)
    if not directory.is_dir():
        raise bad_path(directory, "is not a directory")
    return directory


LoaderFn = Callable[..., "Sources | tuple"]
_LOADERS: dict[str, LoaderFn] = {}


def register(name: str):
    """Register a data source under `name`: `loader(**options)` returns `Sources`, or
    `(x_train, y_train, x_test, y_test)` arrays for data held in memory. The options are the
    config's `data.options` (and `path` from `data.path`)."""
    def add(loader):
        _LOADERS[name] = loader
        return loader
    return add


def names() -> list[str]:
    return sorted(_LOADERS)


def loader(name: str) -> LoaderFn:
    if name not in _LOADERS:
        from spaces.core import closest  # imported when needed: input workers import this module
        raise ValueError(f"unknown data {name!r}{closest(name, _LOADERS)}; datasets are {names()}")
    return _LOADERS[name]


def in_memory(x_train, y_train, x_test, y_test, name: str) -> Sources:
    """`Sources` of four arrays, checked (finite, labelled, every test class trained on)."""
    check_arrays(name, x_train, y_train, x_test, y_test)
    return Sources(ArraySource(x_train, y_train), ArraySource(x_test, y_test),
                   int(y_train.max()) + 1, tuple(x_train.shape[1:]),
                   kind="image" if x_train.ndim == 4 else "array")


def check_arrays(name: str, x_train, y_train, x_test, y_test) -> None:
    """Examples in both splits, finite inputs, and no test class the training split lacks:
    each would otherwise give a silently wrong run (NaN weights, a made-up class)."""
    for split, xs in (("train", x_train), ("test", x_test)):
        if len(xs) == 0:
            raise ValueError(f"data {name!r}: the {split} split is empty")
        bad = ~np.isfinite(xs)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"data {name!r}: x_{split} holds {int(bad.sum()):,} non-finite values "
                             f"(NaN or ±inf; the first in row {row}); clean or impute them first")
    unknown = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unknown.size:
        raise ValueError(f"data {name!r}: y_test holds class(es) {unknown[:5].tolist()} that no "
                         "training example has; the model could never predict them")


def sources_of(name: str, options: dict) -> Sources:
    """What data source `name` gives for `options` (arrays of data held in memory checked
    and wrapped); its errors name the data set."""
    try:
        found = loader(name)(**options)
    except TypeError as err:
        raise ValueError(f"data {name!r}: bad option ({err})") from None
    except ValueError as err:  # a loader's own complaint, named by its data set
        message = str(err)
        raise ValueError(message if message.startswith(("data ", f"{options.get('path')}")) else
                         f"data {name!r} (options {options}): {message}") from None
    return in_memory(*found, name=name) if isinstance(found, tuple) else found


# Statistics of a source too big to read whole come from this many seeded training examples.
STATISTICS_EXAMPLES = 20_000


def load(name: str, *, seed: int = 0, val_fraction: float = 0.1, val_split: str = "train",
         standardize: bool = False, normalize: bool = False, augment=None, workers: int = 0,
         **options) -> Dataset:
    """Data set `name` split three ways: the validation split is `val_fraction` of train
    chosen by `seed` (`val_split` "train"), or the source's file split `val_split`. With
    `standardize` (per feature) or `normalize` (per channel, images) every read is scaled
    by the training split's statistics."""
    loader(name)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if standardize and normalize:
        raise ValueError("config data.standardize and data.normalize are exclusive: per feature "
                         "(tables) or per channel (images)")
    found = sources_of(name, options)
    if val_split == "train":
        order = np.random.default_rng(seed).permutation(len(found.train))
        n_val = int(round(val_fraction * len(found.train)))
        train, val = Split(found.train, order[n_val:]), Split(found.train, order[:n_val])
        if len(train) == 0:
            raise ValueError(f"data {name!r}: val_fraction {val_fraction} leaves no training example "
                             f"of {len(found.train)}")
    else:
        train, val = Split(found.train), Split(found.split(val_split))
    if (normalize or augment is not None) and found.kind != "image":
        field = "data.normalize" if normalize else "data.augment"
        raise ValueError(f"config {field}: data {name!r} has inputs {found.input_shape}, not images "
                         "[height, width, channels]")
    scaling, scaled_by = None, None
    if standardize or normalize:
        x, _ = train.sample(STATISTICS_EXAMPLES, seed)
        scaling = statistics(x, (0,) if standardize else tuple(range(x.ndim - 1)))
        scaled_by = "feature" if standardize else "channel"
    return Dataset(name, train, val, Split(found.test), found.num_classes, tuple(found.input_shape),
                   found.kind, scaling, scaled_by, augment, workers)

