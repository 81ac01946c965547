"""Ask/tell controllers: every controller on every space, their defining rules, state round trips."""
import json
import zlib

import numpy as np
import pytest

import spaces
from search import controllers, pareto
from spaces.core import Space

TOY = Space.from_choices({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3], "c": ["x", "y"]}, name="toy")


def _score(space, arch):
    """A deterministic synthetic objective: the sum of option indices."""
    return float(sum(space.indices(arch).values()))


@pytest.mark.parametrize("space_name", spaces.names() + ["toy"])
@pytest.mark.parametrize("name", ["random", "aging", "autoformer", "nsga2"])
def test_every_controller_runs_on_every_space(name, space_name):
    space = TOY if space_name == "toy" else spaces.get(space_name)
    ctrl = controllers.get(name, space, seed=0, **({} if name == "random" else {"population": 8}))
    for _ in range(4):
        archs = ctrl.ask(5)
        assert len(archs) == 5 and all(space.validate(a) == a for a in archs)
        scores = [_score(space, a) for a in archs]
        ctrl.tell(archs, [(s, -s / 2) for s in scores] if name == "nsga2" else scores)
    best = ctrl.best()
    assert _score(space, best) == max(_score(space, a) for a, _ in ctrl.history)


def test_names_and_errors():
    assert set(controllers.names()) >= {"random", "aging", "autoformer", "nsga2"}
    with pytest.raises(ValueError, match="did you mean 'aging'"):
        controllers.get("agin", TOY)
    ctrl = controllers.get("aging", TOY, population=4, sample=2)
    with pytest.raises(ValueError, match="2 archs but 1 scores"):
        ctrl.tell(ctrl.ask(2), [1.0])
    with pytest.raises(ValueError, match="expects 1 score"):
        ctrl.tell(ctrl.ask(1), [(1.0, 2.0)])
    with pytest.raises(ValueError, match="no option 'populaton' .*did you mean 'population'"):
        controllers.get("aging", TOY, populaton=3)
    with pytest.raises(ValueError, match="before any tell"):
        controllers.get("random", TOY).best()
    with pytest.raises(ValueError, match="sample .* must be ≤ population"):
        controllers.get("aging", TOY, population=2, sample=5)
    never = controllers.get("random", TOY, constraint=lambda a: False, max_tries=50)
    with pytest.raises(ValueError, match="no architecture satisfying the constraint"):
        never.ask(1)


def test_random_covers_a_small_space_without_repeats():
    ctrl = controllers.get("random", TOY, seed=3)
    archs = ctrl.ask(TOY.size())
    assert len({tuple(a.items()) for a in archs}) == TOY.size()


@pytest.mark.parametrize("name", ["random", "aging", "autoformer", "nsga2"])
def test_constraint_is_never_violated(name):
    space = spaces.get("cnn1d")
    budget = 5000
    ctrl = controllers.get(name, space, seed=1, **({} if name == "random" else {"population": 10}),
                           constraint=lambda a: space.params(a) <= budget)
    for _ in range(5):
        archs = ctrl.ask(10)
        assert all(space.params(a) <= budget for a in archs)
        scores = [float(space.params(a)) for a in archs]
        ctrl.tell(archs, [(s, 0.0) for s in scores] if name == "nsga2" else scores)


def test_aging_removes_the_oldest_and_mutates_the_best_of_the_sample():
    ctrl = controllers.get("aging", TOY, seed=0, population=4, sample=4)
    first = ctrl.ask(4)
    ctrl.tell(first, [0.0, 3.0, 1.0, 2.0])
    # With sample == population the tournament always picks the best member.
    child = ctrl.ask(1)[0]
    diffs = [k for k in TOY.names if child[k] != first[1][k]]
    assert len(diffs) == 1
    ctrl.tell([child], [-1.0])
    population = [a for a, _ in ctrl.population]
    assert population == first[1:] + [child]        # the oldest (first[0]) left


def test_autoformer_children_come_from_the_top_parents():
    space = spaces.get("cnn1d")
    ctrl = controllers.get("autoformer", space, seed=0, population=20, parents=3,
                           mutations=0, crossovers=10, mutation_prob=0.0)
    first = ctrl.ask(20)
    ctrl.tell(first, [_score(space, a) for a in first])
    parents = sorted(first, key=lambda a: -_score(space, a))[:3]
    for child in ctrl.ask(10):
        # Pure crossover: every decision is copied from one of the three best parents.
        assert all(any(child[k] == p[k] for p in parents) for k in space.names)


