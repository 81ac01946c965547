"""A benchmark table: architectures of one space trained from scratch with one recipe.

`TABLE.csv` has one row per network (canonical arch, `Space.canonical`): `arch`
(JSON), `params`, `flops`, `accuracy_seed<s>` (test accuracy of seed s) per seed,
`mean` over the seeds, and `seconds` (training time summed over the seeds).
`TABLE.json` beside it says how the table was made: the space (`Space.to_dict`),
the data set and the training recipe, so a table can be extended and read back
without guessing.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

import spaces
from launch.files import write_json_atomic, write_text_atomic
from spaces.core import Arch, Space


def info_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


@dataclasses.dataclass
class Table:
    space: Space
    archs: list[Arch]
    params: np.ndarray          # int [n]
    flops: np.ndarray           # int [n]
    accuracy: np.ndarray        # float [n, seeds]: test accuracy per training seed
    seconds: np.ndarray         # float [n]
    info: dict                  # how the table was made (TABLE.json)

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def seeds(self) -> list[int]:
        return list(self.info["seeds"])

    @property
    def mean(self) -> np.ndarray:
        return self.accuracy.mean(axis=1)

    def within(self, min_params: int | None = None, max_params: int | None = None) -> "Table":
        """The rows whose parameter count lies in [min_params, max_params]."""
        keep = np.ones(len(self), bool)
        if min_params is not None:
            keep &= self.params >= min_params
        if max_params is not None:
            keep &= self.params <= max_params
        rows = np.flatnonzero(keep)
        return dataclasses.replace(self, archs=[self.archs[i] for i in rows], params=self.params[rows],
                                   flops=self.flops[rows], accuracy=self.accuracy[rows],
                                   seconds=self.seconds[rows])

    def index(self) -> dict[tuple, int]:
        """Row of each network, keyed by its canonical form."""
        return {tuple(self.space.canonical(a).items()): i for i, a in enumerate(self.archs)}

    def lookup(self, arch) -> int:
        """The row of `arch`'s network; KeyError naming the arch when the table lacks it."""
        key = tuple(self.space.canonical(arch).items())
        row = self.index().get(key)
        if row is None:
            raise KeyError(f"the table has no row for arch {json.dumps(dict(key))}")
        return row

    def save(self, path: str | Path) -> None:
        """Write TABLE.csv and TABLE.json atomically."""
        # TABLE.json first: a CSV without it could not be read back (or resumed).
        write_json_atomic(info_path(path), self.info)
        write_text_atomic(path, to_csv(self))


def columns(seeds) -> list[str]:
    return ["arch", "params", "flops", *[f"accuracy_seed{s}" for s in seeds], "mean", "seconds"]


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns(table.seeds))
    for i, arch in enumerate(table.archs):
        writer.writerow([json.dumps(arch), int(table.params[i]), int(table.flops[i]),
                         *[f"{a:.4f}" for a in table.accuracy[i]], f"{table.mean[i]:.4f}",
                         f"{table.seconds[i]:.1f}"])
    return out.getvalue()


def load(path: str | Path) -> Table:
    """The table at `path` (TABLE.csv with its TABLE.json)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"benchmark table {str(path)!r} does not exist (make one with "
                                "`nas bench build`)")
    meta = info_path(path)
    if not meta.exists():
        raise FileNotFoundError(f"benchmark table {str(path)!r} has no {meta.name} beside it "
                                "(written by `nas bench build`): it says which space and recipe")
    info = json.loads(meta.read_text())
    space = spaces.from_dict(info["space"])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        want = columns(info["seeds"])
        if reader.fieldnames != want:
            raise ValueError(f"benchmark table {str(path)!r}: columns are {reader.fieldnames}, "
                             f"expected {want}")
        rows = list(reader)
    archs = [space.validate(json.loads(r["arch"])) for r in rows]
    accuracy = np.array([[float(r[f"accuracy_seed{s}"]) for s in info["seeds"]] for r in rows],
                        np.float64).reshape(len(rows), len(info["seeds"]))
    return Table(space, archs, np.array([int(r["params"]) for r in rows], np.int64),
                 np.array([int(r["flops"]) for r in rows], np.int64), accuracy,
                 np.array([float(r["seconds"]) for r in rows], np.float64), info)
