"""metrics.jsonl plus TensorBoard events, consistent with the checkpoint a run resumes from.

Rows logged after the last checkpoint belong to work a resumed run repeats: on
resume `truncate(rows)` drops them from metrics.jsonl (atomically) and the
TensorBoard events are rewritten from the rows kept, so no row appears twice.
Only the writing process (process 0 of a multi-host run) touches the files.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from launch.files import write_text_atomic


class MetricsLog:
    def __init__(self, run_dir: Path, writer: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.events = Path(run_dir) / "tensorboard"
        self.is_writer = writer
        self.records: list[dict] = []
        if self.path.exists():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        self._tensorboard = None

    @property
    def rows(self) -> int:
        return len(self.records)

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` rows (those of the restored state) and rebuild TensorBoard."""
        if rows == len(self.records) and self.events.exists():
            return
        self.records = self.records[:rows]
        if not self.is_writer:
            return
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
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
            f.write(json.dumps(record) + "\n")
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
