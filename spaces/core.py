"""Space: an ordered set of named choices, each with ordered options.

Architectures are plain JSON-able dicts `{choice name: option}`. Inside `jit`
they travel as encodings: an option index per choice, or one probability vector
per choice (one-hot for a discrete architecture). A space that ships a supernet
also knows its analytic cost (`params`, `flops`) for a given input shape and
class count, which it carries (`bind`).
"""
from __future__ import annotations

import copy
import difflib
import functools
import itertools
import json
import math
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Arch = dict[str, Any]

_SCALARS = (bool, int, float, str)


def _as_option(value):
    """An option as the space holds it: JSON scalars as they are, arrays (lists or tuples,
    nested too) as tuples; None for anything else."""
    if isinstance(value, np.generic):  # a NumPy scalar: its Python value
        value = value.item()
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        items = tuple(_as_option(v) for v in value)
        return None if any(v is None for v in items) else items
    return None


def _same_option(a, b) -> bool:
    """Equal options, True never equal to 1 (nor False to 0), at any depth."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) \
            and all(_same_option(x, y) for x, y in zip(a, b))
    return a == b and isinstance(a, bool) == isinstance(b, bool)
SPARSITY = "sparsity"   # name of the searchable sparsity choice (`Space.with_sparsity`)


def check_sizes(space: str, integers: Mapping | None = None, numbers: Mapping | None = None) -> None:
    """Sizes of a space's options (widths, kernels, depths, heads, …) are positive: positive
    integers in `integers`, positive finite numbers in `numbers` (each an int/float or a
    sequence of them), else a ValueError naming the option and the value."""
    for allowed, fields in (("a positive integer", integers or {}), ("a positive number", numbers or {})):
        for field, value in fields.items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                if not number or v <= 0 or (allowed.endswith("integer") and not isinstance(v, int)):
                    raise ValueError(f"{space}: option {field} = {value!r}: {v!r} is not {allowed}")


def closest(name: str, valid: Sequence[str]) -> str:
    """' (did you mean X?)' when a close valid name exists, else ''."""
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Space:
    """Named choices with ordered options, plus (for shipped spaces) a supernet and costs.

    Subclasses set `name`, `supernet_class`, `default_input_shape`,
    `default_num_classes`, and implement `_costs(arch) -> (params, MACs)`
    for the bound `input_shape` and `num_classes`.
    """

    name = "custom"
    supernet_class = None
    _cost_space: "Space | None" = None  # `costed_as`: the space whose network the costs count
    default_input_shape: tuple[int, ...] | None = None
    default_num_classes: int | None = None

    def __init__(self, choices: Mapping[str, Sequence], *, name: str | None = None,
                 input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                 **config):
        if not choices:
            raise ValueError("a space needs at least one choice")
        self._choices: dict[str, tuple] = {}
        for key, options in choices.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"choice names must be non-empty strings, got {key!r}")
            given = tuple(options)
            if not given:
                raise ValueError(f"choice {key!r} has no options")
            options = tuple(_as_option(o) for o in given)
            bad = [g for g, o in zip(given, options) if o is None]
            if bad:
                raise ValueError(f"choice {key!r}: option {bad[0]!r} is neither a JSON scalar "
                                 "(int, float, str or bool) nor an array of them")
            if len(set(options)) != len(options):
                raise ValueError(f"choice {key!r} repeats an option: {options}")
            self._choices[key] = options
        if name is not None:
            self.name = name
        self.input_shape = tuple(input_shape) if input_shape is not None else (
            tuple(self.default_input_shape) if self.default_input_shape else None)
        self.num_classes = num_classes if num_classes is not None else self.default_num_classes
        self.config = dict(config)

    @classmethod
    def from_choices(cls, choices: Mapping[str, Sequence], name: str = "custom") -> "Space":
        """A black-box space with no supernet: sampling, evolution and encodings only."""
        return Space(choices, name=name)

    # ------------------------------------------------------------------ structure
    @property
    def choices(self) -> dict[str, tuple]:
        return dict(self._choices)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._choices)

    def size(self) -> int:
        """Number of architectures (product of option counts)."""
        return math.prod(len(o) for o in self._choices.values())

    def distinct_size(self, limit: int = 1_000_000) -> int:
        """Number of distinct networks: archs counted once per canonical form (`canonical`).
        A searched `sparsity` multiplies the structures; per-kernel sparsity choices count
        only for the kernels a structure has, so those are enumerated (up to `limit`)."""
        structural = self.without_sparsity()
        per_kernel = [k for k in self._choices if k.startswith(f"{SPARSITY}:")]
        if not per_kernel:
            levels = len(self._choices[SPARSITY]) if SPARSITY in self._choices else 1
            return levels * structural._distinct_structures(limit)
        return sum(math.prod(len(self._choices[k]) for k in self._used(arch, per_kernel))
                   for arch in structural._canonical_structures(limit))

    def _distinct_structures(self, limit: int) -> int:
        """Distinct networks of a space without sparsity choices. Spaces whose canonical
        form is not the identity count in closed form where enumeration is too big."""
        if type(self)._canonical is Space._canonical:
            return self.size()
        return len(self._canonical_structures(limit))

    def _canonical_structures(self, limit: int) -> list[Arch]:
        """Every canonical form of a space without sparsity choices, by enumeration."""
        forms = {tuple(self._canonical(arch).items()) for arch in self.enumerate(limit)}
        return [dict(form) for form in forms]

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every architecture, in index order; refuses spaces larger than `limit`."""
        if self.size() > limit:
            raise ValueError(f"space {self.name!r} has {self.size()} architectures, more than "
                             f"limit={limit}; sample it instead")
        for combo in itertools.product(*self._choices.values()):
            yield dict(zip(self._choices, combo))

    def _copy(self, **attrs) -> "Space":
        clone = copy.copy(self)
        clone.__dict__.pop("_structural_space", None)  # a clone's choices change: recompute it
        clone._choices = dict(self._choices)
        clone.config = dict(self.config)
        for key, value in attrs.items():
            setattr(clone, key, value)
        return clone

    def restrict(self, name: str, options: Sequence) -> "Space":
        """The sub-space where choice `name` keeps only `options` (original order kept)."""
        self._check_name(name)
        allowed = self._choices[name]
        options = list(options)
        wanted = [_as_option(o) for o in options]
        for given, option in zip(options, wanted):
            if not any(option is not None and _same_option(o, option) for o in allowed):
                raise ValueError(f"restrict: {given!r} is not an option of {name!r}; "
                                 f"options are {list(allowed)}")
        kept = tuple(o for o in allowed if any(_same_option(o, w) for w in wanted))
        if not kept:
            raise ValueError(f"restrict: choice {name!r} would have no options left")
        clone = self._copy()
        clone._choices[name] = kept
        return clone

    def fix(self, arch: Mapping) -> "Space":
        """The one-architecture space of `arch` (every choice restricted to its option)."""
        arch = self.validate(arch)
        clone = self._copy()
        clone._choices = {k: (v,) for k, v in arch.items()}
        return clone

    def bind(self, input_shape: Sequence[int] | None = None,
             num_classes: int | None = None) -> "Space":
        """This space for inputs `[batch, *input_shape]` and `num_classes` outputs."""
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        classes = num_classes if num_classes is not None else self.num_classes
        if shape is None or classes is None:
            raise ValueError(f"space {self.name!r} needs input_shape and num_classes")
        if any(not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
            raise ValueError(f"input_shape must be positive integers, got {shape}")
        if not isinstance(classes, (int, np.integer)) or classes < 2:
            raise ValueError(f"num_classes must be an integer ≥ 2, got {classes!r}")
        bound = self._copy(input_shape=tuple(int(d) for d in shape), num_classes=int(classes))
        bound._check_shape()
        return bound

    def _check_shape(self) -> None:
        """Subclasses reject input shapes their supernet cannot take."""

    def _key(self):
        return (type(self).__name__, self.name, tuple(self._choices.items()), self.input_shape,
                self.num_classes, tuple(sorted(self.config.items())),
                None if self._cost_space is None else self._cost_space._key())

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, Space) and self._key() == other._key()

    def __repr__(self):
        return f"<Space {self.name!r}: {len(self._choices)} choices, {self.size()} archs>"

    # ------------------------------------------------------------------ archs
    def _check_name(self, name: str) -> None:
        if name not in self._choices:
            raise ValueError(f"unknown choice {name!r}{closest(name, self._choices)}; "
                             f"choices are {list(self._choices)}")

    def validate(self, arch: Mapping) -> Arch:
        """The arch as a canonical dict in choice order; ValueError naming the bad key,
        the bad value and the allowed options."""
        if not isinstance(arch, Mapping):
            raise ValueError(f"an arch must be a dict of choice → option, got {type(arch).__name__}")
        for key in arch:
            if key not in self._choices:
                raise ValueError(f"arch has unknown choice {key!r}{closest(str(key), self._choices)};"
                                 f" choices of space {self.name!r} are {list(self._choices)}")
        canonical = {}
        for key, options in self._choices.items():
            if key not in arch:
                raise ValueError(f"arch is missing choice {key!r} (options: {list(options)})")
            value = arch[key]
            given = _as_option(value)
            matches = [o for o in options if given is not None and _same_option(o, given)]
            if not matches:
                raise ValueError(f"arch[{key!r}] = {value!r} is not allowed; "
                                 f"options are {list(options)}")
            canonical[key] = matches[0]
        return canonical

    def sample(self, seed: int | np.random.Generator = 0) -> Arch:
        """A uniformly random architecture."""
        rng = np.random.default_rng(seed)
        return {k: opts[rng.integers(len(opts))] for k, opts in self._choices.items()}

    def mutate(self, arch: Mapping, seed: int | np.random.Generator = 0,
               prob: float | None = None) -> Arch:
        """A mutated copy. Default: exactly one decision changes to another option that
        changes the network (aging evolution; a decision the network does not use, see
        `canonical`, is left alone). With `prob`: each decision is resampled to a
        different option with that probability (AutoFormer-style)."""
        arch = self.validate(arch)
        rng = np.random.default_rng(seed)
        if prob is None:
            moves = self._network_changes(arch)
            if not moves:
                return arch
            key = list(moves)[rng.integers(len(moves))]
            return {**arch, key: moves[key][rng.integers(len(moves[key]))]}
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mutate: prob must be in [0, 1], got {prob}")
        child = dict(arch)
        for key in [k for k, opts in self._choices.items() if len(opts) > 1 and rng.random() < prob]:
            others = [o for o in self._choices[key] if o != arch[key]]
            child[key] = others[rng.integers(len(others))]
        return child

    def neighbours(self, arch: Mapping) -> list[Arch]:
        """The distinct networks one decision away from `arch` (canonical forms, in decision
        then option order): every network `mutate` can return."""
        arch = self.validate(arch)
        out = {}
        for key, options in self._network_changes(arch).items():
            for option in options:
                network = self.canonical({**arch, key: option})
                out.setdefault(tuple(network.items()), network)
        return list(out.values())

    def _network_changes(self, arch: Arch) -> dict[str, list]:
        """Per decision, the other options that make a different network of `arch`
        (decisions with none left out)."""
        structure = self._canonical(self.structure(arch))
        per_kernel = [k for k in arch if k.startswith(f"{SPARSITY}:")]
        used = set(self._used(structure, per_kernel)) if per_kernel else set()

        def changes(key, option):
            if key.startswith(SPARSITY):           # a sparsity choice matters where its kernel is
                return key == SPARSITY or key in used
            return self._canonical(self.structure({**arch, key: option})) != structure

        moves = {k: [o for o in opts if o != arch[k] and changes(k, o)] for k, opts in self._choices.items()}
        return {k: options for k, options in moves.items() if options}

    def crossover(self, a: Mapping, b: Mapping, seed: int | np.random.Generator = 0) -> Arch:
        """Uniform crossover: each decision from `a` or `b` with probability 1/2."""
        a, b = self.validate(a), self.validate(b)
        rng = np.random.default_rng(seed)
        return {k: (a[k] if rng.random() < 0.5 else b[k]) for k in self._choices}

    def canonical(self, arch: Mapping) -> Arch:
        """The one encoding of `arch`'s network: every decision it does not use (a layer
        beyond the depth, an nb201 edge whose output is lost) set to a fixed option, so
        two archs are the same network exactly when their canonical forms are equal. The
        sparsity choice of a kernel the network does not have is unused too."""
        arch = self.validate(arch)
        canonical = {**arch, **self._canonical(self.structure(arch))}
        per_kernel = [k for k in arch if k.startswith(f"{SPARSITY}:")]
        if not per_kernel:
            return canonical
        used = set(self._used(self.structure(canonical), per_kernel))
        return self._first_options(canonical, [k for k in per_kernel if k not in used])

    def _used(self, structure: Mapping, per_kernel: Sequence[str]) -> list[str]:
        """The per-kernel sparsity choices whose kernel the network of `structure` has."""
        shapes = self.param_shapes(structure)
        return [k for k in per_kernel if k.split(":", 1)[1] in shapes]

    def _canonical(self, arch: Arch) -> Arch:
        """The canonical form of a validated arch without sparsity choices; spaces with
        decisions that some archs do not use override this (it must keep the network's
        outputs for every input and every supernet weight)."""
        return arch

    def _first_options(self, arch: Arch, names) -> Arch:
        """`arch` with the choices `names` set to their first option."""
        return {**arch, **{k: self._choices[k][0] for k in names}}

    def arch_to_json(self, arch: Mapping) -> str:
        return json.dumps(self.validate(arch))

    def arch_from_json(self, text: str) -> Arch:
        return self.validate(json.loads(text))

    # ------------------------------------------------------------------ sparsity
    def with_sparsity(self, levels: Sequence[float], kernels: Sequence[str] | None = None) -> "Space":
        """This space with searchable sparsity: one choice `sparsity` over `levels`
        for every prunable kernel, or with `kernels` one choice `sparsity:<kernel>`
        per kernel. The supernet ignores these choices; `sparse.levels` turns them
        into nested magnitude masks."""
        levels = tuple(float(s) for s in levels)
        if not levels or any(not 0.0 <= s < 1.0 for s in levels):
            raise ValueError(f"sparsity levels must be in [0, 1), got {list(levels)}")
        if any(k.startswith(SPARSITY) for k in self._choices):
            raise ValueError(f"space {self.name!r} already has sparsity choices")
        clone = self._copy()
        names = [SPARSITY] if kernels is None else [f"{SPARSITY}:{k}" for k in kernels]
        for name in names:
            clone._choices[name] = tuple(sorted(set(levels)))
        clone.config["sparsity_levels"] = tuple(sorted(set(levels)))
        clone.config["sparsity_kernels"] = tuple(kernels) if kernels is not None else None
        return clone

    def sparsity_of(self, arch: Mapping, kernel: str) -> float:
        """The sparsity `arch` gives `kernel` (0.0 when the space has no sparsity choice)."""
        if f"{SPARSITY}:{kernel}" in arch:
            return float(arch[f"{SPARSITY}:{kernel}"])
        return float(arch.get(SPARSITY, 0.0)) if SPARSITY in self._choices else 0.0

    def structure(self, arch: Mapping) -> Arch:
        """`arch` without its sparsity choices: what shapes the network."""
        return {k: v for k, v in arch.items() if not k.startswith(SPARSITY)}

    def without_sparsity(self) -> "Space":
        clone = self._copy()
        clone._choices = self.structure(self._choices)
        clone.config.pop("sparsity_levels", None)
        clone.config.pop("sparsity_kernels", None)
        return clone

    def param_shapes(self, arch: Mapping) -> dict[str, tuple[int, ...]]:
        """Shape of every trainable parameter of the compact model of `arch`, by dotted
        name (`sparse.masks.leaf_name`). Shipped spaces answer in closed form; others
        build the compact model abstractly (cached)."""
        structural = self._structural().validate(self.structure(arch))
        return dict(self._param_shapes(tuple(structural.items())))

    def _structural(self) -> "Space":
        """`without_sparsity()`, kept: `param_shapes` is asked for every arch of a space."""
        if "_structural_space" not in self.__dict__:
            self.__dict__["_structural_space"] = self.without_sparsity()
        return self.__dict__["_structural_space"]

    @functools.lru_cache(maxsize=4096)  # noqa: B019 — bounded; spaces live as long as the run
    def _param_shapes(self, items: tuple) -> tuple:
        from flax import nnx

        from sparse.masks import named_leaves
        fixed = self.without_sparsity().fix(dict(items))
        abstract = nnx.eval_shape(lambda: fixed.supernet_class(fixed, rngs=nnx.Rngs(0)))
        return tuple((n, tuple(v.shape)) for n, v in named_leaves(nnx.state(abstract, nnx.Param)).items())

    def to_dict(self) -> dict:
        """JSON-able description; `spaces.from_dict` rebuilds an equal space."""
        return {"name": self.name, "choices": {k: list(v) for k, v in self._choices.items()},
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "num_classes": self.num_classes, "config": dict(self.config)}

    def extremes(self, cost, limit: int = 50_000) -> tuple[Arch, Arch, bool]:
        """(argmin, argmax, exact) of `cost(arch)` over the space. Exact by enumeration
        up to `limit` archs; beyond, coordinate descent/ascent from the first/last
        options (exact for costs monotone in each choice, as the shipped spaces are)."""
        if self.size() <= limit:
            archs = list(self.enumerate())
            values = [cost(a) for a in archs]
            return archs[int(np.argmin(values))], archs[int(np.argmax(values))], True

        def coordinate(sign, start):
            arch, best = dict(start), sign * cost(start)
            improved = True
            while improved:
                improved = False
                for key, options in self._choices.items():
                    for option in options:
                        trial = {**arch, key: option}
                        value = sign * cost(trial)
                        if value < best:
                            arch, best, improved = trial, value, True
            return arch

        first = {k: o[0] for k, o in self._choices.items()}
        last = {k: o[-1] for k, o in self._choices.items()}
        return coordinate(1, first), coordinate(-1, last), False

    # ------------------------------------------------------------------ encodings
    def indices(self, arch: Mapping) -> dict[str, int]:
        arch = self.validate(arch)
        return {k: self._choices[k].index(v) for k, v in arch.items()}

    def from_indices(self, indices: Mapping[str, int] | Sequence[int]) -> Arch:
        if not isinstance(indices, Mapping):
            indices = dict(zip(self._choices, indices))
        out = {}
        for key, options in self._choices.items():
            i = int(indices[key])
            if not 0 <= i < len(options):
                raise ValueError(f"index {i} out of range for choice {key!r} "
                                 f"({len(options)} options)")
            out[key] = options[i]
        return out

    def index_vector(self, arch: Mapping) -> np.ndarray:
        """Option indices as `int32[num_choices]` (stack these to batch a population)."""
        return np.array(list(self.indices(arch).values()), np.int32)

    def probs_from_index_vector(self, index_vector) -> dict[str, jax.Array]:
        """One-hot probability vectors from `int32[num_choices]`; traceable (vmap a population)."""
        return {k: jax.nn.one_hot(index_vector[i], len(opts), dtype=jnp.float32)
                for i, (k, opts) in enumerate(self._choices.items())}

    def one_hot(self, arch: Mapping) -> dict[str, np.ndarray]:
        """One probability vector `float32[K]` per choice, one-hot at the arch's option."""
        out = {}
        for key, i in self.indices(arch).items():
            vec = np.zeros(len(self._choices[key]), np.float32)
            vec[i] = 1.0
            out[key] = vec
        return out

    def uniform_probs(self) -> dict[str, np.ndarray]:
        return {k: np.full(len(o), 1.0 / len(o), np.float32) for k, o in self._choices.items()}

    def from_probs(self, probs: Mapping) -> Arch:
        """The arch of the most probable option of each choice (argmax discretisation)."""
        return {k: opts[int(np.argmax(np.asarray(probs[k])))] for k, opts in self._choices.items()}

    def encode(self, arch=None) -> dict:
        """Probability vectors for a supernet: from a hard arch, a soft one (arrays),
        a mix of both, or None when every choice has a single option."""
        if arch is None:
            if self.size() != 1:
                raise ValueError(f"space {self.name!r} has {self.size()} architectures: pass an arch")
            return {k: np.ones(1, np.float32) for k in self._choices}
        if not isinstance(arch, Mapping):
            raise ValueError(f"an arch must be a dict of choice → option, got {type(arch).__name__}")
        for key in arch:
            self._check_name(key)
        soft = {k: v for k, v in arch.items() if isinstance(v, (np.ndarray, jax.Array))}
        # Soft choices take a placeholder option so the rest validates as one arch.
        hard = self.one_hot({k: self._choices[k][0] if k in soft else v for k, v in arch.items()})
        for key, vec in soft.items():
            if vec.shape != (len(self._choices[key]),):
                raise ValueError(f"probs[{key!r}] has shape {vec.shape}; choice {key!r} has "
                                 f"{len(self._choices[key])} options")
            hard[key] = jnp.asarray(vec, jnp.float32)
        return hard

    # ------------------------------------------------------------------ costs
    def params(self, arch: Mapping) -> int:
        """Trainable parameters of the extracted model of `arch` (`_costs`: a closed form or
        the abstract model); of the network of `costed_as`'s space when one is set."""
        if self._cost_space is not None:
            return self._cost_space.params(self.structure(self.validate(arch)))
        return int(self._bound_for_cost()._costs(self.validate(arch))[0])

    def flops(self, arch: Mapping) -> int:
        """Multiply–accumulates of one forward pass of one example (`_costs`; the NAS
        convention calls these FLOPs): every matmul and convolution."""
        if self._cost_space is not None:
            return self._cost_space.flops(self.structure(self.validate(arch)))
        return int(self._bound_for_cost()._costs(self.validate(arch))[1])

    def costed_as(self, other: "Space") -> "Space":
        """This space (its supernet, choices and encodings), with `params` and `flops` of
        `other`'s network of the same structural choices: a run that searches with one
        form of a network (e.g. with BatchNorm) and exports another budgets the export."""
        if set(other.without_sparsity().names) != set(self.without_sparsity().names):
            raise ValueError(f"costed_as: {other!r} has other choices than {self!r}")
        return self._copy(_cost_space=other)

    def counted_param_shapes(self, arch: Mapping) -> dict[str, tuple[int, ...]]:
        """`param_shapes` of the network `params` counts: `costed_as`'s, else this space's."""
        if self._cost_space is None:
            return self.param_shapes(arch)
        return self._cost_space.param_shapes(self.structure(self.validate(arch)))

    def _bound_for_cost(self) -> "Space":
        if self.supernet_class is None:
            raise TypeError(f"space {self.name!r} has no supernet and so no cost model")
        if self.input_shape is None or self.num_classes is None:
            raise ValueError(f"space {self.name!r}: bind(input_shape, num_classes) first")
        return self

    def _costs(self, arch: Arch) -> tuple[int, int]:
        """(params, MACs) of the compact model of a validated arch, read off the model built
        abstractly (shapes only: nothing is initialised or run; `nas.count_params`,
        `nas.count_macs`) and cached per arch. Shipped spaces override it with closed forms,
        a speed-up tested against this."""
        return self._abstract_costs(tuple(self.structure(arch).items()))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 — bounded; spaces live as long as the run
    def _abstract_costs(self, items: tuple) -> tuple[int, int]:
        from flax import nnx

        from nas.supernet import count_macs, count_params
        fixed = self.without_sparsity().fix(dict(items))
        abstract = nnx.eval_shape(lambda: fixed.supernet_class(fixed, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(abstract)
        probs = fixed.encode(None)

        def forward(state, x):
            return nnx.merge(graphdef, state).forward(x, probs, train=False)
        example = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        return count_params(abstract), count_macs(forward, state, example)
