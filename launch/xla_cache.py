"""The persistent XLA compilation cache `nas` commands use by default.

A search compiles its supernet step, its population scoring and its training
steps once per process: 40–50 s for the conv macro on CPU, ~11 s when the
programs come from a filled cache (docs/speed.md). So every `nas` command, and
every Ray Tune trial, keeps compiled programs on disk:

- `JAX_COMPILATION_CACHE_DIR`, when set, wins (JAX reads it itself);
- else `JAXNAS_COMPILATION_CACHE`: `0` (or `off`) turns the cache off, any
  other value names the directory;
- else `$XDG_CACHE_HOME/jaxnas/xla` (`~/.cache/jaxnas/xla`).

Programs that compile in under 0.2 s are not kept (JAX's own default, 1 s,
left most of a small search's steps out: a quick cnn1d search's phases took
11 s cold and 9 s with it, 6 s with 0.2 s); `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`
sets another threshold. An unwritable directory turns the cache off with a
warning; a search never fails for it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

SETTING = "JAXNAS_COMPILATION_CACHE"
JAX_SETTING = "JAX_COMPILATION_CACHE_DIR"
MIN_COMPILE_SECONDS = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
DEFAULT_MIN_COMPILE_SECONDS = 0.2


def directory(environ=os.environ) -> Path | None:
    """Where compiled programs are kept under `environ`, or None when the cache is off."""
    if environ.get(JAX_SETTING):
        return Path(environ[JAX_SETTING])
    chosen = environ.get(SETTING, "")
    if chosen.lower() in ("0", "off", "false", "no"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "jaxnas" / "xla"


def enable() -> Path | None:
    """Point JAX's persistent cache at `directory()` for this process and its children (Ray
    Tune's driver and trials, benchmark workers); returns it (None: off)."""
    import jax

    path = directory()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"compilation cache {path} cannot be created ({err}); compiling without it "
                      f"(set {SETTING}=0 to silence this)", stacklevel=2)
        return None
    os.environ[JAX_SETTING] = str(path)
    jax.config.update("jax_compilation_cache_dir", str(path))
    if MIN_COMPILE_SECONDS not in os.environ:  # the user's threshold wins
        os.environ[MIN_COMPILE_SECONDS] = str(DEFAULT_MIN_COMPILE_SECONDS)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", DEFAULT_MIN_COMPILE_SECONDS)
    return path
