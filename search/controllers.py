"""Black-box controllers: one ask/tell interface for any evaluator.

    ctrl = controllers.get("aging", space, seed=0, population=50, sample=10)
    for _ in range(cycles):
        archs = ctrl.ask(8)
        ctrl.tell(archs, [evaluate(a) for a in archs])   # higher is better
    ctrl.best()                                            # the best arch told so far

The evaluator can be anything: inherited supernet weights, a zero-cost proxy,
full training, a tabular benchmark, a user function. Multi-objective
controllers (`nsga2`) take a tuple of scores per arch, every objective
maximised (pass −params to prefer small models); `ctrl.front()` is the
non-dominated set of everything told. Candidates are filtered by
`constraint(arch) -> bool` before they are asked, so nothing outside a
params/FLOPs window is ever evaluated. The state is plain JSON
(`state_dict` / `load_state_dict`), so it checkpoints with the run and a
resumed controller asks exactly what the uninterrupted one would have.
Rules and defaults: `docs/algorithms.md` §3.
"""
from __future__ import annotations

import collections
import inspect
import math
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from search import pareto
from spaces.core import Arch, Space, closest

Constraint = Callable[[Arch], bool]

_REGISTRY: dict[str, type] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, space: Space, seed: int = 0, **kwargs) -> "Controller":
    """The controller `name` over `space`; `kwargs` are the controller's options."""
    valid = options(name)
    for option in kwargs:
        if option not in valid:
            raise ValueError(f"controller {name!r} has no option {option!r}"
                             f"{closest(option, valid)}; its options are {valid}")
    return _REGISTRY[name](space, seed=seed, **kwargs)


