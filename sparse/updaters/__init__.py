"""Sparse updaters, one file each, registered by name (`sparse.updaters.get`)."""
from sparse.updater import get, names, options
from sparse.updaters import gmp, granet, lamp, magnitude, nm, rigl, set, static  # noqa: F401, A004

__all__ = ["get", "names", "options"]
