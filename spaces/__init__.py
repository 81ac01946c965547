"""Search spaces: the Space core and one file per shipped space, registered by name.

    import spaces
    space = spaces.get("cnn1d")
    arch = space.sample(seed=0)

A user's own space is a `Space` subclass (or a factory returning one) passed to
`spaces.register(name, factory)`.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

from spaces.core import Arch, Space, closest

_REGISTRY: dict[str, Callable[..., Space]] = {}


def register(name: str, factory: Callable[..., Space] | None = None, *, overwrite: bool = False):
    """Register `factory(**options) -> Space` under `name`; usable as a decorator."""
    def add(f):
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"space {name!r} is already registered (pass overwrite=True)")
        _REGISTRY[name] = f
        return f
    return add(factory) if factory is not None else add


def register_model(name: str, model_class, *, input_shape: Sequence[int], num_classes: int,
                   overwrite: bool = False):
    """Register a supernet whose constructor declares its choices (`nas.choices`) as space
    `name`: the space is derived from the model (`spaces.module`)."""
    from spaces.module import model_space
    return register(name, model_space(name, model_class, input_shape, num_classes), overwrite=overwrite)


def names() -> list[str]:
    return sorted(_REGISTRY)


def options(name: str) -> dict[str, object]:
    """The options of space `name`: its factory's keyword arguments with their defaults."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown space {name!r}{closest(name, _REGISTRY)}; "
                         f"spaces are {names()}")
    factory = _REGISTRY[name]
    signature = inspect.signature(factory.__init__ if isinstance(factory, type) else factory)
    return {p.name: p.default for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def get(name: str, **options) -> Space:
    """A fresh instance of the registered space `name` (options go to its factory)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown space {name!r}{closest(name, _REGISTRY)}; "
                         f"spaces are {names()}")
    return _REGISTRY[name](**options)


def from_dict(description: dict) -> Space:
    """Rebuild a space from `Space.to_dict()` (restrictions and binding included)."""
    name, config = description["name"], dict(description.get("config", {}))
    levels, kernels = config.pop("sparsity_levels", None), config.pop("sparsity_kernels", None)
    structural = {k: v for k, v in description["choices"].items() if not k.startswith("sparsity")}
    space = get(name, **config) if name in _REGISTRY else Space(structural, name=name)
    if levels is not None:
        space = space.with_sparsity(levels, kernels)
    for key, options in description["choices"].items():
        space = space.restrict(key, options)
    if description.get("input_shape") is not None:
        space = space.bind(description["input_shape"], description["num_classes"])
    return space


from spaces import cnn1d, convnet, mlp, nb201, vit  # noqa: E402, F401  (each registers itself)

__all__ = ["Arch", "Space", "from_dict", "get", "names", "options", "register", "register_model"]