def options(name: str) -> list[str]:
    """The keyword options of controller `name` (its and its bases' constructor arguments)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown controller {name!r}{closest(name, _REGISTRY)}; "
                         f"controllers are {names()}")
    return sorted({p for klass in _REGISTRY[name].__mro__ if klass is not object
                   for p in inspect.signature(klass.__init__).parameters}
                  - {"self", "space", "seed", "kw"})


def _positive_int(owner: str, field: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {field} must be a positive integer, got {value!r}")
    return int(value)


def _key(arch: Mapping) -> tuple:
    return tuple(arch.items())


def _two_distinct(rng: np.random.Generator, members: int) -> tuple[int, int]:
    """Two different indices below `members`, uniformly (the same one when there is only one):
    a crossover or tournament of a member with itself wastes the draw."""
    if members < 2:
        return 0, 0
    i, j = rng.choice(members, 2, replace=False)
    return int(i), int(j)


def _is_mutation(rank: int, mutations: int, per_generation: int) -> bool:
    """Whether child `rank` of a generation is a mutant: exactly `mutations` of every
    `per_generation` ranks are, spread evenly so that any run of asks mixes both kinds."""
    return (rank + 1) * mutations // per_generation > rank * mutations // per_generation


class Controller:
    """Base: the history of told (arch, score) pairs, constraint filtering and the RNG.

    Subclasses implement `_propose(rng, slot) -> arch` (one candidate for position
    `slot` of the current ask; constraint and duplicate filtering happen here) and
    may override `_observe(archs, scores)`. Archs are compared as networks: the
    history holds canonical forms (`Space.canonical`), and `_observe` also receives
    proposals of told networks with the score told before.
    """

    name = "controller"
    objectives = 1  # how many scores per arch `tell` expects; None: any number

    def __init__(self, space: Space, seed: int = 0, constraint: Constraint | None = None,
                 max_tries: int = 10_000):
        self.space = space
        self.constraint = constraint
        self.max_tries = _positive_int(self.name, "max_tries", max_tries)
        self.rng = np.random.default_rng(seed)
        self.history: list[tuple[Arch, tuple[float, ...]]] = []
        self._seen: dict[tuple, tuple[float, ...]] = {}   # canonical arch → its latest score

    # ------------------------------------------------------------------ interface
    def ask(self, n: int = 1) -> list[Arch]:
        """`n` candidates that satisfy the constraint, each the canonical form
        (`Space.canonical`) of a network neither told nor asked before while the space
        still has such networks within reach."""
        n = _positive_int(self.name, "ask(n)", n)
        out, settled = [], set()
        for _ in range(n):
            arch = self._new_network(settled, len(out))
            settled.add(_key(arch))
            out.append(arch)
        return out

    def _new_network(self, settled: set[tuple], slot: int) -> Arch:
        """One candidate for `slot`, a network not in `settled` (this ask's networks so
        far, asked or told back). A proposal of a network already told is not asked
        again: its score is told back at once (`_observe`; once per ask, so a controller
        circling among told networks does not fill its population with them) and the
        controller proposes anew. After a tenth of `max_tries` the proposals are uniform
        samples, and after a fifth a repeat is accepted: a small (or tightly
        constrained) space runs out of networks."""
        arch = None
        for attempt in range(self.max_tries):
            own = attempt < self.max_tries // 10 or attempt >= self.max_tries // 5
            proposal = self._propose(self.rng, slot) if own else self.space.sample(self.rng)
            candidate = self.space.canonical(proposal)
            if self.constraint is not None and not self.constraint(candidate):
                continue
            arch, key = candidate, _key(candidate)
            if attempt >= self.max_tries // 5 or key not in self._seen and key not in settled:
                return arch
            if key in self._seen and key not in settled and attempt < self.max_tries // 10:
                settled.add(key)
                self._observe([candidate], [self._seen[key]])
        if arch is None:
            raise ValueError(f"{self.name}: no architecture satisfying the constraint in "
                             f"{self.max_tries} tries; loosen it (e.g. search.max_params)")
        return arch

    def tell(self, archs: Sequence[Mapping], scores: Sequence) -> None:
        """Record evaluated archs; `scores[i]` is a number, or a tuple of numbers
        for multi-objective controllers (every entry: higher is better)."""
        if len(archs) != len(scores):
            raise ValueError(f"{self.name}: tell got {len(archs)} archs but {len(scores)} scores")
        archs = [self.space.canonical(a) for a in archs]
        rows = [self._score_row(s) for s in scores]
        for arch, row in zip(archs, rows):
            self.history.append((arch, row))
            self._seen[_key(arch)] = row
        self._observe(archs, rows)

    def _best(self, caller: str) -> tuple[Arch, tuple[float, ...]]:
        if not self.history:
            raise ValueError(f"{self.name}: {caller}() before any tell()")
        return max(self.history, key=lambda item: item[1])

    def best(self) -> Arch:
        """The told arch with the highest (first) score."""
        return dict(self._best("best")[0])

    def best_score(self):
        """The score of `best()`: a number, or the tuple for multi-objective scores."""
        row = self._best("best_score")[1]
        return row[0] if len(row) == 1 else row

    def front(self) -> list[tuple[Arch, tuple[float, ...]]]:
        """The non-dominated (arch, scores) pairs of everything told."""
        if not self.history:
            return []
        front = pareto.non_dominated_sort(np.array([row for _, row in self.history]))[0]
        return [(dict(self.history[i][0]), self.history[i][1]) for i in front]

    def state_dict(self) -> dict:
        """JSON-able state: history, RNG and the controller's own fields."""
        return {"name": self.name, "rng": self.rng.bit_generator.state,
                "history": [[a, list(row)] for a, row in self.history], **self._state()}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state is for controller {state.get('name')!r}, not {self.name!r}")
        self.rng.bit_generator.state = state["rng"]
        self.history = [(self.space.validate(a), tuple(float(v) for v in row))
                        for a, row in state["history"]]
        self._seen = {_key(self.space.canonical(a)): row for a, row in self.history}
        self._load_state(state)

    # ------------------------------------------------------------------ hooks
    def _propose(self, rng: np.random.Generator, slot: int) -> Arch:
        """One candidate; `slot` candidates of this ask came before it (nothing of this
        ask is told yet, so slot tells its candidates apart)."""
        return self.space.sample(rng)

    def _observe(self, archs: list[Arch], rows: list[tuple[float, ...]]) -> None:
        pass

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: Mapping) -> None:
        pass

    def _score_row(self, score) -> tuple[float, ...]:
        row = tuple(float(v) for v in score) if isinstance(score, (tuple, list, np.ndarray)) \
            else (float(score),)
        if self.objectives is not None and len(row) != self.objectives:
            raise ValueError(f"{self.name}: expects {self.objectives} score(s) per arch, got {score!r}")
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{self.name}: scores must be finite numbers, got {score!r}")
        return row


@register("random")
class RandomSearch(Controller):
    """Uniform random sampling (without repeats while unseen archs remain).
    Scores may carry any number of objectives; `front()` gives their Pareto set."""

    objectives = None


