"""`nas data`: list the data sets, convert any of them to ArrayRecord shards, show one.

    convert("image_folder", {"path": "cifar10/"}, Path("cifar10-ar"))   # → spec.json + shards
    figure = show(Path("cifar10-ar"))                                   # a grid of examples
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from launch.data import array_record
from launch.data.core import Sources, read, sources_of


def detect(path: Path) -> str:
    """The source that reads `path`: array_record (spec.json), hf (dataset_dict.json or
    parquet files), image_folder (train/<class>/ folders), npz (a file)."""
    if path.is_file():
        return "npz"
    if (path / array_record.SPEC).is_file():
        return "array_record"
    if (path / "dataset_dict.json").is_file() or any(path.glob("*.parquet")) or any(path.glob("*/*.parquet")):
        return "hf"
    if (path / "train").is_dir():
        return "image_folder"
    raise ValueError(f"data path {str(path)!r}: not a data set jaxnas reads (an .npz file, a directory "
                     "with spec.json, parquet files or a save_to_disk dataset, or train/<class>/ image "
                     "folders); name its source with --source")


def sources(source: str | None, path: str | None, options: dict) -> tuple[str, Sources]:
    """(name, `Sources`) of a registered data set `source`, or of the data at `path`
    (its source detected unless named)."""
    if source is None:
        if path is None:
            raise ValueError("name a data set (e.g. digits) or give --path")
        source = detect(Path(path))
    return source, sources_of(source, {**options, **({"path": path} if path is not None else {})})


def storage_dtype(found: Sources, requested: str) -> tuple[str, float]:
    """(dtype, divisor) the shards store inputs as: `auto` keeps 8-bit images as uint8
    (pixel / 255, lossless) and everything else as float32."""
    if requested != "auto":
        return requested, (255 if requested == "uint8" else 1)
    if found.kind == "image" and len(found.train):
        x, _ = read(found.train, np.arange(min(64, len(found.train))))
        pixels = x * 255
        if np.all(np.abs(pixels - np.rint(pixels)) < 1e-3) and x.min() >= 0 and x.max() <= 1:
            return "uint8", 255
    return "float32", 1


def convert(source: str | None, path: str | None, options: dict, out: Path, *, dtype: str = "auto",
            shard_records: int = array_record.SHARD_RECORDS, progress: bool = True) -> dict:
    """Write data set `source` (or the data at `path`) to `out` as ArrayRecord shards; the
    spec written."""
    _, found = sources(source, path, options)
    stored, divisor = storage_dtype(found, dtype)
    return array_record.write(found, out, dtype=stored, divisor=divisor, shard_records=shard_records,
                              progress=progress)


def show(directory: Path, count: int = 16):
    """A matplotlib figure of the first `count` training examples of the shards in
    `directory`, each titled by its label."""
    from launch.plots import subplots
    spec = array_record.read_spec(directory)
    train = array_record.ArrayRecordSource(directory, spec, "train")
    count = min(count, len(train))
    x, y = train.read(np.arange(count))
    columns = min(count, 8)
    rows = -(-count // columns)
    figure, axes = subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, example, label in zip(axes.flat, x, y):
        if example.ndim == 3:  # an image [H, W, C]
            low, high = float(example.min()), float(example.max())
            pixels = (example - low) / (high - low) if high > low else example * 0
            ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
                      cmap="gray" if pixels.shape[-1] == 1 else None)
        else:
            ax.plot(example.reshape(len(example), -1))
        ax.set_title(f"class {label}", fontsize=8)
    figure.suptitle(f"{directory.name}: {count} of {len(train):,} training examples", fontsize=9)
    figure.tight_layout()
    return figure
