import itertools
import json

import jax
import numpy as np
import pytest

import nas
import spaces
from spaces import Space

CHOICES = {"depth": (1, 2, 3), "width": (8, 16), "act": ("relu", "tanh"), "ratio": (3.5, 4.0)}


@pytest.fixture
def space():
    return Space.from_choices(CHOICES, name="toy")


def test_size_and_enumerate_match_brute_force(space):
    brute = [dict(zip(CHOICES, combo)) for combo in itertools.product(*CHOICES.values())]
    assert space.size() == len(brute) == 24
    assert list(space.enumerate()) == brute
    with pytest.raises(ValueError, match="limit"):
        list(space.enumerate(limit=10))


def test_validate_names_bad_key_value_and_options(space):
    good = {"depth": 2, "width": 8, "act": "relu", "ratio": 4}
    assert space.validate(good) == {"depth": 2, "width": 8, "act": "relu", "ratio": 4.0}
    with pytest.raises(ValueError, match=r"arch\['width'\] = 12 .*options are \[8, 16\]"):
        space.validate({**good, "width": 12})
    with pytest.raises(ValueError, match=r"unknown choice 'widht'.*did you mean 'width'"):
        space.validate({**good, "widht": 8})
    with pytest.raises(ValueError, match=r"missing choice 'act'.*\['relu', 'tanh'\]"):
        space.validate({k: v for k, v in good.items() if k != "act"})
    with pytest.raises(ValueError, match="True is not allowed"):
        space.validate({**good, "depth": True})


def test_sample_is_deterministic_and_valid(space):
    assert space.sample(seed=3) == space.sample(seed=3)
    seen = {json.dumps(space.sample(seed=s)) for s in range(200)}
    assert len(seen) == space.size()  # 200 draws cover all 24 archs
    for s in range(20):
        space.validate(space.sample(seed=s))


def test_mutate_changes_exactly_one_decision(space):
    for s in range(30):
        parent = space.sample(seed=s)
        child = space.mutate(parent, seed=s)
        assert sum(parent[k] != child[k] for k in CHOICES) == 1
        space.validate(child)


def test_neighbours_are_the_networks_one_changed_decision_away():
    # mlp: widths beyond the depth are unused, so several encodings are one network.
    space = spaces.get("mlp", max_depth=3, widths=(4, 8), activations=("relu", "tanh")).bind((5,), 2)
    for arch in [space.canonical(space.sample(seed=s)) for s in range(6)]:
        # Slow reference: every encoding that differs from `arch` in one decision.
        brute = {tuple(space.canonical(a).items()) for a in space.enumerate()
                 if sum(a[k] != arch[k] for k in arch) == 1} - {tuple(arch.items())}
        found = space.neighbours(arch)
        assert {tuple(a.items()) for a in found} == brute and len(found) == len(brute)
        assert all(space.canonical(a) == a for a in found)


def test_mutate_with_probability_one_changes_everything(space):
    parent = space.sample(seed=0)
    child = space.mutate(parent, seed=1, prob=1.0)
    assert all(parent[k] != child[k] for k in CHOICES)
    assert space.mutate(parent, seed=1, prob=0.0) == parent
    with pytest.raises(ValueError, match="prob"):
        space.mutate(parent, prob=1.5)


def test_crossover_takes_each_decision_from_a_parent(space):
    a, b = space.sample(seed=0), space.mutate(space.sample(seed=0), seed=0, prob=1.0)
    mixes = [space.crossover(a, b, seed=s) for s in range(50)]
    for child in mixes:
        assert all(child[k] in (a[k], b[k]) for k in CHOICES)
    assert any(child != a and child != b for child in mixes)


def test_restrict_and_fix(space):
    sub = space.restrict("width", [16])
    assert sub.choices["width"] == (16,) and sub.size() == 12
    assert space.choices["width"] == (8, 16)  # original untouched
    assert space.restrict("depth", [3, 1]).choices["depth"] == (1, 3)  # original order kept
    with pytest.raises(ValueError, match="32 is not an option of 'width'"):
        space.restrict("width", [32])
    with pytest.raises(ValueError, match="no options left"):
        space.restrict("width", [])
    arch = space.sample(seed=1)
    fixed = space.fix(arch)
    assert fixed.size() == 1 and list(fixed.enumerate()) == [arch]


