"""The data sets held in memory: generated (`synthetic`, `mnist1d`), shipped with
scikit-learn (`digits`) or the user's own arrays (`npz`). Inputs are float32 with a
channel axis (`mnist1d`: [N, 40, 1]; `digits`: [N, 8, 8, 1]); labels int32.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from launch.data.core import register


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
    """A user .npz file of arrays x_train, y_train, x_test, y_test (path: the file).

    Labels may be any integer type; inputs keep the user's row shape (a table's rows are
    [features])."""
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
