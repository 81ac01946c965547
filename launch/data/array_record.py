"""`array_record`: a directory of ArrayRecord shards and the spec.json that describes them,
as `nas data convert` writes it — the format for data sets larger than memory.

    DIR/spec.json                    {"input_shape", "dtype", "divisor", "num_classes", "kind",
                                      "splits": {"train": {"examples", "shards"}, …}}
    DIR/train-00000-of-00004.array_record …

A record is the label (int32, little-endian) followed by the input's bytes (`dtype`,
C order); an input reads as float32 `value / divisor` (images are stored as uint8 with
divisor 255, as an image folder reads them: pixel / 255). Records are read by index (a
global shuffle needs random access).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from launch.data.core import Sources, bad_path, directory_of, read, register

SPEC = "spec.json"
FORMAT = "jaxnas.array_record/1"
LABEL = np.dtype("<i4")
# Records per shard written by `write` (a few hundred MB of 32×32×3 images).
SHARD_RECORDS = 100_000



def read_spec(directory: Path) -> dict:
    """DIR/spec.json, checked field by field."""
    path = directory / SPEC
    if not path.is_file():
        raise bad_path(directory, f"no {SPEC}; write the directory with `nas data convert`")
    try:
        spec = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_path(path, f"not readable JSON ({err})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise bad_path(path, f"not a spec of format {FORMAT!r}")
    for key, kind in (("input_shape", list), ("dtype", str), ("divisor", (int, float)),
                      ("num_classes", int), ("splits", dict)):
        if not isinstance(spec.get(key), kind):
            raise bad_path(path, f"field {key!r} is missing or not a {getattr(kind, '__name__', 'number')}")
    if "train" not in spec["splits"] or "test" not in spec["splits"]:
        raise bad_path(path, f"splits {sorted(spec['splits'])} lack 'train' or 'test'")
    return spec


class ArrayRecordSource:
    """One split's shards, read by index: (float32 input, int label)."""

    def __init__(self, directory: Path, spec: dict, split: str):
        info = spec["splits"][split]
        self.paths = [directory / name for name in info["shards"]]
        for path in self.paths:
            if not path.is_file():
                raise bad_path(path, f"shard of split {split!r} listed in {SPEC} is missing")
        self.shape = tuple(spec["input_shape"])
        self.dtype = np.dtype(spec["dtype"])
        self.divisor = np.float32(spec["divisor"])
        self.split, self.directory = split, directory
        self._records = None
        if len(self) != info["examples"]:
            raise bad_path(directory, f"split {split!r} holds {len(self)} records, {SPEC} says "
                                  f"{info['examples']}")
        if len(self):
            self._decode([self.records[0]], "record 0")

    @property
    def records(self):
        if self._records is None:
            from grain.sources import ArrayRecordDataSource
            self._records = ArrayRecordDataSource([str(p) for p in self.paths])
        return self._records

    def __getstate__(self):  # worker processes open their own readers
        return {**self.__dict__, "_records": None}

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, raw: list[bytes], where) -> tuple[np.ndarray, np.ndarray]:
        size = LABEL.itemsize + math.prod(self.shape) * self.dtype.itemsize
        for i, record in enumerate(raw):
            if len(record) != size:
                name = where if isinstance(where, str) else f"record {int(where[i])}"
                raise bad_path(self.directory, f"split {self.split!r} {name} has {len(record)} bytes; "
                                           f"{SPEC}'s input {list(self.shape)} {self.dtype} needs {size}")
        data = np.frombuffer(b"".join(raw), np.uint8).reshape(len(raw), size)
        y = data[:, :LABEL.itemsize].copy().view(LABEL)[:, 0].astype(np.int32)
        x = data[:, LABEL.itemsize:].copy().view(self.dtype).reshape((len(raw), *self.shape))
        return x.astype(np.float32) / self.divisor, y

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        x, y = self.read(np.asarray([index]))
        return x[0], int(y[0])

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decode(self.records.__getitems__([int(i) for i in indices]), indices)


@register("array_record")
def _array_record(path: str | None = None) -> Sources:
    """Shards written by `nas data convert` (path: their directory)."""
    directory = directory_of("array_record", path, "written by `nas data convert`")
    spec = read_spec(directory)
    splits = {name: ArrayRecordSource(directory, spec, name) for name in spec["splits"]}
    return Sources(splits.pop("train"), splits.pop("test"), spec["num_classes"],
                   tuple(spec["input_shape"]), spec.get("kind", "array"), splits)


def write(sources: Sources, out: Path, *, dtype: str = "float32", divisor: float = 1.0,
          shard_records: int = SHARD_RECORDS, progress: bool = True) -> dict:
    """Write every split of `sources` to `out` (a new directory) as ArrayRecord shards and a
    spec; inputs are stored as `dtype` times `divisor` (uint8 images: 255).
    Written to a temporary sibling and renamed: a failed conversion leaves nothing."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm.auto import tqdm
    out = Path(out)
    if out.exists():
        raise ValueError(f"--out {str(out)!r} exists; conversions write a new directory")
    storage = np.dtype(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    splits = {"train": sources.train, "test": sources.test, **sources.others}
    spec = {"format": FORMAT, "input_shape": list(sources.input_shape), "dtype": storage.name,
            "divisor": divisor, "num_classes": sources.num_classes, "kind": sources.kind, "splits": {}}
    try:
        for name, source in splits.items():
            shards = max(1, -(-len(source) // shard_records))
            names = [f"{name}-{i:05d}-of-{shards:05d}.array_record" for i in range(shards)]
            bar = tqdm(total=len(source), desc=f"convert {name}", unit="ex", disable=not progress)
            for shard, shard_name in enumerate(names):
                writer = ArrayRecordWriter(str(staging / shard_name), "group_size:1")
                begin, end = shard * shard_records, min((shard + 1) * shard_records, len(source))
                for start in range(begin, end, 1024):
                    x, y = read(source, np.arange(start, min(start + 1024, end)))
                    stored = _stored(x * divisor, storage)
                    for label, row in zip(y, stored):
                        writer.write(np.asarray([label], LABEL).tobytes() + row.tobytes())
                    bar.update(len(y))
                writer.close()
            bar.close()
            spec["splits"][name] = {"examples": len(source), "shards": names}
        (staging / SPEC).write_text(json.dumps(spec, indent=1) + "\n", "utf-8")
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return spec


def _stored(values: np.ndarray, storage: np.dtype) -> np.ndarray:
    if storage.kind in "iu":
        info = np.iinfo(storage)
        return np.clip(np.rint(values), info.min, info.max).astype(storage)
    return values.astype(storage)
