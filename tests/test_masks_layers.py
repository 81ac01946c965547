"""Masks and entangled layers against slow obvious references (loops, numpy)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from nas import count_macs, layers, masks


def test_prefix_mask_hand_computed():
    np.testing.assert_array_equal(masks.prefix_mask(np.array([0, 1, 0.0]), (1, 3, 4), 4), [1, 1, 1, 0])
    np.testing.assert_allclose(masks.prefix_mask(np.array([0.5, 0.25, 0.25]), (1, 3, 4), 5),
                               [1, 0.5, 0.5, 0.25, 0])


def test_window_mask_hand_computed():
    m = np.asarray(masks.window_mask(np.array([0.25, 0.75]), (1, 3), 5, 1))
    np.testing.assert_allclose(m, [0, 0.75, 1, 0.75, 0])
    m2 = np.asarray(masks.window_mask(np.array([0.0, 1.0]), (1, 3), 3, 2))
    np.testing.assert_array_equal(m2, np.ones((3, 3)))
    m2 = np.asarray(masks.window_mask(np.array([1.0, 0.0]), (1, 3), 3, 2))
    np.testing.assert_array_equal(m2, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="parity"):
        masks.window_mask(np.ones(1), (2,), 5, 1)


def test_joint_prefix_mask_is_expectation_over_pairs():
    pa, pb = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    a_opts, b_opts = (4, 6), (1.5, 2.0)
    size = 12
    reference = np.zeros(size)
    for i, a in enumerate(a_opts):
        for j, b in enumerate(b_opts):
            reference += pa[i] * pb[j] * (np.arange(size) < int(a * b))
    got = masks.joint_prefix_mask(pa, a_opts, pb, b_opts, lambda a, b: int(a * b), size)
    np.testing.assert_allclose(got, reference, rtol=1e-6)


def test_depth_weights_and_mixture():
    w = np.asarray(masks.depth_weights(np.array([0.3, 0.7]), (2, 4), 4))
    np.testing.assert_allclose(w, [0, 0.3, 0, 0.7])
    ys = [np.full(3, float(i)) for i in range(4)]
    np.testing.assert_allclose(masks.mixture(w, ys), np.full(3, 0.3 * 1 + 0.7 * 3))


def _conv1d_reference(x, w, stride):
    """Loop conv: x [L, Cin], w [k, Cin, Cout], symmetric padding (k−1)/2."""
    k = w.shape[0]
    pad = (k - 1) // 2
    xp = np.pad(x, ((pad, pad), (0, 0)))
    out_len = (len(x) - 1) // stride + 1
    out = np.zeros((out_len, w.shape[2]))
    for t in range(out_len):
        for j in range(k):
            out[t] += xp[t * stride + j] @ w[j]
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_with_window_equals_smaller_conv(stride):
    conv = layers.Conv(3, 4, 7, 1, stride=stride, use_bias=False, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 11, 3)).astype(np.float32)
    window = masks.window_mask(np.array([0.0, 1.0, 0.0]), (3, 5, 7), 7, 1)
    got = np.asarray(conv(x, window=window))
    w5 = np.asarray(conv.kernel[...])[1:6]
    for b in range(2):
        np.testing.assert_allclose(got[b], _conv1d_reference(x[b], w5, stride), atol=1e-5)


def test_depthwise_conv_is_per_channel():
    conv = layers.Conv(4, 4, 3, 2, groups=4, use_bias=False, rngs=nnx.Rngs(1))
    x = np.random.default_rng(1).normal(size=(1, 5, 5, 4)).astype(np.float32)
    got = np.asarray(conv(x))[0]
    w = np.asarray(conv.kernel[...])  # [3, 3, 1, 4]
    xp = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((5, 5, 4))
    for i in range(5):
        for j in range(5):
            ref[i, j] = np.einsum("abc,abc->c", xp[i:i + 3, j:j + 3], w[:, :, 0])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_layernorm_over_active_width_equals_layernorm_of_slice():
    ln = layers.LayerNorm(6)
    x = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    x[:, 4:] = 0.0
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    got = np.asarray(ln(x, mask))
    a = x[:, :4]
    ref = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(got[:, :4], ref, atol=1e-5)
    np.testing.assert_array_equal(got[:, 4:], 0.0)


def test_batchnorm_moves_running_stats_of_active_channels_only():
    bn = layers.BatchNorm(3, momentum=0.9)
    x = np.random.default_rng(3).normal(2.0, 3.0, size=(64, 3)).astype(np.float32)
    mask = np.array([1, 1, 0], np.float32)
    y = np.asarray(bn(x * mask, mask, train=True))
    np.testing.assert_allclose(bn.mean[...][:2], 0.1 * x[:, :2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.var[...][:2], 0.9 + 0.1 * x[:, :2].var(0), rtol=1e-5)
    assert bn.mean[...][2] == 0.0 and bn.var[...][2] == 1.0
    np.testing.assert_allclose(y[:, :2].mean(0), 0.0, atol=1e-5)
    np.testing.assert_array_equal(y[:, 2], 0.0)


def test_attention_matches_numpy_reference_with_head_mask():
    att = layers.MultiHeadAttention(8, 3, 4, rngs=nnx.Rngs(4))
    x = np.random.default_rng(4).normal(size=(2, 5, 8)).astype(np.float32)
    head_mask = np.array([1, 1, 0], np.float32)
    got = np.asarray(att(x, head_mask))
    qkv = np.asarray(att.qkv[...])
    proj = np.asarray(att.proj[...])
    ref = np.zeros((2, 5, 8))
    for b in range(2):
        for h in range(2):  # the masked head contributes nothing
            q, k, v = (x[b] @ qkv[:, i, h] for i in range(3))
            logits = q @ k.T / 2.0
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            attn /= attn.sum(-1, keepdims=True)
            ref[b] += (attn @ v) @ proj[h]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_avg_pool_same_ignores_padding():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    got = np.asarray(layers.avg_pool_same(x, 3))[0, :, :, 0]
    img = x[0, :, :, 0]
    ref = np.array([[img[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean() for j in range(3)]
                    for i in range(3)])
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("shape, window, stride", [((2, 7, 9, 3), 2, 2), ((2, 9, 3), 3, 3),
                                                   ((1, 4, 5, 4, 2), 2, 2), ((2, 7, 8, 3), 3, 2)])
def test_max_pool_against_loops_and_reduce_window_ties_and_nans_included(shape, window, stride):
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=shape)).astype(np.float32)   # rounded: windows with ties
    x.flat[[0, 7, 8]] = np.nan   # NaNs first, last and twice in a window
    got = np.asarray(layers.max_pool(x, window, stride))
    out_sizes = [(n - window) // stride + 1 for n in shape[1:-1]]
    assert got.shape == (shape[0], *out_sizes, shape[-1])
    spatial = tuple(range(1, len(shape) - 1))
    for index in np.ndindex(*out_sizes):
        block = x[(slice(None),) + tuple(slice(i * stride, i * stride + window) for i in index)]
        np.testing.assert_array_equal(got[(slice(None),) + index], block.max(axis=spatial))  # NaN wins
    assert np.isnan(got).any()
    # Gradient (the first maximum of a window takes it; in a window with a NaN, the
    # largest other element) and forward-mode derivative as reduce_window's.
    dims = (1,) + (window,) * (len(shape) - 2) + (1,)
    strides = (1,) + (stride,) * (len(shape) - 2) + (1,)

    def reference(a):
        return jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, dims, strides, "VALID")
    cotangent = rng.normal(size=got.shape).astype(np.float32)
    grad = jax.grad(lambda a: jnp.sum(layers.max_pool(a, window, stride) * cotangent))(x)
    np.testing.assert_array_equal(grad, jax.grad(lambda a: jnp.sum(reference(a) * cotangent))(x))
    tangent = rng.normal(size=shape).astype(np.float32)
    _, forward = jax.jvp(lambda a: layers.max_pool(a, window, stride), (x,), (tangent,))
    np.testing.assert_array_equal(forward, jax.jvp(reference, (x,), (tangent,))[1])


def test_count_macs_hand_computed():
    w = jnp.ones((5, 7))
    k = jnp.ones((3, 2, 4))
    def f(x, z):
        y = x @ w                                      # 2·5·7 = 70
        c = jax.lax.conv_general_dilated(z, k, (1,), [(1, 1)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))  # 10·4·(3·2) = 240
        return jax.jit(lambda a: a @ w.T)(y).sum() + c.sum()   # nested: 2·7·5 = 70
    assert count_macs(f, jnp.ones((2, 5)), jnp.ones((1, 10, 2))) == 70 + 240 + 70


@pytest.mark.parametrize("ndim, stride, size", [(1, 1, 9), (1, 2, 9), (2, 1, 6), (2, 2, 7)])
def test_depthwise_shift_sum_equals_grouped_convolution(ndim, stride, size):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2,) + (size,) * ndim + (6,)).astype(np.float32)
    kernel = rng.normal(size=(5,) * ndim + (1, 6)).astype(np.float32)
    spatial = "HW"[:ndim] if ndim > 1 else "W"
    reference = jax.lax.conv_general_dilated(
        x, kernel, (stride,) * ndim, [(2, 2)] * ndim,
        dimension_numbers=("N" + spatial + "C", spatial + "IO", "N" + spatial + "C"),
        feature_group_count=6)
    got = layers.depthwise_conv(x, kernel, stride=stride)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert count_macs(lambda a: layers.depthwise_conv(a, kernel, stride=stride), x) == \
        got.size * 5 ** ndim


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=5, unique=True), st.integers(0, 10**6))
def test_prefix_mask_is_the_probability_that_width_exceeds_j(widths, seed):
    p = np.random.default_rng(seed).dirichlet(np.ones(len(widths))).astype(np.float32)
    got = np.asarray(masks.prefix_mask(p, widths, 12))
    reference = [sum(pk for pk, w in zip(p, widths) if j < w) for j in range(12)]
    np.testing.assert_allclose(got, reference, atol=1e-6)
