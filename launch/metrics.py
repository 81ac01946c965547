"""metrics.jsonl plus TensorBoard events, consistent with the checkpoint a run resumes from.

Rows logged after the last checkpoint belong to work a resumed run repeats: on
resume `truncate(rows)` drops them from metrics.jsonl (atomically) and the
TensorBoard events are rewritten from the rows kept, so no row appears twice.
Only the writing process (process 0 of a multi-host run) touches the files.
A row is appended whole, but a crash can still tear the last one: a torn last
row is dropped when the log is read (it belongs to work after the last
checkpoint); a damaged row before it is an error naming the line. Rows are
strict JSON: a non-finite number is written as null.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from launch.files import strict_json, write_text_atomic


def read_rows(path: Path) -> list[dict]:
    """The rows of metrics.jsonl; a torn (unparsable) last row is dropped."""
    return _read(path)[0]


def _line(record: dict) -> str:
    return json.dumps(strict_json(record), allow_nan=False) + "\n"


def _read(path: Path) -> tuple[list[dict], bool]:
    """(rows, whether a torn last row was dropped)."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        lines = path.read_bytes().decode(errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "phase" not in row or "step" not in row:
                raise ValueError("not a metrics row")
        except ValueError as err:
            if all(not rest.strip() for rest in lines[number:]):
                return rows, True  # the row a crash tore while appending
            raise ValueError(f"{path}: line {number} is not a metrics row ({err}); the log is "
                             "damaged before its last row") from None
        rows.append(row)
    return rows, False


class MetricsLog:
    def __init__(self, run_dir: Path, writer: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.events = Path(run_dir) / "tensorboard"
        self.is_writer = writer
        self.records: list[dict] = []
        self._torn = False  # the file ends in a row a crash tore: rewrite it before appending
        if self.path.exists():
            self.records, self._torn = _read(self.path)
        self._tensorboard = None

    @property
    def rows(self) -> int:
        return len(self.records)

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` rows (those of the restored state) and rebuild TensorBoard."""
        if rows == len(self.records) and self.events.exists() and not self._torn:
            return
        self.records = self.records[:rows]
        if not self.is_writer:
            return
        write_text_atomic(self.path, "".join(map(_line, self.records)))
        self._torn = False
        self.close()
        shutil.rmtree(self.events, ignore_errors=True)
        for record in self.records:
            self._scalars(record)
        self._flush()

    def log(self, phase: str, step: int, **values) -> None:
        record = {"phase": phase, "step": step, **values}
        self.records.append(record)
        if not self.is_writer:
            return
        with self.path.open("a") as f:
            f.write(_line(record))
        self._scalars(record)
        self._flush()

    def phase(self, name: str) -> list[dict]:
        return [r for r in self.records if r["phase"] == name]

    def _scalars(self, record: dict) -> None:
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter
            self._tensorboard = SummaryWriter(str(self.events))
        for key, value in record.items():
            if key not in ("phase", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(f"{record['phase']}/{key}", value, record["step"])

    def _flush(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