@register("aging")
class AgingEvolution(Controller):
    """Regularized (aging) evolution, Real et al. 2019.

    The first `population` asks are random. Afterwards each candidate is one
    cycle: a one-decision mutation of the best of `sample` (default
    min(10, population)) members drawn at random from the population; every told
    arch joins the population and the **oldest** member leaves once it holds more
    than `population`. An ask of n runs n cycles on the same population (their
    children are told together), so n should stay well below `population`: n ≥
    `population` retires every member at once, which is generational selection,
    not aging, and warns.
    """

    def __init__(self, space: Space, seed: int = 0, population: int = 50,
                 sample: int | None = None, **kw):
        super().__init__(space, seed, **kw)
        self.population_size = _positive_int(self.name, "population", population)
        if sample is None:
            sample = min(10, self.population_size)
        self.sample_size = _positive_int(self.name, "sample", sample)
        if self.sample_size > self.population_size:
            raise ValueError(f"aging: sample ({sample}) must be ≤ population ({population})")
        self.population: collections.deque = collections.deque()

    def ask(self, n: int = 1) -> list[Arch]:
        n = _positive_int(self.name, "ask(n)", n)
        cycles = n - max(self.population_size - len(self.population), 0)
        if cycles >= self.population_size:
            warnings.warn(f"aging: ask({n}) runs {cycles} cycles on a population of "
                          f"{self.population_size}; telling their children retires every member "
                          "at once (generational, not aging evolution): ask fewer than population "
                          "at a time (search.generation < search.population)", stacklevel=2)
        return super().ask(n)

    def _propose(self, rng, slot):
        if len(self.population) + slot < self.population_size or not self.population:
            return self.space.sample(rng)
        return self.space.mutate(self._tournament(rng), rng)

    def _tournament(self, rng) -> Arch:
        """The best of `sample` members drawn at random (of the members told so far when a
        batch straddles the random start)."""
        picks = rng.choice(len(self.population), min(self.sample_size, len(self.population)),
                           replace=False)
        return max((self.population[i] for i in picks), key=lambda item: item[1])[0]

    def _observe(self, archs, rows):
        for item in zip(archs, rows):
            self.population.append(item)
            if len(self.population) > self.population_size:
                self.population.popleft()

    def _state(self):
        return {"population": [[a, list(r)] for a, r in self.population]}

    def _load_state(self, state):
        self.population = collections.deque(
            (self.space.validate(a), tuple(r)) for a, r in state["population"])


@register("grea")
class ProxyAssistedAging(AgingEvolution):
    """GradSign-assisted regularized evolution (G-REA, Zhang & Jia 2022): aging
    evolution whose every cycle draws `mutants` one-decision mutations of the
    tournament's parent, ranks them with a cheap `scorer(archs) -> scores` (a
    zero-cost proxy, higher is better) and proposes only the best-scored one, so the
    expensive evaluation is spent on it alone. Mutants outside the constraint or
    already told are skipped while others remain. Scores are cached per network.
    """

    def __init__(self, space: Space, seed: int = 0, mutants: int = 10,
                 scorer: Callable[[list[Arch]], Sequence[float]] | None = None, **kw):
        super().__init__(space, seed, **kw)
        self.mutants = _positive_int(self.name, "mutants", mutants)
        self.scorer = scorer
        self._scores: dict[tuple, float] = {}

    def _propose(self, rng, slot):
        if len(self.population) + slot < self.population_size or not self.population:
            return self.space.sample(rng)
        if self.scorer is None:
            raise ValueError("grea: no scorer; pass scorer=, a function of a list of archs "
                             "returning one proxy score each (e.g. search.proxies)")
        parent = self._tournament(rng)
        mutants = {}
        for _ in range(self.mutants):
            child = self.space.canonical(self.space.mutate(parent, rng))
            mutants.setdefault(_key(child), child)
        fresh = [a for k, a in mutants.items() if k not in self._seen
                 and (self.constraint is None or self.constraint(a))]
        pool = fresh or list(mutants.values())
        unscored = [a for a in pool if _key(a) not in self._scores]
        if unscored:
            for arch, value in zip(unscored, self.scorer(unscored)):
                self._scores[_key(arch)] = float(value)
        return max(pool, key=lambda a: self._scores[_key(a)])


