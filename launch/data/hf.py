"""`hf`: a Hugging Face `datasets` data set on local disk — a `save_to_disk` directory or
parquet files — read offline (never the hub).

    path/dataset_dict.json + path/<split>/…        (DatasetDict.save_to_disk)
    path/<split>.parquet, path/<split>-*.parquet or path/<split>/*.parquet

`x` names the input column (an Image feature, decoded with Pillow to [H, W, C] in
[0, 1], or a fixed-length array of numbers) and `label` the integer class column.
Rows are read by index from the memory-mapped Arrow table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from launch.data.core import Sources, bad_path, directory_of, register


def _parquet_files(root: Path, split: str) -> list[str]:
    files = sorted(root.glob(f"{split}.parquet")) + sorted(root.glob(f"{split}-*.parquet")) + \
        sorted((root / split).glob("*.parquet"))
    return [str(f) for f in files]


def _tables(root: Path) -> dict:
    import datasets
    if (root / "dataset_dict.json").is_file():
        return dict(datasets.load_from_disk(str(root)))
    tables = {}
    for split in ("train", "validation", "val", "test"):
        files = _parquet_files(root, split)
        if files:
            tables[split] = datasets.Dataset.from_parquet(files, keep_in_memory=False)
    if not tables:
        raise bad_path(root, "holds neither a save_to_disk DatasetDict (dataset_dict.json) nor "
                         "<split>.parquet files")
    return tables


class HFSource:
    """One split of a `datasets.Dataset`, read by index: (float32 input, int label)."""

    def __init__(self, table, x: str, label: str, image: bool, channels: int):
        self.table, self.x, self.label, self.image, self.channels = table, x, label, image, channels

    def __len__(self) -> int:
        return len(self.table)

    def labels(self) -> np.ndarray:
        return np.asarray(self.table[self.label], np.int32)

    def _input(self, value) -> np.ndarray:
        if self.image:
            pixels = np.asarray(value.convert("RGB" if self.channels == 3 else "L"), np.float32) / 255
            return pixels.reshape(*pixels.shape[:2], self.channels)
        return np.asarray(value, np.float32)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        row = self.table[int(index)]
        return self._input(row[self.x]), int(row[self.label])

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.table[[int(i) for i in indices]]
        return (np.stack([self._input(v) for v in rows[self.x]]),
                np.asarray(rows[self.label], np.int32))


@register("hf")
def _hf(path: str | None = None, x: str | None = None, label: str = "label") -> Sources:
    """A local Hugging Face data set (path: a save_to_disk directory or parquet files)."""
    import datasets
    root = directory_of("hf", path, "a save_to_disk directory or parquet files")
    tables = _tables(root)
    if "train" not in tables or "test" not in tables:
        raise bad_path(root, f"has splits {sorted(tables)}; needs 'train' and 'test'")
    features = tables["train"].features
    x = x or ("image" if "image" in features else "x")
    for column in (x, label):
        if column not in features:
            raise bad_path(root, f"has no column {column!r} (columns {sorted(features)}); name the "
                             "input and label columns with data.options.x and data.options.label")
    image = isinstance(features[x], datasets.Image)
    first = tables["train"][0][x]
    channels = (1 if first.mode in ("1", "L", "I", "F") else 3) if image else 0
    probe = HFSource(tables["train"], x, label, image, channels)
    shape = probe._input(first).shape
    label_feature = features[label]
    num_classes = (label_feature.num_classes if isinstance(label_feature, datasets.ClassLabel)
                   else int(probe.labels().max()) + 1)
    sources = {name: HFSource(table, x, label, image, channels) for name, table in tables.items()}
    if "validation" in sources and "val" not in sources:
        sources["val"] = sources.pop("validation")
    return Sources(sources.pop("train"), sources.pop("test"), num_classes, tuple(shape),
                   "image" if image and len(shape) == 3 else "array", sources)
