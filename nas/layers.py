"""Entangled Flax NNX layers: each weight exists once, at its largest size.

A layer is called with masks (see `nas.masks`): an output-width mask zeroes the
inactive units (so padded positions stay exactly zero downstream), a kernel
window mask selects the centred k×k part of the largest kernel. Parameters that
carry spatial kernel axes record them as `centred_axes` metadata; every other
axis is sliced as a prefix when a compact model is extracted.

Every layer computes in its `dtype` (`nas.precision`: float32 unless a model is set to
bfloat16): it casts its input, weights and masks to it at use, while its parameters
stay float32; the normalisations compute their statistics in float32.
"""
from __future__ import annotations

import functools
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nas.masks import mixture
from nas.precision import FLOAT32, Computes

_KERNEL_INIT = nnx.initializers.lecun_normal()
_KAIMING_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def _masked(y, mask):
    return y if mask is None else y * mask


def _value(param):
    return None if param is None else param[...]


class Dense(Computes):
    """y = x @ W + b on `x: [..., in_features]`; inactive outputs masked to zero."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs,
                 use_bias: bool = True):
        self.kernel = nnx.Param(_KERNEL_INIT(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

    def __call__(self, x, out_mask=None):
        # The mask is folded into the kernel and bias: one multiply of [in, out] weights
        # instead of one of [..., out] activations, forward and backward.
        x, kernel, bias, out_mask = self.cast(x, self.kernel[...], _value(self.bias), out_mask)
        y = x @ _masked(kernel, out_mask)
        if bias is not None:
            y = y + _masked(bias, out_mask)
        return y


class Conv(Computes):
    """N-d convolution, channels last (`x: [batch, *spatial, channels]`).

    Kernel `[k]*ndim + [in/groups, out]`, stride `stride`, symmetric zero padding
    `padding` on every spatial axis, by default (k−1)/2 ("same": output length
    ceil(L / stride)). A centred smaller window of an odd kernel is exactly the
    smaller convolution with padding reduced by half the size difference.
    `groups == in == out` makes it depthwise.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ndim: int, *,
                 rngs: nnx.Rngs, stride: int = 1, groups: int = 1, use_bias: bool = True,
                 padding: int | None = None):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        if padding is not None and padding < 0:
            raise ValueError(f"padding must be ≥ 0, got {padding}")
        shape = (kernel_size,) * ndim + (in_channels // groups, out_channels)
        self.kernel = nnx.Param(_KAIMING_INIT(rngs.params(), shape),
                                centred_axes=tuple(range(ndim)))
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None
        self.ndim, self.stride, self.groups = ndim, stride, groups
        self.padding = (kernel_size - 1) // 2 if padding is None else padding

    def __call__(self, x, out_mask=None, window=None):
        # Both masks are folded into the kernel (and the output mask into the bias): a
        # kernel-sized multiply per step instead of an activation-sized one.
        x, kernel, bias, out_mask, window = self.cast(x, self.kernel[...], _value(self.bias), out_mask,
                                                     window)
        if window is not None:
            kernel = kernel * window[(...,) + (None, None)]
        y = conv(x, _masked(kernel, out_mask), stride=self.stride, groups=self.groups,
                 padding=self.padding)
        if bias is not None:
            y = y + _masked(bias, out_mask)
        return y


def conv(x, kernel, stride: int = 1, groups: int = 1, padding: int | None = None):
    """The convolution `Conv` runs: channels last, symmetric zero padding `padding`
    (default (k−1)/2), depthwise by shifted multiply–adds when `groups` equals the
    channels; a plain stride-1 convolution whose padding is not "same" differentiates by
    `dense_conv`'s rule."""
    k = kernel.shape[0]
    padding = (k - 1) // 2 if padding is None else padding
    if groups > 1 and groups == x.shape[-1] == kernel.shape[-1]:
        if padding != (k - 1) // 2:
            raise ValueError(f"depthwise convolutions take 'same' padding {(k - 1) // 2}, got {padding}")
        return depthwise_conv(x, kernel, stride=stride)
    if stride == 1 and groups == 1 and padding != (k - 1) // 2:
        return dense_conv(x, kernel, padding)
    return _lax_conv(x, kernel, stride, padding, groups)


def _lax_conv(x, kernel, stride: int, padding: int, groups: int = 1):
    ndim = kernel.ndim - 2
    spatial = "HWD"[:ndim] if ndim > 1 else "W"
    dims = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(stride,) * ndim, padding=[(padding, padding)] * ndim,
        dimension_numbers=dims, feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_conv(x, kernel, padding: int):
    """Stride-1, ungrouped `conv_general_dilated` with symmetric zero padding `padding`.

    Same values and gradients as autodiff's, with an input gradient XLA:CPU runs fast:
    autodiff's input gradient of a padding other than (k−1)/2 is a convolution XLA:CPU
    has no fast kernel for (about 10 s for a 7×7 kernel on 8×8 inputs with padding 2,
    against 0.3 s). On CPU that input gradient is a "same" convolution of the output
    gradient padded (or cropped) to fit (`conv_input_gradient`); every other gradient,
    and every gradient on other backends, is autodiff's.
    """
    return _lax_conv(x, kernel, 1, padding)


def _dense_conv_fwd(x, kernel, padding):
    return _lax_conv(x, kernel, 1, padding), (x, kernel)


def _dense_conv_bwd(padding, residuals, dy):
    x, kernel = residuals
    return jax.lax.platform_dependent(
        x, kernel, dy, cpu=functools.partial(_cpu_conv_gradients, padding),
        default=functools.partial(_autodiff_conv_gradients, padding))


dense_conv.defvjp(_dense_conv_fwd, _dense_conv_bwd)


def _autodiff_conv_gradients(padding, x, kernel, dy):
    _, vjp = jax.vjp(lambda a, b: _lax_conv(a, b, 1, padding), x, kernel)
    return vjp(dy)


def _cpu_conv_gradients(padding, x, kernel, dy):
    _, vjp = jax.vjp(lambda b: _lax_conv(x, b, 1, padding), kernel)
    kernel_gradient, = vjp(dy)
    return conv_input_gradient(dy, kernel, padding), kernel_gradient


def conv_input_gradient(dy, kernel, padding: int):
    """∂L/∂x of a stride-1 convolution with padding `padding`, from dy = ∂L/∂y.

    Written through the "same" convolution (padding (k−1)/2), whose input gradient
    XLA:CPU runs fast: a smaller padding crops the "same" output, so its gradient is
    the "same" gradient of dy zero-padded by the difference; a larger one pads the
    input, so its gradient is the "same" gradient cropped by the difference.
    """
    ndim = kernel.ndim - 2
    same = (kernel.shape[0] - 1) // 2
    grow, shrink = max(same - padding, 0), max(padding - same, 0)
    # The barrier keeps XLA from folding this pad into the convolution, which would give
    # back the padding that has no fast kernel.
    dy = jax.lax.optimization_barrier(jnp.pad(dy, [(0, 0)] + [(grow, grow)] * ndim + [(0, 0)]))
    shape = dy.shape[:-1] + kernel.shape[-2:-1]
    same_transpose = jax.linear_transpose(lambda a: _lax_conv(a, kernel, 1, same),
                                          jax.ShapeDtypeStruct(shape, dy.dtype))
    dx, = same_transpose(dy)
    return dx[(slice(None),) + tuple(slice(shrink, n - shrink) for n in dx.shape[1:-1])]


@functools.partial(jax.jit, static_argnames="stride")
def depthwise_conv(x, kernel, stride: int = 1):
    """Depthwise convolution as k^ndim shifted multiply–adds.

    x: [batch, *spatial, channels], kernel: [k]*ndim + [1, channels], symmetric
    padding (k−1)/2. Same numbers as a grouped `conv_general_dilated`, which XLA
    runs about 18× slower on CPU. `nas.count_macs` counts this call by its name.
    """
    ndim = x.ndim - 2
    k = kernel.shape[0]
    pad = (k - 1) // 2
    padded = jnp.pad(x, [(0, 0)] + [(pad, pad)] * ndim + [(0, 0)])
    out_sizes = [(n - 1) // stride + 1 for n in x.shape[1:-1]]
    out = jnp.zeros((x.shape[0], *out_sizes, x.shape[-1]), x.dtype)
    for offset in itertools.product(range(k), repeat=ndim):
        index = tuple(slice(o, o + stride * (n - 1) + 1, stride) for o, n in zip(offset, out_sizes))
        out = out + padded[(slice(None),) + index] * kernel[offset + (0,)]
    return out


def batch_statistics(x):
    """Per-channel (mean, biased variance) of `x` over every axis but the last."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    return mean, jnp.mean(jnp.square(x - mean), axes)


class BatchNorm(Computes):
    """BatchNorm over the last axis with statistics of the active channels only.

    Training mode normalises with the batch statistics and moves the running
    statistics of active channels (mask > 0) only, so a narrow sub-network never
    overwrites the statistics of channels it does not use.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, eps: float = 1e-5,
                 affine: bool = True):
        self.scale = nnx.Param(jnp.ones((num_features,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,))) if affine else None
        self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.var = nnx.BatchStat(jnp.ones((num_features,)))
        self.momentum, self.eps = momentum, eps

    def __call__(self, x, mask=None, train: bool = False):
        """Statistics and normalisation in float32 whatever the compute dtype; the output in it."""
        out_dtype, x = self.dtype, jnp.asarray(x, FLOAT32)
        if train:
            mean, var = batch_statistics(x)
            active = True if mask is None else mask > 0
            m = self.momentum
            self.mean[...] = jnp.where(active, m * self.mean[...] + (1 - m) * mean, self.mean[...])
            self.var[...] = jnp.where(active, m * self.var[...] + (1 - m) * var, self.var[...])
        else:
            mean, var = self.mean[...], self.var[...]
        # The channel mask is folded into the per-channel scale and shift: masking the
        # output instead took the convnet supernet's gradient from 6.0 to 12.9 s on CPU.
        scale = jax.lax.rsqrt(var + self.eps)
        if self.scale is None:
            return ((x - mean) * _masked(scale, mask)).astype(out_dtype)
        y = (x - mean) * _masked(scale * self.scale[...], mask) + _masked(self.bias[...], mask)
        return y.astype(out_dtype)


class LayerNorm(Computes):
    """LayerNorm over the last axis, dividing by the active width Σ mask, not the max width."""

    def __init__(self, num_features: int, *, eps: float = 1e-6):
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))
        self.eps = eps

    def __call__(self, x, mask=None):
        """Statistics and normalisation in float32 whatever the compute dtype; the output in it."""
        out_dtype, x = self.dtype, jnp.asarray(x, FLOAT32)
        if mask is None:
            mask = jnp.ones(x.shape[-1], x.dtype)
        width = jnp.sum(mask)
        mean = jnp.sum(x * mask, -1, keepdims=True) / width
        var = jnp.sum(jnp.square(x - mean) * mask, -1, keepdims=True) / width
        y = (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return (y * mask).astype(out_dtype)


class MultiHeadAttention(Computes):
    """Self-attention with entangled embed width and head count.

    `qkv: [embed, 3, heads, head_dim]` and `proj: [heads, head_dim, embed]` keep
    the head axis explicit so that fewer heads are a prefix slice; a head mask
    zeroes the outputs of inactive heads, an embed mask the inactive features.
    """

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3))
        self.qkv = nnx.Param(init(rngs.params(), (embed_dim, 3, num_heads, head_dim)))
        self.qkv_bias = nnx.Param(jnp.zeros((3, num_heads, head_dim)))
        proj_init = nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        self.proj = nnx.Param(proj_init(rngs.params(), (num_heads, head_dim, embed_dim)))
        self.proj_bias = nnx.Param(jnp.zeros((embed_dim,)))
        self.head_dim = head_dim

    def __call__(self, x, head_mask=None, embed_mask=None):
        """x: [batch, tokens, embed] → [batch, tokens, embed]; the softmax in float32."""
        x, qkv_kernel, qkv_bias, proj, proj_bias, head_mask, embed_mask = self.cast(
            x, self.qkv[...], self.qkv_bias[...], self.proj[...], self.proj_bias[...], head_mask, embed_mask)
        qkv = jnp.einsum("bte,eshd->sbthd", x, qkv_kernel) + qkv_bias[:, None, None]
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(float(self.head_dim))
        attn = jax.nn.softmax(jnp.asarray(logits, FLOAT32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhts,bshd->bthd", attn, v)
        # Both masks are folded into the projection (heads on its first axis, embed on its
        # last) instead of multiplying [batch, tokens, ...] activations.
        if head_mask is not None:
            proj = proj * head_mask[:, None, None]
        y = jnp.einsum("bthd,hde->bte", out, _masked(proj, embed_mask))
        return y + _masked(proj_bias, embed_mask)


def max_pool(x, window: int, stride: int):
    """Max pool over the spatial axes of `[batch, *spatial, channels]`, VALID padding.

    Non-overlapping windows (window = stride) are a reshape and a max over the window
    axes, whose derivative (a custom JVP) selects by the position `reduce_window`'s
    derivative would choose: elementwise, where `reduce_window`'s is a variadic
    reduction over index arrays plus a scatter (a few percent of the conv macro's weight
    step on CPU). Values, gradients and forward-mode derivatives equal `reduce_window`'s,
    ties (the first maximum) and NaNs included; a window of only −∞ gets no derivative
    (`reduce_window`'s gradient gives it to the first position, its forward-mode
    derivative does not).
    """
    nd = x.ndim - 2
    if window != stride:
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1,) + (window,) * nd + (1,),
                                     (1,) + (stride,) * nd + (1,), "VALID")
    pooled = tuple(size // window for size in x.shape[1:-1])
    x = x[(slice(None),) + tuple(slice(0, n * window) for n in pooled)]
    blocks = (x.shape[0], *itertools.chain.from_iterable((n, window) for n in pooled), x.shape[-1])
    return _block_max(x.reshape(blocks), window)


def _window_offsets(window: int, nd: int):
    """Index tuples of `[batch, n_1, window, …, n_nd, window, channels]` blocks picking each
    position of the window in turn (row-major, as `reduce_window` visits them)."""
    for offset in itertools.product(range(window), repeat=nd):
        yield (slice(None),) + tuple(itertools.chain.from_iterable((slice(None), o) for o in offset))


def _derivative_position(blocks, window: int):
    """The window position (−1 for none) `reduce_window`'s derivative takes each window's
    derivative from: a running choice from −∞ that keeps what it holds while that is ≥
    the next value, so ties go to the first maximum and NaN compares false either way."""
    nd = (blocks.ndim - 2) // 2
    held = index = None
    for k, at in enumerate(_window_offsets(window, nd)):
        value = blocks[at]
        if held is None:
            held = jnp.full(value.shape, -jnp.inf, value.dtype)
            index = jnp.full(value.shape, -1, jnp.int32)
        keep = held >= value
        held, index = jnp.where(keep, held, value), jnp.where(keep, index, k)
    return index


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _block_max(blocks, window: int):
    return jnp.max(blocks, axis=tuple(range(2, blocks.ndim - 1, 2)))  # NaN propagates


@_block_max.defjvp
def _block_max_jvp(window, primals, tangents):
    (blocks,), (tangent,) = primals, tangents
    best = _block_max(blocks, window)
    index = _derivative_position(blocks, window)
    out = jnp.zeros(best.shape, tangent.dtype)
    for k, at in enumerate(_window_offsets(window, (blocks.ndim - 2) // 2)):
        out = jnp.where(index == k, tangent[at], out)
    return best, out


def avg_pool_same(x, window: int):
    """Stride-1 average pool with padding (window−1)/2 that ignores padded positions."""
    nd = x.ndim - 2
    dims = (1,) + (window,) * nd + (1,)
    pad = [(0, 0)] + [((window - 1) // 2, (window - 1) // 2)] * nd + [(0, 0)]
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, (1,) * x.ndim, pad)
    ones = jnp.ones((1,) + x.shape[1:-1] + (1,), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, (1,) * x.ndim, pad)
    return total / count


def avg_pool(x, window: int):
    """Non-overlapping average pool (stride = window), VALID padding."""
    nd = x.ndim - 2
    dims = (1,) + (window,) * nd + (1,)
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, dims, "VALID") / window ** nd


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
    "hswish": jax.nn.hard_swish,
}


def activation_mixture(p, names: Sequence[str], x):
    """Σ_k p_k act_k(x): one-hot p gives exactly the chosen activation."""
    return mixture(p, [ACTIVATIONS[n](x) for n in names])
