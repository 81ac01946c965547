"""`nas.layers.Conv` with explicit padding, and the convolution gradient written for XLA:CPU,
against `lax.conv_general_dilated` and its autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nas import layers

DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def reference_conv(x, kernel, padding):
    ndim = x.ndim - 2
    return jax.lax.conv_general_dilated(x, kernel, (1,) * ndim, [(padding, padding)] * ndim,
                                        dimension_numbers=DIMS[ndim])


def _inputs(ndim, size, k, cin=3, cout=4, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2,) + (size,) * ndim + (cin,)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k,) * ndim + (cin, cout)), jnp.float32)
    return x, kernel


def _loss(conv_fn, x, kernel):
    # A fixed random weighting, so every output position reaches the gradient differently.
    y = conv_fn(x, kernel)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
    return jnp.sum(y * weights)


@pytest.mark.parametrize("ndim,size,k,padding", [
    (2, 8, 7, 2),    # TangleNAS' last conv: 8×8 → 6×6
    (2, 6, 5, 0),    # valid
    (2, 6, 5, 2),    # same
    (2, 5, 3, 2),    # more than same: the output grows
    (1, 11, 5, 1),
    (1, 9, 3, 0),
    (2, 18, 3, 1),   # a larger output (324 positions)
    (1, 300, 5, 1),  # the same in 1-d
])
def test_dense_conv_matches_lax_values_and_gradients(ndim, size, k, padding):
    x, kernel = _inputs(ndim, size, k)
    np.testing.assert_allclose(layers.dense_conv(x, kernel, padding), reference_conv(x, kernel, padding),
                               rtol=1e-6, atol=1e-5)
    ours = jax.grad(lambda a, b: _loss(lambda u, v: layers.dense_conv(u, v, padding), a, b),
                    (0, 1))(x, kernel)
    theirs = jax.grad(lambda a, b: _loss(lambda u, v: reference_conv(u, v, padding), a, b),
                      (0, 1))(x, kernel)
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize("padding", [0, 1, 2, 3, 4])
def test_input_gradient_equals_autodiff(padding):
    x, kernel = _inputs(2, 7, 5, cin=2, cout=3, seed=padding)
    y, vjp = jax.vjp(lambda a, b: reference_conv(a, b, padding), x, kernel)
    dy = jnp.asarray(np.random.default_rng(2).normal(size=y.shape), jnp.float32)
    want_x, _ = vjp(dy)
    np.testing.assert_allclose(layers.conv_input_gradient(dy, kernel, padding), want_x, rtol=1e-5, atol=1e-4)


def test_conv_layer_explicit_padding_and_window():
    """A 7×7 layer with padding 2 under a centred 3×3 window is the 3×3 convolution with
    padding 0; the output mask zeroes inactive channels, as applied after the convolution."""
    layer = layers.Conv(3, 4, 7, 2, padding=2, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(4.0)
    x, _ = _inputs(2, 8, 7)
    window = jnp.zeros((7, 7)).at[2:5, 2:5].set(1.0)
    mask = jnp.array([1.0, 0.5, 1.0, 0.0])
    got = layer(x, mask, window)
    small = layer.kernel[...][2:5, 2:5]
    want = (reference_conv(x, small, 0) + layer.bias[...]) * mask
    assert got.shape == (2, 6, 6, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(got[..., 3]) == 0)


def test_conv_rejects_bad_padding():
    with pytest.raises(ValueError, match="padding must be ≥ 0"):
        layers.Conv(3, 4, 3, 2, padding=-1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="depthwise"):
        layers.conv(jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 1, 4)), groups=4, padding=0)
