"""Ask/tell controllers: every controller on every space, their defining rules, state round trips."""
import json

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
