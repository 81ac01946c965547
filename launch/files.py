"""Atomic file writes: a reader (or a crash) never sees half a file or half a directory."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private (0600); keep the umask's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def strict_json(obj):
    """`obj` with every non-finite float replaced by None: strict JSON (RFC 8259 has no
    NaN or Infinity), readable by any parser."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_directory_atomic(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Create directory `path` whole: `fill(tmp)` writes into a temporary sibling, which
    is then renamed to `path`. `path` must not exist yet (a directory cannot be renamed
    over another); on any failure the sibling is removed and `path` never appears."""
    path = Path(path)
    if path.exists():
        raise ValueError(f"{str(path)!r} already exists; choose another directory or delete it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp would make the directory private (0700); a fresh name keeps the umask's mode.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        fill(tmp)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
