"""`nb201`: the NAS-Bench-201 cell space (inputs NHWC, height and width divisible by 4).

Stem Conv3×3 → BN; three stages of N cells at C, 2C, 4C channels separated by
ResNet reduction blocks; BN → ReLU → global average pool → Dense. A cell has
four nodes; node j sums one operation on each earlier node, so there are six
edges `edge_j_i` (i < j ≤ 3), each one of none, skip_connect, nor_conv_1x1,
nor_conv_3x3, avg_pool_3x3; every cell uses the same six choices.

Entanglement (TangleNAS): nor_conv_1x1 is the centre of nor_conv_3x3's kernel,
one tensor. With mixing weights p, the edge computes
    gate · BN(conv(relu(x), W ⊙ window(p_conv / gate))) + p_skip · x + p_pool · pool(x),
gate = p_1x1 + p_3x3: one convolution with the superposed kernel, exactly the
chosen operation for a one-hot p. The edge BatchNorm has no affine parameters,
as in NAS-Bench-201's search cells.

At gate = 0 (a one-hot on none, skip or pool, as GDAS samples) the formula
above has no gradient for the conv options: their kernel share is 0/0. Along
option k the edge moves as ε · BN(conv(relu(x), W ⊙ window_k)), so that is the
gradient the edge gives p_k there (computed in the backward pass only, see
`_idle_conv_gradient`): a straight-through sampler then sees every option's
soft-mixture derivative, not zero for the convs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

import nas
from nas import layers, masks
from spaces import register
from spaces.core import Space, check_sizes

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
EDGES = tuple(f"edge_{j}_{i}" for j in range(1, 4) for i in range(j))
# The ops whose output is exactly zero on a zero input (besides none).
_ZERO_ON_ZERO = ("skip_connect", "avg_pool_3x3")


def _normalise(y, stats, eps):
    """Affine-free BatchNorm of `y`: batch statistics when `stats` is None, else (mean, var)."""
    mean, var = layers.batch_statistics(y) if stats is None else stats
    return (y - mean) * jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _idle_conv_gradient(conv_p, x, kernel, stats, kernel_sizes, eps):
    """Zero in the forward pass. When every conv weight is 0 its gradient for
    `conv_p` (the conv options' mixing weights) is ⟨cotangent, BN(conv(x, W ⊙
    window_k)) − BN(0)⟩: added to the superposed formula's own gradient there,
    BN(0), the edge's gradient is its one-sided derivative along option k. 0 otherwise."""
    return jnp.zeros(x.shape[:-1] + kernel.shape[-1:], x.dtype)


def _idle_conv_gradient_fwd(conv_p, x, kernel, stats, kernel_sizes, eps):
    return _idle_conv_gradient(conv_p, x, kernel, stats, kernel_sizes, eps), (conv_p, x, kernel, stats)


def _idle_conv_gradient_bwd(kernel_sizes, eps, residuals, cotangent):
    conv_p, x, kernel, stats = residuals

    def option_derivatives():
        eye = jnp.eye(len(kernel_sizes), dtype=kernel.dtype)
        at_zero = _normalise(jnp.zeros_like(cotangent), stats, eps)
        return jnp.stack([
            jnp.sum(cotangent * (_normalise(layers.conv(
                x, kernel * masks.window_mask(eye[k], kernel_sizes, kernel.shape[0], 2)[..., None, None]),
                stats, eps) - at_zero)) for k in range(len(kernel_sizes))])

    # Only the pass that needs them pays for the per-option convolutions.
    grad_p = jax.lax.cond(jnp.sum(conv_p) > 0, lambda: jnp.zeros_like(conv_p), option_derivatives)
    zeros = jax.tree.map(jnp.zeros_like, (x, kernel, stats))
    return (grad_p,) + zeros


_idle_conv_gradient.defvjp(_idle_conv_gradient_fwd, _idle_conv_gradient_bwd)


class Edge(nnx.Module):
    """The entangled mixed operation of one edge over its options."""

    def __init__(self, channels: int, options, *, rngs: nnx.Rngs):
        self.options = tuple(options)
        self.conv_kernels = tuple(CONV_KERNELS[o] for o in self.options if o in CONV_KERNELS)
        if self.conv_kernels:
            self.conv = layers.Conv(channels, channels, max(self.conv_kernels), 2,
                                    use_bias=False, rngs=rngs)
            self.bn = layers.BatchNorm(channels, affine=False)

    def __call__(self, x, p, train):
        out = jnp.zeros_like(x)
        conv_p = []
        for k, op in enumerate(self.options):
            if op == "skip_connect":
                out = out + p[k] * x
            elif op == "avg_pool_3x3":
                out = out + p[k] * layers.avg_pool_same(x, 3)
            elif op in CONV_KERNELS:
                conv_p.append(p[k])
        if self.conv_kernels:
            conv_p = jnp.stack(conv_p)
            gate = jnp.sum(conv_p)
            share = conv_p / jnp.where(gate > 0, gate, 1.0)
            window = masks.window_mask(share, self.conv_kernels, self.conv.kernel.shape[0], 2)
            h = jax.nn.relu(x)
            y = self.conv(h, window=window)
            # The BN mask is the gate: it scales the output and keeps an unused
            # edge (gate 0) from moving the running statistics.
            out = out + self.bn(y, jnp.full((x.shape[-1],), gate), train)
            stats = None if train else (self.bn.mean[...], self.bn.var[...])
            # Only conv_p may carry a gradient in: a step that differentiates the
            # weights alone (sampled training) then never runs the per-option convs.
            out = out + _idle_conv_gradient(conv_p, jax.lax.stop_gradient(h),
                                            jax.lax.stop_gradient(self.conv.kernel[...]), stats,
                                            self.conv_kernels, self.bn.eps)
        return out