def test_json_round_trips(space):
    arch = space.sample(seed=5)
    assert space.arch_from_json(space.arch_to_json(arch)) == arch
    rebuilt = spaces.from_dict(json.loads(json.dumps(space.restrict("depth", [2, 3]).to_dict())))
    assert rebuilt.choices == space.restrict("depth", [2, 3]).choices
    shipped = spaces.get("cnn1d").restrict("kernel_0", [5]).bind((40, 1), 10)
    assert spaces.from_dict(json.loads(json.dumps(shipped.to_dict()))) == shipped


def test_encodings_round_trip(space):
    for s in range(10):
        arch = space.sample(seed=s)
        idx = space.indices(arch)
        assert space.from_indices(idx) == arch
        assert space.from_indices(space.index_vector(arch)) == arch
        one_hot = space.one_hot(arch)
        for key, vec in one_hot.items():
            assert vec.sum() == 1.0 and vec[idx[key]] == 1.0
        assert space.from_probs(one_hot) == arch


def test_index_vector_to_probs_is_traceable(space):
    archs = [space.sample(seed=s) for s in range(6)]
    stacked = np.stack([space.index_vector(a) for a in archs])
    probs = jax.jit(jax.vmap(space.probs_from_index_vector))(stacked)
    for i, arch in enumerate(archs):
        for key, vec in space.one_hot(arch).items():
            np.testing.assert_array_equal(np.asarray(probs[key][i]), vec)


