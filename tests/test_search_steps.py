"""Sampled one-shot steps, the bi-level gradient step and vmapped population evaluation,
each against a slow reference computed arch by arch."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nas
import spaces
from launch.train import accuracy
from nas import layers
from search import engine, gradient, oneshot, samplers
from search.population import PopulationEvaluator

SHAPES = {"mlp": (64,), "cnn1d": (40, 1), "convnet": (12, 12, 3), "vit": (8, 8, 3),
          "nb201": (8, 8, 3)}
# XLA:CPU takes minutes to compile a training step of the full convnet / nb201; the same
# code paths at one or two blocks per stage compile in seconds.
SMALL = {"convnet": {"widths": (8, 16), "strides": (1, 2), "depths": (1, 2), "kernels": (3, 5),
                     "expands": (3, 4)},
         "nb201": {"channels": 8, "cells_per_stage": 1}}
# Every sampler on the cheap spaces; one per expensive space (the step code is shared).
SAMPLER_CASES = [(name, method) for name in ("mlp", "cnn1d", "vit")
                 for method in ("darts", "darts_sparsemax", "drnas", "gdas")] + [
    ("convnet", "gdas"), ("nb201", "darts")]


def _setup(name, batch=16, seed=0):
    space = spaces.get(name, **SMALL.get(name, {})).bind(SHAPES[name], 10)
    model = nas.supernet(space, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch,) + SHAPES[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return space, model, x, y


@pytest.mark.parametrize("rule", ["uniform", "sandwich"])
def test_sampled_loss_is_the_sum_over_the_sampled_archs(rule):
    space, model, x, y = _setup("cnn1d")
    graphdef, params, rest = engine.split(model)
    tx = optax.sgd(0.0)
    step = oneshot.make_step(graphdef, space, tx, rule, num_random=2, distill=True)
    key = jax.random.key(3)
    _, _, _, loss = step(params, rest, tx.init(params), x, y, key)

    sizes = [len(o) for o in space.choices.values()]

    def logits(arch):
        return model(x, arch)  # inference and training coincide: cnn1d has no BatchNorm

    if rule == "uniform":
        arch = space.from_indices(np.asarray(oneshot.random_index_vector(key, sizes)))
        expected = optax.softmax_cross_entropy_with_integer_labels(logits(arch), y).mean()
    else:
        low, high, _ = space.extremes(space.params)
        teacher = logits(high)
        soft = jax.nn.softmax(teacher)
        students = [low] + [space.from_indices(np.asarray(oneshot.random_index_vector(k, sizes)))
                            for k in jax.random.split(key, 2)]
        expected = optax.softmax_cross_entropy_with_integer_labels(teacher, y).mean()
        for arch in students:
            expected += optax.softmax_cross_entropy(logits(arch), soft).mean()
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


@pytest.mark.parametrize("name", list(SHAPES))
def test_sandwich_trains_every_space_with_one_compilation(name, compile_counter):
    space, model, x, y = _setup(name)
    graphdef, params, rest = engine.split(model)
    tx = optax.adam(1e-3)
    step = oneshot.make_step(graphdef, space, tx, "sandwich", num_random=1)
    opt = tx.init(params)
    before = jax.tree.map(jnp.copy, params)
    compiled = None
    for i in range(3):
        params, rest, opt, loss = step(params, rest, opt, x, y, jax.random.key(i))
        assert np.isfinite(float(loss))
        compiled = compiled if compiled is not None else len(compile_counter)
    assert len(compile_counter) == compiled  # steps 2 and 3 (other random archs) reuse step 1
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, before))
    assert max(moved) > 0


def test_bilevel_step_matches_a_hand_written_alternation():
    space, model, x, y = _setup("cnn1d")
    xv, yv = x[::-1].copy(), y[::-1].copy()
    graphdef, params, rest = engine.split(model)
    sampler = samplers.get("darts")
    w_tx, a_tx = gradient.weight_optimizer(10), gradient.alpha_optimizer()
    alpha = gradient.init_alpha(space, jax.random.key(0))
    step = gradient.make_step(graphdef, sampler, w_tx, a_tx)
    key = jax.random.key(7)
    p2, _, _, a2, _, metrics = step(params, rest, w_tx.init(params), alpha, a_tx.init(alpha),
                                    x, y, xv, yv, key, jnp.float32(0.5))

    # Reference: α-step on the validation batch first, then a weight step at the new α.
    k_alpha, k_weights = jax.random.split(key)

    def val_loss(a):
        probs = sampler.sample(a, k_alpha, 0.5)
        return engine.cross_entropy(model(xv, probs), yv) + sampler.penalty(a)

    grads = jax.grad(val_loss)(alpha)
    updates, _ = a_tx.update(grads, a_tx.init(alpha), alpha)
    alpha_ref = optax.apply_updates(alpha, updates)
    for k in alpha:
        np.testing.assert_allclose(a2[k], alpha_ref[k], rtol=1e-5, atol=1e-8)
    probs = sampler.sample(alpha_ref, k_weights, 0.5)
    expected = engine.cross_entropy(model(x, probs), y)
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)
    assert float(jnp.abs(p2["head"]["kernel"][...] - params["head"]["kernel"][...]).max()) > 0


@pytest.mark.parametrize("kind", ["oneshot", "gradient"])
def test_a_donating_step_gives_the_same_numbers_and_consumes_its_state(kind):
    space, model, x, y = _setup("mlp")
    graphdef, params, rest = engine.split(model)
    key = jax.random.key(3)
    if kind == "oneshot":
        tx = optax.adam(1e-2)
        outputs = {}
        for donate in (False, True):
            state = jax.tree.map(jnp.copy, (params, rest, tx.init(params)))
            step = oneshot.make_step(graphdef, space, tx, "sandwich", num_random=1, donate=donate)
            outputs[donate] = step(*state, x, y, key)
    else:
        w_tx, a_tx = gradient.weight_optimizer(10), gradient.alpha_optimizer()
        alpha = gradient.init_alpha(space, jax.random.key(0))
        outputs = {}
        for donate in (False, True):
            state = jax.tree.map(jnp.copy, (params, rest, w_tx.init(params), alpha, a_tx.init(alpha)))
            step = gradient.make_step(graphdef, samplers.get("drnas"), w_tx, a_tx, donate=donate)
            outputs[donate] = step(*state, x, y, x[::-1], y[::-1], key, jnp.float32(0.5))
    # XLA may fuse an aliased program differently: equal up to float rounding.
    for kept, donated in zip(jax.tree.leaves(outputs[False]), jax.tree.leaves(outputs[True])):
        np.testing.assert_allclose(np.asarray(kept), np.asarray(donated), rtol=1e-5, atol=1e-7)
    # The donated inputs' buffers went to the outputs: the arrays passed in are gone.
    assert jax.tree.leaves(state[0])[0].is_deleted()


@pytest.mark.parametrize("name, method", SAMPLER_CASES)
def test_every_sampler_searches_every_space(name, method):
    space, model, x, y = _setup(name, batch=8)
    graphdef, params, rest = engine.split(model)
    w_tx, a_tx = gradient.weight_optimizer(4), gradient.alpha_optimizer(learning_rate=0.05)
    alpha = gradient.init_alpha(space, jax.random.key(0))
    step = gradient.make_step(graphdef, samplers.get(method), w_tx, a_tx)
    w_state, a_state = w_tx.init(params), a_tx.init(alpha)
    for i in range(2):
        params, rest, w_state, new_alpha, a_state, metrics = step(
            params, rest, w_state, alpha, a_state, x, y, x, y, jax.random.key(i), jnp.float32(i / 2))
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["alpha_loss"]))
        assert any(float(jnp.abs(new_alpha[k] - alpha[k]).max()) > 0 for k in alpha)
        alpha = new_alpha
    assert space.validate(gradient.discretise(space, alpha))
    assert 0 <= gradient.entropy(alpha) <= np.log(max(len(o) for o in space.choices.values()))


def test_discretise_is_argmax_per_decision():
    space = spaces.get("cnn1d")
    alpha = {k: jnp.zeros(len(o)).at[i % len(o)].set(1.0)
             for i, (k, o) in enumerate(space.choices.items())}
    arch = gradient.discretise(space, alpha)
    assert arch == {k: o[i % len(o)] for i, (k, o) in enumerate(space.choices.items())}


def _recalibrated_compact_accuracy(model, arch, calib, x, y):
    """Slow reference: extract the compact model, set its BatchNorm statistics to the
    calibration batch's own (momentum 0), evaluate it."""
    compact = nas.extract(model, arch)
    for _, module in nnx.iter_modules(compact):
        if isinstance(module, layers.BatchNorm):
            module.momentum = 0.0
    compact.forward(jnp.asarray(calib), compact.space.encode(None), train=True)
    return accuracy(compact, x, y)


