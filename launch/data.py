"""Datasets generated or shipped locally (never downloaded) and resumable batches.

    data = load("mnist1d", seed=0, val_fraction=0.1)
    batches = Batches(data.x_train, data.y_train, batch_size=128, seed=0)
    x, y = next(batches)

Inputs are float32 with a channel axis (`mnist1d`: [N, 40, 1]; `digits`:
[N, 8, 8, 1]); labels int32. The test split never depends on `seed`; the
train/validation split does, deterministically.
"""
from __future__ import annotations

import dataclasses
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from spaces.core import closest


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    # `standardize`: per-feature mean and std of the training split, already applied to every
    # split (an export stores them and applies them to raw inputs); None: inputs as loaded.
    standardization: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        scaled = ", standardized" if self.standardization is not None else ""
        return (f"{self.name}: input {self.input_shape}, {self.num_classes} classes, "
                f"{len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test{scaled}")


def standardization(x: np.ndarray) -> dict:
    """{"mean", "std"} per feature of `x` [examples, *features]; a constant feature gets
    std 1 (it becomes 0, not NaN)."""
    x = np.asarray(x, np.float64)
    std = x.std(axis=0)
    return {"mean": x.mean(axis=0).astype(np.float32),
            "std": np.where(std > 0, std, 1.0).astype(np.float32)}


def apply_standardization(x, stats: dict):
    """(x − mean) / std with `standardization`'s statistics (NumPy or JAX arrays)."""
    return (x - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)


_LOADERS: dict[str, Callable[..., tuple]] = {}


def register(name: str):
    """Register `loader(**options) -> (x_train, y_train, x_test, y_test)` under `name`."""
    def add(loader):
        _LOADERS[name] = loader
        return loader
    return add


def names() -> list[str]:
    return sorted(_LOADERS)


@register("digits")
def _digits():
    """scikit-learn's bundled 8×8 digits (1797 images); a fixed 20 % test split."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(12345).permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


@register("mnist1d")
def _mnist1d():
    """MNIST-1D regenerated with the `mnist1d` package's defaults: 4000 train / 1000 test."""
    from mnist1d.data import get_dataset_args, make_dataset
    raw = make_dataset(get_dataset_args())
    as_x = lambda a: np.asarray(a, np.float32)[..., None]  # noqa: E731
    return (as_x(raw["x"]), np.asarray(raw["y"], np.int32),
            as_x(raw["x_test"]), np.asarray(raw["y_test"], np.int32))


@register("npz")
def _npz(path: str | None = None):
    """A user file holding arrays x_train, y_train, x_test, y_test. Labels may be any
    integer type; inputs keep the user's row shape (a table's rows are [features])."""
    if path is None:
        raise ValueError("data 'npz' needs path=FILE.npz holding x_train, y_train, x_test, y_test")
    if not Path(path).is_file():
        raise ValueError(f"data path {path!r} is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        empty = Path(path).stat().st_size == 0
        raise ValueError(f"data path {path!r} is not a readable .npz archive "
                         f"({'an empty file' if empty else ' '.join(str(err).split()) or type(err).__name__})"
                         "; write one with numpy.savez(path, x_train=…, y_train=…, x_test=…, "
                         "y_test=…)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"data path {path!r} holds a single array (a .npy file), not an .npz archive "
                         "of x_train, y_train, x_test, y_test (numpy.savez)")
    try:
        with archive as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
            if missing:
                raise ValueError(f"{path}: missing array {missing[0]!r} (has {sorted(f.files)})")
            arrays = [np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")]
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"data path {path!r} is a damaged .npz archive ({err})") from None
    except ValueError as err:  # e.g. object arrays, which would need pickle
        raise ValueError(f"data path {path!r}: {' '.join(str(err).split())}") from None
    x_train, y_train, x_test, y_test = arrays
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype.kind not in "biuf" or x.ndim < 2:
            raise ValueError(f"{path}: {name} must be a numeric array [examples, features…], got "
                             f"dtype {x.dtype} and shape {x.shape}")
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
            raise ValueError(f"{path}: {name} must be a 1-D array of non-negative integer labels")
        if y.size and y.max() > np.iinfo(np.int32).max:
            raise ValueError(f"{path}: {name} holds label {int(y.max())}; labels are class indices "
                             f"0 … classes − 1 (at most {np.iinfo(np.int32).max})")
    for xs, ys, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(xs) != len(ys):
            raise ValueError(f"{path}: x_{split} has {len(xs)} rows but y_{split} has {len(ys)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{path}: x_train rows {x_train.shape[1:]} differ from x_test rows "
                         f"{x_test.shape[1:]}")
    return (x_train.astype(np.float32), y_train.astype(np.int32), x_test.astype(np.float32),
            y_test.astype(np.int32))


@register("synthetic")
def _synthetic(input_shape=(40, 1), num_classes: int = 10, n_train: int = 2000,
               n_test: int = 500, noise: float = 1.0, data_seed: int = 0):
    """Gaussian class clusters around random centres: learnable, instant, any shape."""
    rng = np.random.default_rng(data_seed)
    shape = tuple(input_shape)
    centres = rng.normal(size=(num_classes,) + shape).astype(np.float32)

    def draw(n):
        y = rng.integers(num_classes, size=n).astype(np.int32)
        x = centres[y] + noise * rng.normal(size=(n,) + shape).astype(np.float32)
        return x.astype(np.float32), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return x_train, y_train, x_test, y_test


def load(name: str, *, seed: int = 0, val_fraction: float = 0.1, standardize: bool = False,
         **options) -> Dataset:
    """Dataset `name` with a validation split of `val_fraction` of train, chosen by `seed`;
    with `standardize`, every split scaled by the training split's per-feature mean and std."""
    if name not in _LOADERS:
        raise ValueError(f"unknown data {name!r}{closest(name, _LOADERS)}; datasets are {names()}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    try:
        x_train, y_train, x_test, y_test = _LOADERS[name](**options)
    except TypeError as err:
        raise ValueError(f"data {name!r}: bad option ({err})") from None
    except ValueError as err:  # a loader's own complaint, named by its data set
        message = str(err)
        raise ValueError(message if message.startswith(("data ", f"{options.get('path')}")) else
                         f"data {name!r} (options {options}): {message}") from None
    _check_splits(name, x_train, y_train, x_test, y_test)
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = int(round(val_fraction * len(x_train)))
    val, train = order[:n_val], order[n_val:]
    if len(train) == 0:
        raise ValueError(f"data {name!r}: val_fraction {val_fraction} leaves no training example "
                         f"of {len(x_train)}")
    num_classes = int(y_train.max()) + 1
    splits = [x_train[train], x_train[val], x_test]
    stats = None
    if standardize:
        stats = standardization(splits[0])
        splits = [apply_standardization(x, stats) for x in splits]
    return Dataset(name, splits[0], y_train[train], splits[1], y_train[val], splits[2], y_test,
                   num_classes, stats)


def _check_splits(name: str, x_train, y_train, x_test, y_test) -> None:
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


class Batches:
    """Endless shuffled batches of `(x, y)`, reshuffled each epoch, resumable.

    The order of epoch e is a function of (seed, e) alone, so `state_dict()`
    (epoch and position) restores the exact stream. The last partial batch of
    an epoch is dropped, so every batch has the same shape (one compilation).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if len(x) < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the {len(x)} examples available")
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.position + self.batch_size > len(self.x):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return self.x[index], self.y[index]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