@register("autoformer")
class AutoFormerEvolution(Controller):
    """The AutoFormer / SPOS genetic algorithm.

    The first `population` asks are random. The children that follow form
    generations of `mutations + crossovers`: exactly `mutations` mutants of a
    random parent (every decision resampled with probability `mutation_prob`)
    and `crossovers` uniform crossovers of two different random parents. The
    parents of a generation are the `parents` best archs told before it (the
    initial population and all earlier generations), so asking a generation in
    several smaller batches gives the same GA. Candidates outside the constraint
    (the params/FLOPs window) are rejected before evaluation.
    """

    def __init__(self, space: Space, seed: int = 0, population: int = 50, parents: int = 10,
                 mutations: int = 25, crossovers: int = 25, mutation_prob: float = 0.2, **kw):
        super().__init__(space, seed, **kw)
        self.population_size = _positive_int(self.name, "population", population)
        self.parents = _positive_int(self.name, "parents", parents)
        self.mutations = int(mutations)
        self.crossovers = int(crossovers)
        if self.mutations < 0 or self.crossovers < 0 or self.mutations + self.crossovers == 0:
            raise ValueError(f"autoformer: mutations ({mutations}) and crossovers ({crossovers}) "
                             "must be ≥ 0 and not both 0")
        if not 0.0 <= mutation_prob <= 1.0:
            raise ValueError(f"autoformer: mutation_prob must be in [0, 1], got {mutation_prob}")
        self.mutation_prob = float(mutation_prob)
        self._ranked: tuple[int, list[Arch]] = (-1, [])

    def _parents(self, told: int) -> list[Arch]:
        """The `parents` best of the first `told` archs of the history (kept: every
        proposal asks, and the history only grows)."""
        if self._ranked[0] != told:
            ranked = sorted(self.history[:told], key=lambda item: item[1], reverse=True)
            self._ranked = (told, [a for a, _ in ranked[:self.parents]])
        return self._ranked[1]

    def _propose(self, rng, slot):
        child = len(self.history) + slot - self.population_size
        if child < 0 or not self.history:
            return self.space.sample(rng)
        per_generation = self.mutations + self.crossovers
        generation, rank = divmod(child, per_generation)
        parents = self._parents(min(self.population_size + generation * per_generation,
                                    len(self.history)))
        if _is_mutation(rank, self.mutations, per_generation):
            return self.space.mutate(parents[rng.integers(len(parents))], rng,
                                     prob=self.mutation_prob)
        i, j = _two_distinct(rng, len(parents))
        return self.space.crossover(parents[i], parents[j], rng)

    def _load_state(self, state):
        self._ranked = (-1, [])           # ranked from the history that was replaced


@register("nsga2")
class NSGA2(Controller):
    """NSGA-II (Deb et al. 2002) for a Pareto front of several objectives.

    The first `population` asks are random. Afterwards parents are chosen by
    binary tournament of two different members on (front rank, crowding
    distance) in the current population; a child is their uniform crossover
    followed by mutation with per-decision probability `mutation_prob`. Told
    children are merged with the population and the best `population` survive
    by non-dominated sorting and crowding distance.
    """

    objectives = None

    def __init__(self, space: Space, seed: int = 0, population: int = 50,
                 mutation_prob: float = 0.2, **kw):
        super().__init__(space, seed, **kw)
        self.population_size = _positive_int(self.name, "population", population)
        if not 0.0 <= mutation_prob <= 1.0:
            raise ValueError(f"nsga2: mutation_prob must be in [0, 1], got {mutation_prob}")
        self.mutation_prob = float(mutation_prob)
        self.population: list[tuple[Arch, tuple[float, ...]]] = []
        self._standing = None   # `_rank()` of the population, kept until it changes

    def _tournament(self, rng, ranks, crowding) -> Arch:
        i, j = _two_distinct(rng, len(self.population))
        better = i if (ranks[i], -crowding[i]) < (ranks[j], -crowding[j]) else j
        return self.population[better][0]

    def _propose(self, rng, slot):
        if len(self.population) + slot < self.population_size or not self.population:
            return self.space.sample(rng)
        if self._standing is None:
            self._standing = self._rank()
        ranks, crowding = self._standing
        child = self.space.crossover(self._tournament(rng, ranks, crowding),
                                     self._tournament(rng, ranks, crowding), rng)
        return self.space.mutate(child, rng, prob=self.mutation_prob)

    def _rank(self) -> tuple[np.ndarray, np.ndarray]:
        """(front rank, crowding distance) of every member."""
        scores = np.array([row for _, row in self.population])
        ranks, crowding = np.zeros(len(scores), int), np.zeros(len(scores))
        for r, members in enumerate(pareto.non_dominated_sort(scores)):
            ranks[members] = r
            crowding[members] = pareto.crowding_distance(scores[members])
        return ranks, crowding

    def _observe(self, archs, rows):
        widths = {len(r) for _, r in self.population} | {len(r) for r in rows}
        if len(widths) > 1:
            raise ValueError(f"nsga2: every arch needs the same number of objectives, got {widths}")
        # The population holds distinct networks: one told back from history while still
        # a member (or told twice) would only crowd the front.
        merged, members = list(self.population), {_key(a) for a, _ in self.population}
        for arch, row in zip(archs, rows):
            if _key(arch) not in members:
                members.add(_key(arch))
                merged.append((arch, row))
        if len(merged) > self.population_size:
            keep = pareto.nsga2_select(np.array([r for _, r in merged]), self.population_size)
            merged = [merged[i] for i in keep]
        self.population, self._standing = merged, None

    def _state(self):
        return {"population": [[a, list(r)] for a, r in self.population]}

    def _load_state(self, state):
        self.population = [(self.space.canonical(a), tuple(r)) for a, r in state["population"]]
        self._standing = None