@pytest.mark.parametrize("name", ["cnn1d", "convnet", "nb201"])
def test_population_evaluation_matches_arch_by_arch(name, compile_counter):
    space, model, x, y = _setup(name, batch=24)
    calib = np.random.default_rng(1).normal(1.0, 2.0, size=(16,) + SHAPES[name]).astype(np.float32)
    graphdef, params, rest = engine.split(model)
    evaluator = PopulationEvaluator(graphdef, params, rest, space, x, y, calib_x=calib, chunk=4)
    assert evaluator.recalibrate == (name != "cnn1d")
    archs = [space.sample(i) for i in range(6)]
    got = evaluator.evaluate(archs)
    compiles = len(compile_counter)
    evaluator.evaluate([space.sample(i) for i in range(10, 13)])  # another population, padded
    assert len(compile_counter) == compiles
    for arch, acc in zip(archs, got):
        if evaluator.recalibrate:
            expected = _recalibrated_compact_accuracy(model, arch, calib, x, y)
        else:
            expected = accuracy(model, x, y, arch)
        assert acc == pytest.approx(expected, abs=1e-9)


def test_population_evaluation_scores_each_network_once():
    space, model, x, y = _setup("mlp", batch=24)
    graphdef, params, rest = engine.split(model)
    evaluator = PopulationEvaluator(graphdef, params, rest, space, x, y, chunk=4)
    shallow, deep = {**space.sample(0), "depth": 1}, {**space.sample(1), "depth": 4}
    archs = [shallow, deep, {**shallow, "width_2": 256}, {**shallow, "width_3": 128}, deep]
    scored = []
    evaluator._accuracies = lambda networks: scored.extend(networks) or [0.25, 0.5]
    # Two networks scored, each score handed to every encoding of its network.
    assert evaluator.evaluate(archs) == [0.25, 0.5, 0.25, 0.25, 0.5]
    assert scored == [space.canonical(shallow), space.canonical(deep)]


