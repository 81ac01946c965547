"""Compressed storage of sparse kernels (for size, not speed: `docs/algorithms.md` §8).

- COO: nonzero values plus their indices (row-major order), any pattern; the
  layout `jax.experimental.sparse.BCOO((data, indices), shape=shape)` takes as is.
  Written and read with NumPy: BCOO's own conversions compile once per kernel
  shape (about 1.5 s each on CPU) for what is an index lookup.
- N:M packed: in every group of M consecutive weights along the inputs
  (`masks.kernel_axes`) at most N survive; store those N values and their
  positions in the group (uint8), i.e. N/M of the values plus a small index
  array — the layout sparse tensor cores read.

`save(path, params, names, nm=None)` writes one `.npz` holding every kernel in
`names` compressed and every other leaf dense; `load(path)` gives back the
dense `{name: array}`, bit for bit.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sparse import masks as masklib


def to_coo(weight) -> tuple[np.ndarray, np.ndarray]:
    """(data, indices) of `weight`'s nonzeros: `[nse]` values and `[nse, ndim]` int32
    indices, in row-major order."""
    weight = np.asarray(weight)
    indices = np.argwhere(weight != 0)
    return weight[tuple(indices.T)], indices.astype(np.int32)


def from_coo(data, indices, shape: Sequence[int]) -> np.ndarray:
    """The dense array of `to_coo`'s output."""
    data = np.asarray(data)
    dense = np.zeros(tuple(shape), data.dtype)
    dense[tuple(np.asarray(indices).T)] = data
    return dense


def pack_nm(weight, n: int, m: int, name: str = "kernel") -> tuple[np.ndarray, np.ndarray]:
    """(values, positions) of an N:M sparse kernel `name` (grouped along its inputs,
    `masks.kernel_axes`): both `[window..., out, in/m, n]`, positions uint8 in
    [0, m). Raises if some group holds more than n nonzeros."""
    w = np.moveaxis(masklib.as_matrix(name, np.asarray(weight)), -2, -1)
    fan_in = w.shape[-1]
    if fan_in % m:
        raise ValueError(f"N:M packing needs the inputs of kernel {name!r} ({fan_in}) to be a "
                         f"multiple of m={m}")
    groups = w.reshape(w.shape[:-1] + (fan_in // m, m))
    if np.any((groups != 0).sum(-1) > n):
        raise ValueError(f"kernel {name!r} is not {n}:{m} sparse: some group of {m} holds more "
                         f"than {n} nonzeros")
    # nonzeros first (stable: in position order), then pad with zeros
    positions = np.argsort(groups == 0, axis=-1, kind="stable")[..., :n]
    positions = np.sort(positions, axis=-1).astype(np.uint8)
    values = np.take_along_axis(groups, positions.astype(np.int64), axis=-1)
    return values, positions


def unpack_nm(values, positions, shape: Sequence[int], m: int, name: str = "kernel") -> np.ndarray:
    """The dense kernel `name` of `shape` from `pack_nm`'s output."""
    shape = tuple(shape)
    n_in, n_out, window = masklib.matrix_sizes(name, shape)
    groups = np.zeros(window + (n_out, n_in // m, m), np.asarray(values).dtype)
    np.put_along_axis(groups, np.asarray(positions).astype(np.int64), np.asarray(values), axis=-1)
    matrix = np.moveaxis(groups.reshape(window + (n_out, n_in)), -1, -2)
    return masklib.from_matrix(name, matrix, shape)


def save(path: Path | str, params, names: Sequence[str], nm: tuple[int, int] | None = None) -> dict:
    """Write `params` to `path` (.npz, atomically) with the kernels `names` stored as
    COO (or N:M packed with `nm=(n, m)`); returns {name: stored bytes / dense bytes}."""
    arrays, ratios = {}, {}
    for name, leaf in masklib.named_leaves(params).items():
        dense = np.asarray(leaf)
        if name not in names:
            arrays[f"dense/{name}"] = dense
            continue
        if nm is not None:
            values, positions = pack_nm(dense, *nm, name=name)
            arrays[f"nm/{name}/values"], arrays[f"nm/{name}/positions"] = values, positions
            arrays[f"nm/{name}/shape"] = np.asarray(dense.shape)
            arrays[f"nm/{name}/m"] = np.asarray(nm[1])
            stored = values.nbytes + positions.nbytes
        else:
            arrays[f"coo/{name}/data"], arrays[f"coo/{name}/indices"] = to_coo(dense)
            arrays[f"coo/{name}/shape"] = np.asarray(dense.shape)
            stored = arrays[f"coo/{name}/data"].nbytes + arrays[f"coo/{name}/indices"].nbytes
        ratios[name] = stored / dense.nbytes
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return ratios


def load(path: Path | str) -> dict[str, np.ndarray]:
    """`{name: dense array}` of a file written by `save`."""
    out = {}
    with np.load(path) as f:
        keys = list(f.files)
        for key in keys:
            kind, _, rest = key.partition("/")
            if kind == "dense":
                out[rest] = f[key]
            elif kind == "coo" and rest.endswith("/data"):
                name = rest[:-len("/data")]
                out[name] = from_coo(f[key], f[f"coo/{name}/indices"],
                                     tuple(int(d) for d in f[f"coo/{name}/shape"]))
            elif kind == "nm" and rest.endswith("/values"):
                name = rest[:-len("/values")]
                out[name] = unpack_nm(f[key], f[f"nm/{name}/positions"],
                                      tuple(int(d) for d in f[f"nm/{name}/shape"]), int(f[f"nm/{name}/m"]),
                                      name=name)
    return out
