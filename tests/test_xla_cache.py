"""The persistent compilation cache `nas` commands use by default (launch/xla_cache.py)."""
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from launch import xla_cache


def test_the_cache_directory_follows_the_settings_in_order(tmp_path):
    home = str(Path.home())
    assert xla_cache.directory({}) == Path(home) / ".cache" / "jaxnas" / "xla"
    assert xla_cache.directory({"XDG_CACHE_HOME": "/x"}) == Path("/x/jaxnas/xla")
    assert xla_cache.directory({"XDG_CACHE_HOME": "/x", "JAXNAS_COMPILATION_CACHE": "/y"}) == Path("/y")
    for off in ("0", "off", "OFF", "false", "no"):
        assert xla_cache.directory({"JAXNAS_COMPILATION_CACHE": off}) is None
    # JAX's own setting wins over everything.
    both = {"JAXNAS_COMPILATION_CACHE": "0", "JAX_COMPILATION_CACHE_DIR": "/z"}
    assert xla_cache.directory(both) == Path("/z")


def test_a_nas_command_fills_the_default_cache_and_one_setting_turns_it_off(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", xla_cache.SETTING)}
    env.update(XDG_CACHE_HOME=str(tmp_path / "home-cache"), JAX_PLATFORMS="cpu", XLA_FLAGS="",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    train = [sys.executable, "-m", "launch.cli", "train", "--space", "mlp", "--sample", "0",
             "--data", "digits", "--epochs", "1", "--quiet"]
    subprocess.run(train, env=env, check=True, capture_output=True, timeout=300)
    cached = tmp_path / "home-cache" / "jaxnas" / "xla"
    assert cached.is_dir() and any(cached.iterdir())
    off = tmp_path / "off"
    subprocess.run(train, env={**env, "XDG_CACHE_HOME": str(off), "JAXNAS_COMPILATION_CACHE": "0"},
                   check=True, capture_output=True, timeout=300)
    assert not off.exists()


def test_a_second_search_in_a_new_process_compiles_from_the_cache(tmp_path):
    """The same (bfloat16) search twice, each in a fresh `nas` process over one empty cache: the
    second loads its training steps (the supernet's and the retraining's) and its population
    evaluation from the cache instead of compiling them. JAX says so on stderr under
    JAX_LOG_COMPILES; the speed-up itself (first supernet step 3.1 s against 0.7 s) is
    `first_step_seconds` in metrics.jsonl, a number for benchmarks, not a test."""
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({
        "space": {"name": "mlp", "options": {"max_depth": 2, "widths": [16, 32]}}, "data": {"name": "digits"},
        "supernet": {"method": "sandwich", "epochs": 1},
        "search": {"controller": "aging", "evaluations": 10, "generation": 10, "population": 10,
                   "candidates": 1},
        "retrain": {"epochs": 1}, "precision": {"compute": "bfloat16"}}))
    env = {k: v for k, v in os.environ.items() if k != xla_cache.SETTING}
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla"), JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # every program is cached, however fast
    hits = []
    for run in ("first", "second"):
        command = [sys.executable, "-m", "launch.cli", "search", str(config), "--out", str(tmp_path / run),
                   "--quiet"]
        finished = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=300)
        hits.append(collections.Counter(re.findall(r"Persistent compilation cache hit for '([^']+)'",
                                                   finished.stderr)))
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert next(r["first_step_seconds"] for r in rows if r["phase"] == "supernet") > 0
        assert json.loads((tmp_path / run / "best" / "arch.json").read_text())["compute_dtype"] == "bfloat16"
    assert not hits[0]
    assert hits[1]["jit_step"] == 2 and hits[1]["jit__population_correct"] >= 1, hits[1]