class Cell(nnx.Module):
    def __init__(self, channels: int, choices, *, rngs: nnx.Rngs):
        self.edges = nnx.Dict({name: Edge(channels, choices[name], rngs=rngs) for name in EDGES})

    def __call__(self, x, probs, train):
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"edge_{j}_{i}"](nodes[i], probs[f"edge_{j}_{i}"], train)
                             for i in range(j)))
        return nodes[3]


class ReLUConvBN(nnx.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, rngs: nnx.Rngs):
        self.conv = layers.Conv(cin, cout, kernel, 2, stride=stride, use_bias=False, rngs=rngs)
        self.bn = layers.BatchNorm(cout)

    def __call__(self, x, train):
        return self.bn(self.conv(jax.nn.relu(x)), None, train)


class Reduction(nnx.Module):
    """NAS-Bench-201's ResNet basic block with stride 2 and a pooled 1×1 shortcut."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, rngs=rngs)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, rngs=rngs)
        self.shortcut = layers.Conv(cin, cout, 1, 2, use_bias=False, rngs=rngs)

    def __call__(self, x, train):
        return self.shortcut(layers.avg_pool(x, 2)) + self.conv_b(self.conv_a(x, train), train)


class NB201Supernet(nas.Supernet):
    def __init__(self, space: "NB201Space", *, rngs: nnx.Rngs):
        self.space = space
        c, n = space.config["channels"], space.config["cells_per_stage"]
        choices = space.choices
        self.stem = layers.Conv(space.input_shape[-1], c, 3, 2, use_bias=False, rngs=rngs)
        self.stem_bn = layers.BatchNorm(c)
        body = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage:
                body.append(Reduction(width // 2, width, rngs=rngs))
            body.extend(Cell(width, choices, rngs=rngs) for _ in range(n))
        self.body = nnx.List(body)
        self.last_bn = layers.BatchNorm(4 * c)
        self.classifier = layers.Dense(4 * c, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        """x: [batch, height, width, channels] → logits [batch, num_classes]."""
        h = self.stem_bn(self.stem(x), None, train)
        for module in self.body:
            h = module(h, probs, train) if isinstance(module, Cell) else module(h, train)
        h = jax.nn.relu(self.last_bn(h, None, train))
        return self.classifier(jnp.mean(h, axis=(1, 2)))


class NB201Space(Space):
    name = "nb201"
    supernet_class = NB201Supernet
    default_input_shape = (32, 32, 3)
    default_num_classes = 10

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, ops=OPS, **kw):
        check_sizes("nb201", {"channels": channels, "cells_per_stage": cells_per_stage})
        unknown = [o for o in ops if o not in OPS]
        if unknown:
            raise ValueError(f"nb201: unknown op {unknown[0]!r}; ops are {list(OPS)}")
        super().__init__({e: tuple(ops) for e in EDGES}, channels=channels,
                         cells_per_stage=cells_per_stage, ops=tuple(ops), **kw)

    def _canonical(self, arch):
        """`none` on every edge that provably cannot change the cell's output (where `none`
        is one of its options): a skip or pool edge out of a node that receives nothing
        (every edge into it is `none`, so it is exactly zero), and every edge into a node
        with no path of non-`none` edges to the cell output. A conv edge out of a zero
        node stays: inference-mode BatchNorm makes it (0 − mean)/√(var + ε), not zero."""
        arch = dict(arch)

        def cut(edge):
            if "none" in self._choices[edge]:
                arch[edge] = "none"

        zero = [False]                                   # node 0 is the cell input
        for j in range(1, 4):
            for i in range(j):
                if zero[i] and arch[f"edge_{j}_{i}"] in _ZERO_ON_ZERO:
                    cut(f"edge_{j}_{i}")
            zero.append(all(arch[f"edge_{j}_{i}"] == "none" for i in range(j)))
        reaches = {3: True}
        for i in (2, 1):
            reaches[i] = any(arch[f"edge_{j}_{i}"] != "none" and reaches[j] for j in range(i + 1, 4))
            if not reaches[i]:
                for h in range(i):
                    cut(f"edge_{i}_{h}")
        return arch

    def _check_shape(self):
        h = self.input_shape
        if len(h) != 3 or h[0] % 4 or h[1] % 4:
            raise ValueError(f"nb201 takes images [height, width, channels] with height and width "
                             f"divisible by 4, got {self.input_shape}")

    def _costs(self, arch):
        height, width, channels = self.input_shape
        c, n = self.config["channels"], self.config["cells_per_stage"]
        params = 9 * channels * c + 2 * c
        macs = height * width * 9 * channels * c
        for stage, cw in enumerate((c, 2 * c, 4 * c)):
            if stage:
                height, width = height // 2, width // 2
                cin = cw // 2
                params += 9 * cin * cw + 2 * cw + 9 * cw * cw + 2 * cw + cin * cw
                macs += height * width * (9 * cin * cw + 9 * cw * cw + cin * cw)
            for op in arch.values():
                if op in CONV_KERNELS:
                    k = CONV_KERNELS[op]
                    params += n * k * k * cw * cw
                    macs += n * height * width * k * k * cw * cw
        params += 2 * 4 * c + 4 * c * self.num_classes + self.num_classes
        macs += 4 * c * self.num_classes
        return params, macs


    def to_nb201_string(self, arch) -> str:
        """NAS-Bench-201's arch string, e.g. `|nor_conv_3x3~0|+|none~0|skip_connect~1|+|…|`."""
        arch = self.validate(arch)
        nodes = ["|" + "|".join(f"{arch[f'edge_{j}_{i}']}~{i}" for i in range(j)) + "|"
                 for j in range(1, 4)]
        return "+".join(nodes)


register("nb201", NB201Space)
