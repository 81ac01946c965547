"""The baseline zero-cost proxies against hand computations in NumPy (float64).

An `mlp` is small enough to write forward and backward passes by hand; a `cnn1d` with
BatchNorm checks the BatchNorm modes (SynFlow: inference, the rest: the batch's
statistics) against a NumPy forward pass and central finite differences.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from flax import nnx

import nas
import spaces
from search import engine, proxies
from search.proxies import core
from sparse import masks as masklib

TRACED = ("synflow", "snip", "grad_norm", "naswot", "jacob_cov")


def relu(z):
    return np.maximum(z, 0.0)


def with_random_biases(model, seed: int):
    """`model` with every bias drawn from N(0, 0.3²) (they start at 0), so the proxies that
    read biases (SynFlow, the codes of NASWOT) are checked on them."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    for path, variable in nnx.to_flat_state(state):
        if path[-1] == "bias":
            variable.set_value(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    nnx.update(model, state)
    return model


def jacob_cov_of(jacobians):
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(jacobians))
    return -np.sum(np.log(eigenvalues + 1e-5) + 1.0 / (eigenvalues + 1e-5))


def naswot_of(pre_activations):
    """log|det K| of the codes of every unit, pre-activations given as [N, units] per layer."""
    codes = np.concatenate([z > 0 for z in pre_activations], axis=1).astype(np.float64)
    return np.linalg.slogdet(codes @ codes.T + (1 - codes) @ (1 - codes).T)[1]


def cross_entropy_gradient(logits, y):
    """∂(mean cross-entropy)/∂logits."""
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs[np.arange(len(y)), y] -= 1.0
    return probs / len(y)


def cross_entropy(logits, y):
    shifted = logits - logits.max(1, keepdims=True)
    return np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(y)), y])


# ------------------------------------------------------------------------------- mlp

MLP = spaces.get("mlp", max_depth=3, widths=(8, 12, 16), activations=("relu", "tanh")).bind((10,), 3)
MLP_ARCHS = [{"depth": 2, "width_0": 12, "width_1": 8, "width_2": 8, "activation": "relu"},
             {"depth": 3, "width_0": 8, "width_1": 16, "width_2": 12, "activation": "relu"}]


def mlp_weights(model, arch):
    """The arch's own (kernels, biases), sliced from the supernet by hand: each kernel's
    active prefix scaled by sqrt(supernet fan-in / arch fan-in), its own init's scale."""
    sizes = [10] + [arch[f"width_{i}"] for i in range(arch["depth"])] + [3]
    layers = [model.hidden[i] for i in range(arch["depth"])] + [model.head]
    kernels, biases = [], []
    for layer, n_in, n_out in zip(layers, sizes[:-1], sizes[1:]):
        kernel = np.asarray(layer.kernel[...], np.float64)
        kernels.append(kernel[:n_in, :n_out] * math.sqrt(kernel.shape[0] / n_in))
        biases.append(np.asarray(layer.bias[...], np.float64)[:n_out])
    return kernels, biases


def mlp_forward(kernels, biases, x):
    """(pre-activations of the hidden layers, logits)."""
    pres, h = [], x
    for kernel, bias in zip(kernels[:-1], biases[:-1]):
        pres.append(h @ kernel + bias)
        h = relu(pres[-1])
    return pres, h @ kernels[-1] + biases[-1]


def mlp_backward(kernels, pres, x, logit_gradient):
    """(gradients of the kernels, gradient of the input) by backpropagation."""
    inputs = [x] + [relu(z) for z in pres]
    grads, g = [None] * len(kernels), logit_gradient
    for i in reversed(range(len(kernels))):
        grads[i] = inputs[i].T @ g
        g = g @ kernels[i].T
        if i > 0:
            g = g * (pres[i - 1] > 0)
    return grads, g


def mlp_reference(kernels, biases, x, y) -> dict[str, float]:
    positive_k, positive_b = [np.abs(k) for k in kernels], [np.abs(b) for b in biases]
    ones = np.ones((1, x.shape[1]))
    pres, _ = mlp_forward(positive_k, positive_b, ones)
    flow, _ = mlp_backward(positive_k, pres, ones, np.ones((1, 3)))
    pres, logits = mlp_forward(kernels, biases, x)
    loss_grads, _ = mlp_backward(kernels, pres, x, cross_entropy_gradient(logits, y))
    _, jacobians = mlp_backward(kernels, pres, x, np.ones_like(logits))
    return {"synflow": sum(np.sum(k * g) for k, g in zip(positive_k, flow)),
            "snip": sum(np.sum(np.abs(k * g)) for k, g in zip(kernels, loss_grads)),
            "grad_norm": sum(np.linalg.norm(g) for g in loss_grads),
            "naswot": naswot_of(pres),
            "jacob_cov": jacob_cov_of(jacobians)}


