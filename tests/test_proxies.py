"""Zero-cost proxies: vmapped GradSign against a per-example Python loop, one compilation
per population, the arch-own initialisation by fan-in, a user's own space, bad input."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nas
import spaces
from nas import layers, masks
from search import proxies
from search.proxies import core
from sparse.masks import leaf_name, named_leaves

# Small versions of the shipped spaces: the same code paths, compiled in seconds on CPU.
SMALL = {"cnn1d": {"channels": (4, 8, 16), "kernels": (3, 5), "depths": (1, 2)},
         "convnet": {"widths": (8,), "strides": (1,), "stem_channels": 8, "head_channels": 16,
                     "depths": (1, 2), "kernels": (3, 5), "expands": (3, 4)},
         "mlp": {"max_depth": 3, "widths": (8, 16, 32, 64)}}
SHAPES = {"cnn1d": (40, 1), "convnet": (6, 6, 3), "mlp": (20,)}
N = 16


def _data(shape, n=N, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + tuple(shape)).astype(np.float32), rng.integers(0, classes, n)


def _space(name, **options):
    return spaces.get(name, **{**SMALL[name], **options}).bind(SHAPES[name], 10)


def _kernels(params) -> list[str]:
    """Conv/dense kernels by name: no biases, no normalisation parameters."""
    return [n for n, leaf in named_leaves(params).items() if n.endswith("kernel") and np.ndim(leaf) >= 2]


def _fan_in(shape) -> int:
    """Inputs of one output unit of a Dense [in, out] or Conv [k..., in/groups, out] kernel."""
    return math.prod(shape[:-1])


def _own_init(model, arch):
    """`model` with each kernel scaled by sqrt(supernet fan-in / compact fan-in), the factors
    computed here from the extracted compact model's shapes (independently of `core`)."""
    compact = named_leaves(nnx.state(nas.extract(model, arch), nnx.Param))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves = named_leaves(params)
    factors = {n: math.sqrt(_fan_in(leaves[n].shape) / _fan_in(compact[n].shape)) if n in compact else 1.0
               for n in _kernels(params)}
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf * factors.get(leaf_name(path), 1.0), params)
    return nnx.merge(graphdef, scaled, rest), factors


@functools.partial(jax.jit, static_argnums=(0, 1))
def _example_grad(graphdef, names, params, rest, xi, yi, probs):
    """Kernel gradients of one example's cross-entropy, as a batch of 1 in train mode."""
    def loss(params):
        logits = nnx.merge(graphdef, params, rest, copy=True).forward(xi[None], probs, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yi[None]).mean()
    grads = named_leaves(jax.grad(loss)(params))
    return {n: grads[n] for n in names}


# A gradient below this fraction of the example's largest on its kernel is at float32
# rounding level (ε ≈ 1.2e-7 times the terms that cancel in it): two correct computations
# (vmapped or batch-of-1 convolutions, masked supernet or compact model) may give it either
# sign. convnet has many: hard-swish is quadratic on [-3, 3], so after a train-mode
# BatchNorm (whose backward removes affine functions of the normalised input) its gradient
# cancels to the BatchNorm's eps, most of all in the head.
ROUNDING = 1e-6


