"""Everything that runs: config, data, training loops, checkpoints, export, the `nas` CLI."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jaxnas")  # the one version: pyproject.toml's `version`
except PackageNotFoundError:  # a source tree that was never installed (`make install` installs it)
    __version__ = "unknown"