def test_population_evaluation_needs_data():
    space, model, x, y = _setup("mlp")
    graphdef, params, rest = engine.split(model)
    with pytest.raises(ValueError, match="non-empty evaluation set"):
        PopulationEvaluator(graphdef, params, rest, space, x[:0], y[:0])
    assert nnx.state(model)  # the evaluator never consumed the model


def test_population_evaluation_with_batch_norm_needs_a_calibration_batch():
    space, model, x, y = _setup("convnet")
    graphdef, params, rest = engine.split(model)
    # Calibrating on the evaluation set would leak it into the scores: no silent default.
    with pytest.raises(ValueError, match="calib_x"):
        PopulationEvaluator(graphdef, params, rest, space, x, y)
    with pytest.raises(ValueError, match="calib_x"):
        PopulationEvaluator(graphdef, params, rest, space, x, y, calib_x=x[:0])


def test_collapse_warning_fires_when_half_the_decisions_are_cheapest():
    from launch.report import cheapest_decisions, collapse_lines
    space = spaces.get("nb201", channels=4, cells_per_stage=1).bind((8, 8, 3), 10)
    edges = list(space.choices)
    alpha = {e: jnp.zeros(5) for e in edges}
    conv = {e: "nor_conv_3x3" for e in edges}
    half = {**conv, **{e: ("skip_connect", "none", "avg_pool_3x3")[i] for i, e in enumerate(edges[:3])}}
    # A hand count: the three parameter-free edges, and the 1×1 conv is cheaper than the 3×3.
    assert cheapest_decisions(space, half) == edges[:3]
    assert cheapest_decisions(space, {**conv, edges[5]: "nor_conv_1x1"}) == []
    assert any("warning: 3 of 6 decisions" in line for line in collapse_lines(space, half, alpha))
    assert not any("warning" in line for line in collapse_lines(space, conv, alpha))
    two = {**conv, edges[0]: "none", edges[1]: "skip_connect"}
    assert not any("warning" in line for line in collapse_lines(space, two, alpha))
    mlp = spaces.get("mlp").bind((40,), 10)   # activations cost nothing: never counted
    arch = {**mlp.extremes(mlp.params)[1], "activation": "relu"}
    assert cheapest_decisions(mlp, arch) == []
