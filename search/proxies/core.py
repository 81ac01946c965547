"""Zero-cost proxies: score an architecture at initialisation, without training it.

A proxy is registered by name with either a traced scoring function
`fn(net: Network, x, y) -> scalar` (run inside `jit`, `vmap`ped over a
population) or a host cost `fn(space, arch) -> number` (params, FLOPs). Higher
scores predict better networks.

"At initialisation" means the arch's own initialisation. The supernet is built
once (seed `seed`), at its largest size; every weight it shares with an arch has
the supernet's init distribution, whose scale follows the supernet's fan-in.
Each conv/dense kernel is multiplied by sqrt(fan-in in the supernet / fan-in in
the arch's compact model), so the arch's active slice has the distribution a
fresh init of its compact model has (variance-scaling initialisers: the std
is proportional to 1/sqrt(fan-in)). Biases start at zero and are unchanged.
Archs of one population thus share one random draw, which makes their scores
comparable (the draws differ only by each arch's own scale).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import nas
from search import engine
from search.parallel import population_chunk
from spaces.core import Arch, Space, closest
from sparse import masks as masklib


class Network(NamedTuple):
    """One arch of the supernet inside a trace, at the arch's own initialisation.
    `params`: every trainable leaf; `kernels`: names of its conv/dense kernels
    (`sparse.masks.kernel_names`), the weights most proxies sum over."""
    graphdef: object
    params: object
    rest: object
    probs: dict
    kernels: tuple[str, ...]

    def logits(self, params, x, train: bool = True):
        """Logits of the arch with weights `params` on `x` (`train`: BatchNorm uses the
        batch's statistics)."""
        return engine.apply(self.graphdef, params, self.rest, x, self.probs, train=train)[0]

    def kernel_leaves(self, tree) -> dict[str, jax.Array]:
        """The conv/dense kernels of `tree` (params, or gradients shaped like them)."""
        leaves = masklib.named_leaves(tree)
        return {name: leaves[name] for name in self.kernels}

    def kernel_gradient(self, objective, params=None) -> dict[str, jax.Array]:
        """∂ objective(params) / ∂ kernels at `params` (default: the arch's own init),
        every other leaf held fixed."""
        params = self.params if params is None else params

        def on_kernels(kernels):
            return objective(masklib.map_named(lambda name, _: kernels[name], params, list(kernels)))
        return jax.grad(on_kernels)(self.kernel_leaves(params))


@dataclasses.dataclass(frozen=True)
class Proxy:
    name: str
    fn: Callable
    traced: bool          # fn(net, x, y) inside jit; else fn(space, arch) on the host
    summary: str


_REGISTRY: dict[str, Proxy] = {}


def register(name: str, *, traced: bool = True):
    """Register a proxy function under `name` (a decorator); its docstring's first line
    is its summary."""
    def add(fn):
        if name in _REGISTRY:
            raise ValueError(f"proxy {name!r} is already registered")
        _REGISTRY[name] = Proxy(name, fn, traced, (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Proxy:
    if name not in _REGISTRY:
        raise ValueError(f"unknown proxy {name!r}{closest(name, _REGISTRY)}; proxies are {names()}")
    return _REGISTRY[name]


def fan_in(name: str, shape: Sequence[int]) -> int:
    """Inputs feeding one output unit of kernel `name`: in-features × window."""
    n_in, _, window = masklib.matrix_sizes(name, shape)
    return n_in * math.prod(window)


@functools.lru_cache(maxsize=8192)
def _compact_shapes(model_class, space: Space, items: tuple) -> dict[str, tuple[int, ...]]:
    if space.supernet_class is not None:
        return space.param_shapes(dict(items))
    fixed = space.fix(dict(items))
    abstract = nnx.eval_shape(lambda: model_class(fixed, rngs=nnx.Rngs(0)))
    return {n: tuple(v.shape) for n, v in masklib.named_leaves(nnx.state(abstract, nnx.Param)).items()}


def init_factors(model, arch: Arch, kernels: Sequence[str]) -> dict[str, float]:
    """Per kernel of `model` (a supernet), the factor that takes its weights to the
    scale of `arch`'s own init: sqrt(supernet fan-in / compact fan-in). Kernels the
    arch does not have keep factor 1 (nothing reads them)."""
    space = model.space
    compact = _compact_shapes(type(model), space, tuple(space.validate(arch).items()))
    leaves = masklib.named_leaves(nnx.state(model, nnx.Param))
    return {name: math.sqrt(fan_in(name, leaves[name].shape) / fan_in(name, compact[name]))
            if name in compact else 1.0 for name in kernels}


def at_init(params, factors: dict):
    """`params` with each named kernel multiplied by its factor (traceable)."""
    return masklib.map_named(lambda name, w: w * factors[name], params, list(factors))


@functools.lru_cache(maxsize=16)
def _supernet(space: Space, seed: int, dtype: str):
    return nas.supernet(space, seed=seed, dtype=dtype)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _traced_scores(name, graphdef, space, kernels, params, rest, index_vectors, factors, x, y):
    proxy = get(name)

    def one(index_vector, arch_factors):
        net = Network(graphdef, at_init(params, arch_factors), rest,
                      space.probs_from_index_vector(index_vector), kernels)
        return jnp.asarray(proxy.fn(net, x, y), jnp.float32)
    return jax.vmap(one)(index_vectors, factors)


def score_population(name: str, space: Space, archs: Sequence[Arch], x, y, seed: int = 0,
                     model=None, chunk: int | None = None, dtype: str = "float32") -> np.ndarray:
    """Proxy `name` of every arch (higher predicts better), on the examples `x` (a NumPy
    batch in the space's input layout, e.g. `[N, 40, 1]` for cnn1d) with integer
    labels `y`. The supernet is `space`'s, built with `seed` (or `model`, a user's
    supernet over `space`), computing in `dtype` (`nas.precision`; a given `model` computes
    in its own). Traced proxies run `chunk` archs per vmapped call (default: this backend's
    population chunk), one compilation per space and proxy."""
    proxy = get(name)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"proxy {name}: x must be a non-empty batch [N, ...] with N labels y; got "
                         f"x {x.shape}, y {y.shape}")
    if model is None:
        if space.supernet_class is None:
            raise ValueError(f"proxy {name}: space {space.name!r} has no supernet; pass model=, "
                             "your supernet built over this space")
        classes = space.num_classes or int(y.max()) + 1
        space = space.bind(x.shape[1:], classes)
    else:
        if space.choices != model.space.choices:
            raise ValueError(f"proxy {name}: model= is a supernet over space {model.space.name!r} "
                             f"with choices {model.space.choices}, not over {space.name!r}")
        space = model.space
    if space.input_shape is not None and tuple(x.shape[1:]) != tuple(space.input_shape):
        raise ValueError(f"proxy {name}: x has examples of shape {tuple(x.shape[1:])}; space "
                         f"{space.name!r} takes {tuple(space.input_shape)}")
    if space.num_classes is not None and (y.min() < 0 or y.max() >= space.num_classes):
        raise ValueError(f"proxy {name}: labels y range over [{y.min()}, {y.max()}]; space "
                         f"{space.name!r} has {space.num_classes} classes")
    archs = [space.validate(a) for a in archs]
    if not proxy.traced:
        return np.array([float(proxy.fn(space, a)) for a in archs], np.float64)
    if not archs:
        return np.zeros(0, np.float64)
    model = _supernet(space, seed, dtype) if model is None else model
    graphdef, params, rest = engine.split(model)
    kernels = tuple(masklib.kernel_names(params))
    chunk = population_chunk() if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"proxy {name}: chunk must be ≥ 1, got {chunk}")
    scores = []
    for start in range(0, len(archs), chunk):
        block = archs[start:start + chunk]
        padded = block + [block[0]] * (chunk - len(block))
        vectors = np.stack([space.index_vector(a) for a in padded])
        per_arch = [init_factors(model, a, kernels) for a in padded]
        factors = {k: np.array([f[k] for f in per_arch], np.float32) for k in kernels}
        out = _traced_scores(name, graphdef, space, kernels, params, rest, vectors, factors, x, y)
        scores.extend(np.asarray(out, np.float64)[:len(block)].tolist())
    return np.array(scores, np.float64)


def score(name: str, space: Space, arch: Arch, x, y, seed: int = 0, model=None,
          dtype: str = "float32") -> float:
    """Proxy `name` of one arch (see `score_population`)."""
    return float(score_population(name, space, [arch], x, y, seed=seed, model=model, chunk=1,
                                  dtype=dtype)[0])