def loop_gradsign(model, probs, x, y) -> tuple[float, float, float]:
    """GradSign the slow way: one example at a time (a batch of 1, BatchNorm in train mode,
    so it normalises with that example's statistics), `jax.grad` of its cross-entropy,
    `np.sign` on the host, accumulated; Σ_k |Σ_i sign(g_ik)|. Also the least and the most
    the score can be if any gradient at rounding level (`ROUNDING`) took the other sign."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    names = tuple(_kernels(params))
    leaves = named_leaves(params)
    signs = {n: np.zeros(leaves[n].shape) for n in names}     # Σ_i sign(g_i)
    unsure = {n: np.zeros(leaves[n].shape) for n in names}    # how many were at rounding level
    for xi, yi in zip(x, y):
        grads = _example_grad(graphdef, names, params, rest, jnp.asarray(xi), jnp.asarray(yi, jnp.int32),
                              probs)
        for n in names:
            g = np.asarray(grads[n], np.float64)
            signs[n] += np.sign(g)
            unsure[n] += (np.abs(g) <= ROUNDING * np.abs(g).max()) & (g != 0)
    score = sum(np.abs(signs[n]).sum() for n in names)
    # Each rounding-level gradient of the other sign (or 0) moves its entry's |Σ| by ≤ 2.
    low = sum(np.maximum(np.abs(signs[n]) - 2 * unsure[n], 0).sum() for n in names)
    high = sum(np.minimum(np.abs(signs[n]) + 2 * unsure[n], len(x)).sum() for n in names)
    return float(score), float(low), float(high)


# ---------------------------------------------------------------- 1. vmapped == per-example loop

# cnn1d (ReLU, no hard-swish) has no rounding-level gradient whose sign differs here: the
# scores are equal. convnet's lie within the bounds those gradients leave (see ROUNDING).
@pytest.mark.parametrize("name,options,exact", [("cnn1d", {"norm": "none"}, True),
                                                ("cnn1d", {"norm": "batch"}, True),
                                                ("convnet", {}, False)])
def test_gradsign_equals_per_example_loop(name, options, exact):
    space = _space(name, **options)
    x, y = _data(SHAPES[name])
    model = space.supernet_class(space, rngs=nnx.Rngs(0))   # what `score` builds at seed 0
    # The smallest options at the largest depths (every searched kernel narrower than the
    # supernet's) and a random arch.
    smallest = {k: max(v) if k.startswith("depth") else v[0] for k, v in space.choices.items()}
    archs = [smallest, space.sample(5)]
    assert space.canonical(archs[0]) != space.canonical(archs[1])
    # chunk=1 shares the compilation with `score` in the next test (test 2 checks chunks).
    got = proxies.score_population("gradsign", space, archs, x, y, seed=0, chunk=1)
    for arch, value in zip(archs, got):
        scaled, factors = _own_init(model, arch)
        if arch is smallest:
            assert max(factors.values()) > 1.5
        expected, low, high = loop_gradsign(scaled, space.one_hot(arch), x, y)
        if exact:
            assert value == pytest.approx(expected, rel=1e-6), (name, options, arch)
        assert low <= value <= high, (name, options, arch, value, expected, low, high)
        assert high - low < 0.1 * expected                   # the bounds are tight


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_gradsign_equals_loop_on_the_extracted_compact_model(norm):
    space = _space("cnn1d", norm=norm)
    x, y = _data(SHAPES["cnn1d"])
    arch = space.sample(3)
    scaled, _ = _own_init(space.supernet_class(space, rngs=nnx.Rngs(0)), arch)
    compact = nas.extract(scaled, arch)
    # A compact model is a supernet of space.fix(arch): its own init factors are all 1.
    kernels = _kernels(nnx.state(compact, nnx.Param))
    assert set(proxies.init_factors(compact, arch, kernels).values()) == {1.0}
    expected, low, high = loop_gradsign(compact, compact.space.encode(None), x, y)
    assert proxies.score("gradsign", compact.space, arch, x, y, model=compact) == pytest.approx(
        expected, rel=1e-6)
    # The supernet at `arch` computes the compact model's function on masked, padded
    # tensors, so its gradients agree up to float32 rounding: equal signs but for
    # rounding-level gradients, which may take either sign (each moves the score by ≤ 2).
    via_supernet = proxies.score("gradsign", space, arch, x, y, seed=0)
    assert low <= via_supernet <= high, (via_supernet, expected, low, high)
    assert high - low < 0.01 * expected


# ---------------------------------------------------------------- 2. population == one by one, one compile

def test_score_population_equals_score_and_compiles_once(compile_counter):
    space = _space("cnn1d")
    x, y = _data((40, 1))
    first = [space.sample(seed) for seed in range(4)]          # two chunks, the second padded
    second = [space.sample(seed) for seed in range(10, 13)]    # one chunk
    before = core._traced_scores._cache_size()
    a = proxies.score_population("gradsign", space, first, x, y, chunk=3)   # no other test uses 3
    compiled = len(compile_counter)
    b = proxies.score_population("gradsign", space, second, x, y, chunk=3)
    assert core._traced_scores._cache_size() - before == 1
    assert len(compile_counter) == compiled                     # XLA compiled nothing for `second`
    singles = [proxies.score("gradsign", space, arch, x, y) for arch in first + second]
    np.testing.assert_allclose(np.concatenate([a, b]), singles, rtol=1e-6)
    assert len(set(singles)) > 1                                 # different archs, different scores


# ---------------------------------------------------------------- 3. arch-own initialisation

@pytest.mark.parametrize("name", ["cnn1d", "mlp"])
def test_rescaled_kernels_have_the_std_of_a_fresh_compact_init(name):
    # The RBG generator draws the same initialisers' distributions, and eagerly it compiles
    # each new kernel shape ~3× faster than threefry.
    with jax.default_prng_impl("rbg"):
        _check_rescaled_std(name)


def _check_rescaled_std(name):
    space = _space(name)
    seeds = range(6)
    supernets = [space.supernet_class(space, rngs=nnx.Rngs(s)) for s in seeds]
    smallest = {k: v[0] for k, v in space.choices.items()}
    if name == "mlp":
        smallest["depth"] = max(space.choices["depth"])       # every hidden layer at its narrowest
    archs = [smallest, space.sample(1), space.sample(2)]
    for arch in archs:
        rescaled, plain = {}, {}
        for model in supernets:
            kernels = _kernels(nnx.state(model, nnx.Param))
            factors = proxies.init_factors(model, arch, kernels)
            # The active slices (what `extract` takes), then `at_init`: scaling commutes with slicing.
            active = nnx.state(nas.extract(model, arch), nnx.Param)
            for store, tree in ((rescaled, core.at_init(active, factors)), (plain, active)):
                for n, w in named_leaves(tree).items():
                    if n in kernels:
                        store.setdefault(n, []).append(np.asarray(w).ravel())
        fixed = space.fix(arch)
        fresh = {}
        for s in seeds:
            compact = fixed.supernet_class(fixed, rngs=nnx.Rngs(1000 + s))
            for n, w in named_leaves(nnx.state(compact, nnx.Param)).items():
                if n in rescaled:
                    fresh.setdefault(n, []).append(np.asarray(w).ravel())
        assert set(fresh) == set(rescaled)
        detected = 0
        for n in rescaled:
            ours, theirs, unscaled = (np.concatenate(v[n]) for v in (rescaled, fresh, plain))
            # Standard error of a sample std is σ/sqrt(2n) for normal draws (smaller for
            # truncated normals); of a difference of two, the root sum of squares.
            sigma = theirs.std()
            tolerance = 4 * sigma * math.sqrt(1 / (2 * ours.size) + 1 / (2 * theirs.size))
            assert abs(ours.std() - sigma) < tolerance, (name, arch, n, ours.std(), sigma)
            detected += abs(unscaled.std() - sigma) >= tolerance
        # The check has power: without the rescaling, some kernel of every arch fails it.
        assert detected > 0, (name, arch)


# ---------------------------------------------------------------- 4. a user's own space

class TinySupernet(nas.Supernet):
    """A user's two-layer MLP supernet over choices width_0, width_1."""

    def __init__(self, space, *, rngs: nnx.Rngs):
        self.space = space
        c = space.choices
        w0, w1 = max(c["width_0"]), max(c["width_1"])
        self.first = layers.Dense(math.prod(space.input_shape), w0, rngs=rngs)
        self.second = layers.Dense(w0, w1, rngs=rngs)
        self.head = layers.Dense(w1, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        c = self.space.choices
        h = x.reshape(x.shape[0], -1)
        h = jax.nn.relu(self.first(h, masks.prefix_mask(probs["width_0"], c["width_0"],
                                                        self.first.kernel.shape[1])))
        h = jax.nn.relu(self.second(h, masks.prefix_mask(probs["width_1"], c["width_1"],
                                                         self.second.kernel.shape[1])))
        return self.head(h)


def test_user_space_needs_model_and_scores_with_it():
    choices = {"width_0": (4, 8, 16), "width_1": (4, 8, 16)}
    x, y = _data((12,), classes=3)
    arch = {"width_0": 4, "width_1": 8}
    with pytest.raises(ValueError, match="model="):
        proxies.score("gradsign", spaces.Space.from_choices(choices), arch, x, y)
    space = spaces.Space.from_choices(choices, name="tiny").bind((12,), 3)
    model = TinySupernet(space, rngs=nnx.Rngs(0))
    archs = [arch, {"width_0": 16, "width_1": 4}, {"width_0": 16, "width_1": 16}]
    got = proxies.score_population("gradsign", space, archs, x, y, model=model, chunk=3)
    for a, value in zip(archs, got):
        scaled, _ = _own_init(model, a)
        expected, _, _ = loop_gradsign(scaled, space.one_hot(a), x, y)
        assert value == pytest.approx(expected, rel=1e-6), a
    assert proxies.score("gradsign", space, arch, x, y, model=model) == pytest.approx(got[0], rel=1e-6)


# ---------------------------------------------------------------- 5. bad input

def test_bad_input_errors_name_the_field_and_value():
    space = _space("cnn1d")
    x, y = _data((40, 1))
    arch = space.sample(0)
    with pytest.raises(ValueError, match=r"unknown proxy 'gradsgn'.*did you mean 'gradsign'"):
        proxies.score("gradsgn", space, arch, x, y)
    with pytest.raises(ValueError, match=r"x \(16, 40, 1\), y \(15,\)"):
        proxies.score("gradsign", space, arch, x, y[:15])
    with pytest.raises(ValueError, match=r"x \(0, 40, 1\), y \(0,\)"):
        proxies.score("gradsign", space, arch, x[:0], y[:0])
    with pytest.raises(ValueError, match=r"chunk must be ≥ 1, got 0"):
        proxies.score_population("gradsign", space, [arch], x, y, chunk=0)
    with pytest.raises(ValueError, match=r"arch\['kernel_0'\] = 4 is not allowed"):
        proxies.score("gradsign", space, {**arch, "kernel_0": 4}, x, y)
    assert "gradsign" in proxies.names()
    assert proxies.get("gradsign").summary.startswith("Σ_k |Σ_i sign(g_ik)|")


def test_examples_that_do_not_fit_the_model_are_refused_by_name():
    space = _space("cnn1d")
    x, y = _data((40, 1))
    arch = space.sample(0)
    with pytest.raises(ValueError, match=r"labels y range over \[0, 12\]; space 'cnn1d' has 10 classes"):
        proxies.score("gradsign", space, arch, x, np.arange(16) % 13)
    model = nas.supernet(space, seed=0)
    with pytest.raises(ValueError, match=r"examples of shape \(20, 1\); space 'cnn1d' takes \(40, 1\)"):
        proxies.score("gradsign", space, arch, x[:, :20], y, model=model)
    with pytest.raises(ValueError, match="model= is a supernet over space 'cnn1d'"):
        proxies.score("gradsign", spaces.get("mlp"), {}, x, y, model=model)
