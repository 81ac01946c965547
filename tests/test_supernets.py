"""Every shipped space: extract == masked supernet, analytic costs == real costs,
one compilation for every architecture and mixture."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nas
import spaces

# Default choices of every space; small inputs keep the suite fast on 2 CPU cores.
CASES = {
    "mlp": (64,),
    "cnn1d": (40, 1),
    "convnet": (12, 12, 3),
    "vit": (8, 8, 3),
    "nb201": (8, 8, 3),
}
N_ARCHS = 12
# bfloat16 keeps 8 significant bits (ε = 2⁻⁸ ≈ 0.004): measured up to 0.02 of the logit scale
# (convnet; every dot and convolution rounds its output), so 0.05 leaves room and would still
# catch a wrong slice or a float32 layer on one side.
TOLERANCE_BF16 = 0.05
# Space options worth testing on their own: (space, options).
VARIANTS = {"cnn1d-bn": ("cnn1d", {"norm": "batch"})}
CASES["cnn1d-bn"] = CASES["cnn1d"]


def _space(name):
    base, options = VARIANTS.get(name, (name, {}))
    return spaces.get(base, **options)


def _model_with_moved_statistics(name, dtype="float32"):
    space = _space(name)
    model = nas.supernet(space, input_shape=CASES[name], num_classes=10, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    graphdef, state = nnx.split(model)

    @jax.jit
    def train_forward(state, x, probs):
        net = nnx.merge(graphdef, state)
        net.forward(x, probs, train=True)
        return nnx.state(net)

    # Running BatchNorm statistics away from (0, 1), so inference mode is a real test.
    for s in range(3):
        x = rng.normal(1.0, 2.0, size=(8,) + CASES[name]).astype(np.float32)
        state = train_forward(state, x, model.space.one_hot(space.sample(seed=100 + s)))
    nnx.update(model, state)
    x = rng.normal(size=(4,) + CASES[name]).astype(np.float32)
    return space, model, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_equals_masked_supernet_and_costs_are_exact(name):
    space, model, x = _model_with_moved_statistics(name)
    for seed in range(N_ARCHS):
        arch = space.sample(seed=seed)
        sub = nas.extract(model, arch)
        masked = np.asarray(model(x, arch))
        diff = np.abs(masked - np.asarray(sub(x))).max()
        # 1e-5 absolute for O(1) logits; float32 rounding relative to the logit scale
        # beyond (nb201 cells of skip connections multiply activations by 4 per cell).
        assert diff <= 1e-5 * max(1.0, np.abs(masked).max()), (name, arch, diff)
        assert nas.count_params(sub) == model.space.params(arch), (name, arch)
        assert nas.count_macs(lambda z: sub(z), x[:1]) == model.space.flops(arch), (name, arch)
        assert nas.count_params(sub) < nas.count_params(model) or space.size() == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_extract_equals_masked_supernet_in_bfloat16(name):
    """A bfloat16 supernet's compact models compute in bfloat16 too and agree with it within
    bfloat16 rounding (8 significant bits; the two sum over differently shaped tensors)."""
    space, model, x = _model_with_moved_statistics(name, "bfloat16")
    for seed in range(N_ARCHS // 3):
        arch = space.sample(seed=seed)
        sub = nas.extract(model, arch)
        assert nas.precision.compute_dtype_of(sub) == "bfloat16"
        masked, compact = np.asarray(model(x, arch)), np.asarray(sub(x))
        assert masked.dtype == compact.dtype == np.float32
        diff = np.abs(masked - compact).max()
        assert diff <= TOLERANCE_BF16 * max(1.0, np.abs(masked).max()), (name, arch, diff)


def _model_with_random_statistics(name):
    """The supernet with every BatchNorm's running statistics drawn at random: in inference
    mode a conv → BN edge then maps a zero input to (0 − mean)/√(var + ε), not to zero."""
    space = _space(name)
    model = nas.supernet(space, input_shape=CASES[name], num_classes=10, seed=0)
    rng = np.random.default_rng(0)
    for path, variable in nnx.iter_graph(model):
        if isinstance(variable, nnx.BatchStat):
            shape = variable[...].shape
            value = rng.normal(size=shape) if path[-1] == "mean" else rng.uniform(0.5, 2.0, shape)
            variable[...] = jnp.asarray(value, jnp.float32)
    return space, model, rng.normal(size=(4,) + CASES[name]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_canonical_arch_is_the_same_network(name):
    space, model, x = _model_with_random_statistics(name)
    rng = np.random.default_rng(0)
    recoded = []
    for seed in range(400):
        # Half the decisions at their first option (nb201: none) leaves many of them unused.
        arch = {k: o[0] if rng.random() < 0.5 else v
                for (k, o), v in zip(space.choices.items(), space.sample(seed=seed).values())}
        if space.canonical(arch) != arch:
            recoded.append(arch)
    assert len(recoded) >= 2 * N_ARCHS or name.startswith("cnn1d")   # cnn1d uses every decision
    for arch in recoded[:2 * N_ARCHS]:
        canonical = space.canonical(arch)
        assert space.canonical(canonical) == canonical
        np.testing.assert_array_equal(np.asarray(model(x, arch)), np.asarray(model(x, canonical)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_compilation_serves_every_arch_and_mixture(name, compile_counter):
    space = _space(name)
    model = nas.supernet(space, input_shape=CASES[name], num_classes=10, seed=1)
    x = np.random.default_rng(1).normal(size=(4,) + CASES[name]).astype(np.float32)
    model(x, space.sample(seed=0))
    compile_counter.clear()
    outputs = [np.asarray(model(x, space.sample(seed=s))) for s in range(1, N_ARCHS + 1)]
    rng = np.random.default_rng(0)
    soft = {k: rng.dirichlet(np.ones(len(o))).astype(np.float32) for k, o in space.choices.items()}
    mixed = np.asarray(model(x, soft))
    assert compile_counter == [], f"{len(compile_counter)} recompilations"
    assert np.isfinite(mixed).all() and mixed.shape == (4, 10)
    assert len({o.tobytes() for o in outputs}) > 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_soft_mixture_is_differentiable_in_every_choice(name):
    space = _space(name)
    model = nas.supernet(space, input_shape=CASES[name], num_classes=10, seed=2)
    x = np.random.default_rng(2).normal(size=(4,) + CASES[name]).astype(np.float32)
    y = np.arange(4) % 10
    graphdef, state = nnx.split(model)

    def loss(probs, state):
        logits = nnx.merge(graphdef, state, copy=True).forward(x, probs, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y])

    grads = jax.jit(jax.grad(loss))({k: jnp.asarray(v) for k, v in space.uniform_probs().items()}, state)
    for key, g in grads.items():
        assert np.isfinite(g).all(), key
        assert np.abs(np.asarray(g)).max() > 0, f"{name}: no gradient reaches choice {key}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_arch_names_the_key(name):
    space = _space(name)
    model = nas.supernet(space, input_shape=CASES[name], num_classes=10)
    arch = space.sample(seed=0)
    key = space.names[-1]
    with pytest.raises(ValueError, match=rf"arch\['{key}'\] = 'bogus' is not allowed"):
        model(np.zeros((1,) + CASES[name], np.float32), {**arch, key: "bogus"})
    with pytest.raises(ValueError, match=rf"missing choice '{space.names[0]}'"):
        nas.extract(model, {k: v for k, v in arch.items() if k != space.names[0]})


def test_hand_counted_cnn1d_costs():
    space = spaces.get("cnn1d")
    smallest = {f"{k}_{s}": v for s in range(3) for k, v in (("channels", 8), ("kernel", 3),
                                                              ("depth", 1))}
    # conv 1→8 k3, 8→8 k3, 8→8 k3 (+ biases), Dense 8→10
    assert space.params(smallest) == (3 * 8 + 8) + 2 * (3 * 8 * 8 + 8) + (8 * 10 + 10)
    # lengths 40, 20, 10
    assert space.flops(smallest) == 40 * 3 * 8 + 20 * 3 * 64 + 10 * 3 * 64 + 80


def test_nb201_string_and_parameter_free_cell():
    space = spaces.get("nb201", cells_per_stage=1).bind((8, 8, 3), 10)
    arch = {e: "skip_connect" for e in space.names}
    assert space.to_nb201_string(arch) == (
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
        "|skip_connect~0|skip_connect~1|skip_connect~2|")
    conv = {**arch, "edge_1_0": "nor_conv_3x3"}
    # one 3×3 conv per cell at 16, 32, 64 channels (its BatchNorm is affine-free)
    assert space.params(conv) - space.params(arch) == sum(9 * c * c for c in (16, 32, 64))


def test_nb201_canonical_keeps_a_conv_edge_out_of_a_zero_node():
    space, model, x = _model_with_random_statistics("nb201")
    # Node 1 receives nothing; node 2 reads it through edge_2_1 and feeds the output.
    arch = {**{e: "none" for e in space.names}, "edge_3_0": "skip_connect", "edge_3_2": "skip_connect"}
    outputs = {op: np.asarray(model(x, {**arch, "edge_2_1": op})) for op in space.choices["edge_2_1"]}
    for op in ("skip_connect", "avg_pool_3x3"):           # zero in, zero out: the same network
        assert space.canonical({**arch, "edge_2_1": op}) == space.canonical(arch)
        np.testing.assert_array_equal(outputs[op], outputs["none"])
    for op in ("nor_conv_1x1", "nor_conv_3x3"):           # BN of zero is −mean/√(var + ε)
        assert space.canonical({**arch, "edge_2_1": op})["edge_2_1"] == op
        assert np.abs(outputs[op] - outputs["none"]).max() > 1e-3


def test_input_shape_is_checked():
    with pytest.raises(ValueError, match="divisible by 4"):
        nas.supernet(spaces.get("nb201"), input_shape=(10, 10, 3))
    with pytest.raises(ValueError, match=r"cnn1d takes inputs \[length\]"):
        nas.supernet(spaces.get("cnn1d"), input_shape=(8, 8, 1))


def test_cnn1d_batch_norm_drops_the_conv_biases_and_rejects_unknown_norms():
    plain, normed = spaces.get("cnn1d").bind((40, 1), 10), spaces.get("cnn1d", norm="batch").bind((40, 1), 10)
    for seed in range(5):
        arch = plain.sample(seed)
        # Parameter-free BatchNorm, and no bias in front of it: one bias per conv channel fewer.
        channels = sum(arch[f"channels_{s}"] * arch[f"depth_{s}"] for s in range(3))
        assert normed.params(arch) == plain.params(arch) - channels
        model = nas.supernet(normed.fix(arch))
        assert nas.count_params(model) == normed.params(arch)
        assert all(conv.bias is None for stage in model.stages for conv in stage)
    with pytest.raises(ValueError, match="norm must be 'none' or 'batch'"):
        spaces.get("cnn1d", norm="layer")