def test_nsga2_front_is_the_brute_force_non_dominated_set():
    ctrl = controllers.get("nsga2", TOY, seed=0, population=6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        archs = ctrl.ask(6)
        ctrl.tell(archs, [(float(rng.integers(5)), float(rng.integers(5))) for _ in archs])
    rows = [row for _, row in ctrl.history]
    expected = {i for i, r in enumerate(rows)
                if not any(pareto.dominates(o, r) for j, o in enumerate(rows) if j != i)}
    got = ctrl.front()
    assert sorted(r for _, r in got) == sorted(rows[i] for i in expected)
    assert len(ctrl.population) == 6


@pytest.mark.parametrize("name", ["random", "aging", "autoformer", "nsga2"])
def test_state_dict_round_trip_continues_identically(name):
    space = spaces.get("mlp")

    def play(ctrl, rounds):
        out = []
        for _ in range(rounds):
            archs = ctrl.ask(4)
            scores = [_score(space, a) for a in archs]
            ctrl.tell(archs, [(s, -s) for s in scores] if name == "nsga2" else scores)
            out.extend(archs)
        return out

    options = {} if name == "random" else {"population": 6}
    straight = controllers.get(name, space, seed=5, **options)
    expected = play(straight, 6)
    first = controllers.get(name, space, seed=5, **options)
    play(first, 3)
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = controllers.get(name, space, seed=5, **options)
    resumed.load_state_dict(saved)
    assert play(resumed, 3) == expected[12:]
    with pytest.raises(ValueError, match="state is for controller"):
        controllers.get("random" if name != "random" else "aging", space).load_state_dict(saved)


# A space so large that no two operators ever make the same arch by chance, so each asked
# arch can be traced back to the operator call that made it.
WIDE = Space.from_choices({f"d{i}": list(range(10)) for i in range(30)}, name="wide")


class _Traced:
    """`space`, remembering which operator made each arch (and from which parents)."""

    def __init__(self, space):
        self.space, self.made, self.crossed = space, {}, []

    def __getattr__(self, name):
        return getattr(self.space, name)

    def _note(self, arch, *how):
        self.made[tuple(arch.items())] = how
        return arch

    def sample(self, rng):
        return self._note(self.space.sample(rng), "random")

    def mutate(self, arch, rng, prob=None):
        return self._note(self.space.mutate(arch, rng, prob=prob), "mutate",
                          tuple(arch.items()), prob)

    def crossover(self, a, b, rng):
        self.crossed.append((tuple(a.items()), tuple(b.items())))
        return self._note(self.space.crossover(a, b, rng), "crossover",
                          tuple(a.items()), tuple(b.items()))

    def how(self, arch):
        return self.made[tuple(arch.items())]


def _tell_scored(ctrl, archs):
    ctrl.tell(archs, [_score(WIDE, a) for a in archs])


@pytest.mark.parametrize("name", ["aging", "autoformer", "nsga2"])
def test_exactly_the_first_population_asks_are_random_when_an_ask_straddles(name):
    space = _Traced(WIDE)
    ctrl = controllers.get(name, space, seed=0, population=10)
    first = ctrl.ask(7)
    scores = [_score(WIDE, a) for a in first]
    ctrl.tell(first, [(s, 0.0) for s in scores] if name == "nsga2" else scores)
    kinds = [space.how(a)[0] for a in ctrl.ask(7)]
    assert kinds[:3] == ["random"] * 3 and "random" not in kinds[3:]


def test_aging_ask_of_n_is_n_tournament_cycles_then_the_n_oldest_leave():
    space = _Traced(WIDE)
    ctrl = controllers.get("aging", space, seed=0, population=10, sample=10)
    told = ctrl.ask(8)
    _tell_scored(ctrl, told)
    best = max(told, key=lambda a: _score(WIDE, a))
    batch = ctrl.ask(5)
    # Two random archs complete the population of 10; three cycles follow, each a one-decision
    # mutation of the best of its sample (the sample is every told member here).
    assert [space.how(a) for a in batch[2:]] == [("mutate", tuple(best.items()), None)] * 3
    assert all(sum(c[k] != best[k] for k in WIDE.names) == 1 for c in batch[2:])
    _tell_scored(ctrl, batch)
    told += batch
    assert [a for a, _ in ctrl.population] == told[-10:]       # the 3 oldest left
    more = ctrl.ask(4)
    _tell_scored(ctrl, more)
    assert [a for a, _ in ctrl.population] == (told + more)[-10:]


def test_aging_with_the_default_search_config_ages_instead_of_replacing_the_population():
    from launch.config import SearchConfig
    sc = SearchConfig()
    ctrl = controllers.get("aging", WIDE, seed=0, population=sc.population, sample=sc.sample)
    told = ctrl.ask(sc.population)
    _tell_scored(ctrl, told)
    for _ in range(4):
        before = [a for a, _ in ctrl.population]
        batch = ctrl.ask(sc.generation)
        _tell_scored(ctrl, batch)
        after = [a for a, _ in ctrl.population]
        survivors = [a for a in after if any(a is b for b in before)]
        # Only the oldest left: one per child, and one per proposal of a told network (its
        # score is told back at once, a cycle without an evaluation).
        assert survivors == before[len(before) - len(survivors):]
        assert sc.population - 2 * sc.generation < len(survivors) <= sc.population - sc.generation


def test_aging_warns_when_one_ask_would_replace_the_whole_population():
    ctrl = controllers.get("aging", WIDE, seed=0, population=5, sample=2)
    _tell_scored(ctrl, ctrl.ask(5))
    with pytest.warns(UserWarning, match=r"ask\(5\).*population of 5.*search.generation"):
        ctrl.ask(5)


@pytest.mark.parametrize("batch", [50, 10, 7])
def test_autoformer_generation_has_exact_counts_and_distinct_crossover_parents(batch):
    for seed in range(6):
        space = _Traced(WIDE)
        ctrl = controllers.get("autoformer", space, seed=seed)   # 50, top 10, 25 + 25, 0.2
        _tell_scored(ctrl, ctrl.ask(50))
        children = []
        while len(children) < 100:                              # two generations
            archs = ctrl.ask(min(batch, 100 - len(children)))
            _tell_scored(ctrl, archs)
            children += archs
        for generation in (children[:50], children[50:]):
            how = [space.how(a) for a in generation]
            assert sum(h[0] == "mutate" for h in how) == 25
            assert sum(h[0] == "crossover" for h in how) == 25
            assert all(h[2] == 0.2 for h in how if h[0] == "mutate")
            assert all(h[1] != h[2] for h in how if h[0] == "crossover")


def test_autoformer_parents_are_the_top_of_everything_told_before_the_generation():
    space = _Traced(WIDE)
    ctrl = controllers.get("autoformer", space, seed=0, population=20, parents=4,
                           mutations=6, crossovers=4)
    told = ctrl.ask(20)
    _tell_scored(ctrl, told)
    for _ in range(3):                                       # generations of 10, asked 5 + 5
        top = {tuple(a.items()) for a in sorted(told, key=lambda a: -_score(WIDE, a))[:4]}
        generation = []
        for _ in range(2):
            archs = ctrl.ask(5)
            _tell_scored(ctrl, archs)
            generation += archs
        for arch in generation:
            how = space.how(arch)
            assert set(how[1:3] if how[0] == "crossover" else how[1:2]) <= top
        told += generation


def test_nsga2_tournament_never_pits_a_member_against_itself():
    space = _Traced(WIDE)
    ctrl = controllers.get("nsga2", space, seed=0, population=3, mutation_prob=0.0)
    members = ctrl.ask(3)
    ctrl.tell(members, [(2.0, 2.0), (1.0, 1.0), (0.0, 0.0)])    # fronts 0, 1, 2
    worst = tuple(members[2].items())
    ctrl.ask(200)                                             # the population stays put
    assert len(space.crossed) >= 200
    # Between two distinct members the worst always loses, so it is never a parent.
    assert all(worst not in pair for pair in space.crossed)


def _random_score(space, arch):
    """A fixed random function of the network: equal for every encoding of it."""
    return float(np.random.default_rng(zlib.crc32(json.dumps(space.canonical(arch)).encode())).random())


@pytest.mark.parametrize("name", ["random", "aging", "autoformer", "nsga2"])
def test_a_thousand_asks_on_mlp_are_a_thousand_distinct_networks(name):
    space = spaces.get("mlp")               # 10,000 encodings of 3,120 networks
    ctrl = controllers.get(name, space, seed=0)
    asked = []
    while len(asked) < 1000:
        archs = ctrl.ask(10)
        scores = [_random_score(space, a) for a in archs]
        ctrl.tell(archs, [(s, -space.params(a)) for s, a in zip(scores, archs)]
                  if name == "nsga2" else scores)
        asked += archs
    assert all(space.canonical(a) == a for a in asked)
    assert len({json.dumps(a) for a in asked}) == 1000


def test_a_proposal_of_a_told_network_is_told_back_its_score_and_a_new_one_asked():
    line = Space.from_choices({"a": [0, 1, 2, 3]}, name="line")
    told = {0: (5.0,), 1: (0.0,), 2: (1.0,)}
    rejoined = 0
    for seed in range(10):
        ctrl = controllers.get("aging", line, seed=seed, population=2, sample=1)
        ctrl.tell([{"a": a} for a in told], [s for s, in told.values()])   # {"a": 0} has left
        assert ctrl.ask(1) == [{"a": 3}] and len(ctrl.history) == 3
        # Mutations that proposed told networks brought them back with their told scores.
        assert all(score == told[member["a"]] for member, score in ctrl.population)
        rejoined += {"a": 0} in [member for member, _ in ctrl.population]
    assert 0 < rejoined < 10


def test_two_encodings_of_one_network_are_told_as_one():
    space = spaces.get("mlp")
    shallow = {**space.sample(0), "depth": 1}
    ctrl = controllers.get("random", space, seed=0)
    ctrl.tell([{**shallow, "width_3": 16}, {**shallow, "width_3": 256}], [1.0, 0.0])
    assert ctrl.history[0][0] == ctrl.history[1][0] == space.canonical(shallow)
    assert all(space.canonical(a) != space.canonical(shallow) for a in ctrl.ask(100))