@pytest.mark.parametrize("name", TRACED)
def test_mlp_supernet_matches_numpy(name):
    """Two archs below the supernet's depth and widths, scored in one vmapped population at
    their own init, equal the hand computation on their sliced, rescaled weights."""
    model = with_random_biases(MLP.supernet_class(MLP, rngs=nnx.Rngs(0)), seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 10)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    got = proxies.score_population(name, MLP, MLP_ARCHS, x, y, model=model, chunk=2)
    want = [mlp_reference(*mlp_weights(model, a), x.astype(np.float64), y)[name] for a in MLP_ARCHS]
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_costs_are_the_spaces_counts():
    x, y = np.zeros((2, 10), np.float32), np.array([0, 1])
    arch = MLP_ARCHS[0]   # 10 → 12 → 8 → 3
    assert proxies.score("params", MLP, arch, x, y) == (10 * 12 + 12) + (12 * 8 + 8) + (8 * 3 + 3)
    assert proxies.score("flops", MLP, arch, x, y) == 10 * 12 + 12 * 8 + 8 * 3
    compact = nas.extract(MLP.supernet_class(MLP, rngs=nnx.Rngs(0)), arch)
    assert proxies.score("params", MLP, arch, x, y) == nas.count_params(compact)
    np.testing.assert_array_equal(proxies.score_population("flops", MLP, MLP_ARCHS, x, y),
                                  [MLP.flops(a) for a in MLP_ARCHS])


# ------------------------------------------------------------------- cnn1d, BatchNorm

CNN = spaces.get("cnn1d", channels=(3,), kernels=(3,), depths=(1,), norm="batch").bind((8, 1), 3)
CNN_ARCH = CNN.sample(seed=0)   # the only one


def cnn_weights(model):
    """(conv kernels [k, in, out], conv biases, head kernel, head bias) in float64; the convs
    in front of BatchNorm have no bias (zeros here)."""
    convs = [model.stages[s][0] for s in range(3)]
    assert all(c.bias is None for c in convs)
    return ([np.asarray(c.kernel[...], np.float64) for c in convs],
            [np.zeros(c.kernel.shape[-1]) for c in convs],
            np.asarray(model.head.kernel[...], np.float64), np.asarray(model.head.bias[...], np.float64))