def test_encode_mixes_hard_and_soft_and_checks_shapes(space):
    arch = space.sample(seed=0)
    soft = {**arch, "width": np.array([0.25, 0.75], np.float32)}
    enc = space.encode(soft)
    np.testing.assert_allclose(enc["width"], [0.25, 0.75])
    np.testing.assert_array_equal(enc["depth"], space.one_hot(arch)["depth"])
    with pytest.raises(ValueError, match=r"probs\['width'\] has shape \(3,\)"):
        space.encode({**arch, "width": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="pass an arch"):
        space.encode(None)


def test_extremes_match_brute_force(space):
    def cost(a):
        return a["depth"] * a["width"] + (5 if a["act"] == "tanh" else 0) - a["ratio"]
    low, high, exact = space.extremes(cost)
    values = [cost(a) for a in space.enumerate()]
    assert exact and cost(low) == min(values) and cost(high) == max(values)
    low2, high2, exact2 = space.extremes(cost, limit=1)  # coordinate search path
    assert not exact2 and cost(low2) == min(values) and cost(high2) == max(values)


def test_registry_get_register_and_errors():
    assert set(spaces.names()) >= {"mlp", "cnn1d", "convnet", "vit", "nb201"}
    with pytest.raises(ValueError, match="did you mean 'cnn1d'"):
        spaces.get("cnn1")
    spaces.register("toy_registered", lambda: Space.from_choices(CHOICES, name="toy_registered"))
    assert spaces.get("toy_registered").size() == 24
    with pytest.raises(ValueError, match="already registered"):
        spaces.register("toy_registered", lambda: None)


def test_black_box_space_has_no_costs(space):
    with pytest.raises(TypeError, match="no supernet"):
        space.params(space.sample(seed=0))


def test_bad_space_definitions():
    with pytest.raises(ValueError, match="'w' has no options"):
        Space({"w": ()})
    with pytest.raises(ValueError, match="repeats an option"):
        Space({"w": (1, 1)})
    with pytest.raises(ValueError, match="neither a JSON scalar"):
        Space({"w": ({"a": 1},)})
    with pytest.raises(ValueError, match="repeats an option"):
        Space({"k": ([3, 3], (3, 3))})  # an array and a tuple are one option


def test_array_options_round_trip_through_json_and_validation():
    space = Space.from_choices({"kernel": [(3, 3), [5, 5], (1, [7, 1])], "bias": [True, False]})
    assert space.choices["kernel"] == ((3, 3), (5, 5), (1, (7, 1)))
    every = list(space.enumerate())
    assert len(every) == 6
    for arch in every:
        assert space.arch_from_json(space.arch_to_json(arch)) == arch
        assert space.validate(json.loads(json.dumps(arch))) == arch  # arrays come back as lists
        assert space.from_indices(space.index_vector(arch)) == arch
    assert space.validate({"kernel": [1, [7, 1]], "bias": False}) == {"kernel": (1, (7, 1)), "bias": False}
    with pytest.raises(ValueError, match="is not allowed"):
        space.validate({"kernel": [True, [7, 1]], "bias": False})  # inside an array True is not 1 either
    assert space.restrict("kernel", [[5, 5]]).choices["kernel"] == ((5, 5),)


# Shipped spaces small enough to enumerate, restricted where the defaults are not.
ENUMERABLE = {
    "mlp": spaces.get("mlp"),
    "mlp-restricted": spaces.get("mlp").restrict("width_1", [16, 64]).restrict("depth", [2, 4]),
    "cnn1d": spaces.get("cnn1d", channels=(8, 16), depths=(1, 2)),
    "convnet": spaces.get("convnet", widths=(8, 16), strides=(1, 2), kernels=(3, 5), expands=(3, 4),
                          depths=(1, 2, 3)).restrict("kernel_1_2", [5]),
    "vit": spaces.get("vit"),
    "nb201": spaces.get("nb201"),
    "nb201-no-pool": spaces.get("nb201", ops=("none", "skip_connect", "nor_conv_1x1")),
}


def _networks(space):
    return {json.dumps(space.canonical(a)) for a in space.enumerate()}


@pytest.mark.parametrize("name", sorted(ENUMERABLE))
def test_distinct_size_counts_the_canonical_forms_and_canonical_is_idempotent(name):
    space = ENUMERABLE[name]
    networks = _networks(space)
    assert space.distinct_size() == len(networks) <= space.size()
    assert all(space.canonical(json.loads(n)) == json.loads(n) for n in networks)


def test_distinct_sizes_of_the_shipped_spaces():
    sizes = {name: (spaces.get(name).size(), spaces.get(name).distinct_size()) for name in spaces.names()}
    assert sizes["mlp"] == (10_000, 4 * (5 + 5**2 + 5**3 + 5**4))           # activation × widths used
    assert sizes["convnet"][1] == (9**2 + 9**3 + 9**4) ** 3                    # (kernel × expand)^depth
    assert sizes["vit"] == (9_216, 3 * (4**3 + 4**4 + 4**5))
    assert sizes["cnn1d"] == (46_656, 46_656)                                  # every decision used
    assert sizes["nb201"] == (15_625, len(_networks(spaces.get("nb201"))))


def test_canonical_sets_unused_decisions_to_their_first_option():
    mlp = spaces.get("mlp")
    arch = {"depth": 2, "width_0": 64, "width_1": 32, "width_2": 256, "width_3": 128, "activation": "gelu"}
    assert mlp.canonical(arch) == {**arch, "width_2": 16, "width_3": 16}
    convnet = spaces.get("convnet")
    arch = {**convnet.sample(0), "depth_0": 4, "depth_1": 2, "depth_2": 4}
    canonical = convnet.canonical(arch)
    assert all(canonical[f"{k}_1_{b}"] == convnet.choices[f"{k}_1_{b}"][0]
               for b in (2, 3) for k in ("kernel", "expand"))
    assert {k: v for k, v in canonical.items() if "_1_2" not in k and "_1_3" not in k} == \
        {k: v for k, v in arch.items() if "_1_2" not in k and "_1_3" not in k}
    toy = Space.from_choices(CHOICES)
    assert all(toy.canonical(a) == a for a in toy.enumerate())   # no unused decisions: identity


def test_nb201_canonical_cuts_edges_that_cannot_change_the_output():
    space = spaces.get("nb201")
    none = {e: "none" for e in space.names}
    # Node 2 reaches nothing: the edges into it are unused.
    lost = {**none, "edge_1_0": "nor_conv_3x3", "edge_2_0": "nor_conv_1x1", "edge_2_1": "skip_connect",
            "edge_3_1": "avg_pool_3x3"}
    assert space.canonical(lost) == {**lost, "edge_2_0": "none", "edge_2_1": "none"}
    # Node 1 receives nothing: a skip or pool out of it adds zero, a conv → BN does not.
    silent = {**none, "edge_2_0": "skip_connect", "edge_2_1": "avg_pool_3x3", "edge_3_1": "skip_connect",
              "edge_3_2": "nor_conv_3x3"}
    assert space.canonical(silent) == {**silent, "edge_2_1": "none", "edge_3_1": "none"}
    kept = {**silent, "edge_3_1": "nor_conv_1x1"}
    assert space.canonical(kept) == {**kept, "edge_2_1": "none"}
    # Whatever the edges, a cell whose output gets nothing from its input is the empty cell.
    assert space.canonical({**none, "edge_2_0": "nor_conv_3x3", "edge_2_1": "skip_connect"}) == none
    # Without `none` among an edge's options nothing is cut there.
    no_none = space.restrict("edge_2_0", ["skip_connect"])
    assert no_none.canonical({**lost, "edge_2_0": "skip_connect"}) == {**lost, "edge_2_0": "skip_connect",
                                                                      "edge_2_1": "none"}


def test_an_unused_kernel_makes_its_sparsity_choice_unused():
    mlp = spaces.get("mlp", max_depth=2, widths=(8, 16)).bind((4,), 3)
    kernels = ["hidden.0.kernel", "hidden.1.kernel", "head.kernel"]
    space = mlp.with_sparsity([0.0, 0.5, 0.9], kernels)
    arch = {"depth": 1, "width_0": 16, "width_1": 16, "activation": "tanh",
            "sparsity:hidden.0.kernel": 0.5, "sparsity:hidden.1.kernel": 0.9, "sparsity:head.kernel": 0.9}
    assert space.canonical(arch) == {**arch, "width_1": 8, "sparsity:hidden.1.kernel": 0.0}
    networks = _networks(space)
    assert space.distinct_size() == len(networks) == 4 * (2 * 3**2 + 4 * 3**3)
    parent = space.canonical(arch)
    assert all(space.canonical(space.mutate(parent, seed=s)) != parent for s in range(30))
    shared = mlp.with_sparsity([0.0, 0.5])           # one choice for every kernel: always used
    assert shared.distinct_size() == 2 * mlp.distinct_size()


@pytest.mark.parametrize("name", ["mlp", "convnet", "vit", "nb201"])
def test_a_mutation_changes_the_network(name):
    space = spaces.get(name)
    for s in range(30):
        parent = space.canonical(space.sample(seed=s))
        child = space.mutate(parent, seed=s)
        assert sum(parent[k] != child[k] for k in space.names) == 1
        assert space.canonical(child) != parent


@pytest.mark.parametrize("name, options, shape", [
    ("mlp", {}, (64,)), ("cnn1d", {"norm": "batch"}, (40, 1)), ("cnn1d", {}, (40,)),
    ("vit", {"embed_dims": (24, 32), "depths": (1, 2)}, (16, 16, 3)), ("nb201", {"channels": 8}, (16, 16, 3)),
    ("convnet", {"widths": (8, 16), "strides": (1, 2), "head_channels": 16, "depths": (1, 2)}, (16, 16, 3))])
def test_closed_form_costs_equal_the_costs_read_off_the_abstract_model(name, options, shape):
    space = spaces.get(name, **options).bind(shape, 10)
    for seed in range(3):
        arch = space.validate(space.sample(seed))
        assert type(space)._costs is not Space._costs  # a closed form to check
        assert space._costs(arch) == Space._costs(space, arch), (name, arch)


def test_a_space_without_closed_forms_is_costed_from_its_model():
    from spaces.mlp import MLPSpace

    class Plain(MLPSpace):
        _costs = Space._costs  # no closed form: the abstract model answers

    space = Plain(max_depth=2, widths=(8, 16)).bind((12,), 3)
    for arch in space.enumerate():
        model = nas.supernet(space.fix(arch), seed=0)
        assert space.params(arch) == nas.count_params(model)
        assert space.flops(arch) == nas.count_macs(lambda z: model(z), np.zeros((1, 12), np.float32))
