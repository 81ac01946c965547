"""The persistent compilation cache `nas` commands use by default (launch/xla_cache.py)."""
import os
import subprocess
import sys
from pathlib import Path

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