def cnn_forward(weights, x, train: bool):
    """(the ReLUs' inputs, logits) of cnn1d: per stage conv (padding (k−1)/2) → BatchNorm
    (the batch's statistics, or at init the running mean 0, variance 1) → ReLU, max-pool 2
    after stages 0 and 1, then global average pool → dense."""
    kernels, biases, head_kernel, head_bias = weights
    h, pres = x, []
    for s, (kernel, bias) in enumerate(zip(kernels, biases)):
        pad = (len(kernel) - 1) // 2
        padded = np.pad(h, ((0, 0), (pad, pad), (0, 0)))
        z = sum(padded[:, j:j + h.shape[1]] @ kernel[j] for j in range(len(kernel))) + bias
        mean, var = (z.mean((0, 1)), z.var((0, 1))) if train else (0.0, 1.0)
        pres.append((z - mean) / np.sqrt(var + 1e-5))
        h = relu(pres[-1])
        if s < 2:
            h = h.reshape(len(h), h.shape[1] // 2, 2, -1).max(2)
    return pres, h.mean(1) @ head_kernel + head_bias


def numeric_gradient(fn, array, step=1e-6):
    """∂fn/∂array by central differences (`array` is perturbed in place, then restored)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + step
        up = fn()
        array[index] = saved - step
        grad[index] = (up - fn()) / (2 * step)
        array[index] = saved
    return grad


def cnn_reference(weights, x, y) -> dict[str, float]:
    kernels, biases, head_kernel, head_bias = weights
    all_kernels = kernels + [head_kernel]
    positive = ([np.abs(k) for k in kernels], [np.abs(b) for b in biases], np.abs(head_kernel),
                np.abs(head_bias))
    positive_kernels = positive[0] + [positive[2]]
    ones = np.ones((1,) + x.shape[1:])
    flow = [numeric_gradient(lambda: cnn_forward(positive, ones, train=False)[1].sum(), k)
            for k in positive_kernels]
    loss_grads = [numeric_gradient(lambda: cross_entropy(cnn_forward(weights, x, train=True)[1], y), k)
                  for k in all_kernels]
    inputs = x.copy()
    jacobians = numeric_gradient(lambda: cnn_forward(weights, inputs, train=True)[1].sum(), inputs)
    pres, _ = cnn_forward(weights, x, train=True)
    return {"naswot": naswot_of([z.reshape(len(x), -1) for z in pres]),
            "synflow": sum(np.sum(k * g) for k, g in zip(positive_kernels, flow)),
            "snip": sum(np.sum(np.abs(k * g)) for k, g in zip(all_kernels, loss_grads)),
            "grad_norm": sum(np.linalg.norm(g) for g in loss_grads),
            "jacob_cov": jacob_cov_of(jacobians.reshape(len(x), -1))}


@pytest.fixture(scope="module")
def cnn_case():
    """(model with random biases, x, y, the NumPy values of every traced proxy)."""
    model = with_random_biases(CNN.supernet_class(CNN, rngs=nnx.Rngs(3)), seed=4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 8, 1)).astype(np.float32).astype(np.float64)
    y = rng.integers(0, 3, 5)
    return model, x, y, cnn_reference(cnn_weights(model), x, y)


@pytest.mark.parametrize("name", TRACED)
def test_cnn1d_batchnorm_matches_numpy(cnn_case, name):
    """SynFlow normalises with the running statistics, the others with the batch's: each
    equals the NumPy forward pass (finite differences for the gradients). NASWOT reads
    every ReLU unit, those that never win a max-pool included."""
    model, x, y, want = cnn_case
    got = proxies.score(name, CNN, CNN_ARCH, x.astype(np.float32), y, model=model)
    assert np.isfinite(want[name])
    np.testing.assert_allclose(got, want[name], rtol=2e-4)


# ------------------------------------------------------------------------ naswot

@pytest.mark.parametrize("norm, arch", [
    ("none", {"channels_0": 4, "kernel_0": 3, "depth_0": 1, "channels_1": 8, "kernel_1": 5, "depth_1": 2,
              "channels_2": 4, "kernel_2": 5, "depth_2": 1}),
    ("batch", {"channels_0": 8, "kernel_0": 5, "depth_0": 2, "channels_1": 4, "kernel_1": 3, "depth_1": 1,
               "channels_2": 8, "kernel_2": 3, "depth_2": 2})])
def test_naswot_supernet_equals_extracted_model(norm, arch):
    """Units outside an arch's widths (masked to 0) and in layers beyond its depths
    (computed, then weighed by 0) do not count: the supernet's score of an arch is its
    compact model's, at the same (arch-own) init."""
    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3, 5), depths=(1, 2), norm=norm).bind((16, 1), 3)
    model = space.supernet_class(space, rngs=nnx.Rngs(6))
    rng = np.random.default_rng(7)
    x = rng.normal(size=(10, 16, 1)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    graphdef, params, rest = engine.split(model)
    factors = core.init_factors(model, arch, masklib.kernel_names(params))
    compact = nas.extract(nnx.merge(graphdef, core.at_init(params, factors), rest), arch)
    supernet_score = proxies.score("naswot", space, arch, x, y, model=model)
    assert np.isfinite(supernet_score)
    assert supernet_score == pytest.approx(proxies.score("naswot", compact.space, arch, x, y, model=compact),
                                           rel=1e-6)


def test_naswot_needs_a_relu():
    space = spaces.get("mlp", max_depth=1, widths=(4,), activations=("tanh",)).bind((5,), 3)
    x, y = np.ones((4, 5), np.float32), np.arange(4) % 3
    with pytest.raises(ValueError, match="no ReLU"):
        proxies.score("naswot", space, space.sample(seed=0), x, y)


def test_unknown_proxy_name():
    with pytest.raises(ValueError, match=r"unknown proxy 'synflw' \(did you mean 'synflow'\?\)"):
        proxies.get("synflw")
    with pytest.raises(ValueError, match="unknown proxy 'nasowt'"):
        proxies.score("nasowt", MLP, MLP_ARCHS[0], np.zeros((2, 10), np.float32), np.array([0, 1]))
