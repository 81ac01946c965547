"""`convnet`: a MobileNetV3 / OFA-like image space (inputs NHWC).

Stem Conv3×3 → BN → ReLU; stages of inverted residual blocks (1×1 expand →
BN → act → depthwise k×k → BN → act → 1×1 project → BN, residual when shape
allows); head Conv1×1 → BN → act → global average pool → Dense. Choices:
per block `kernel_s_b` {3,5,7} and `expand_s_b` {3,4,6}, per stage `depth_s`
{2,3,4}. Stage widths and strides are fixed. BatchNorm statistics are those
of the active channels only.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

import nas
from nas import layers, masks
from spaces import register
from spaces.core import Space, check_sizes

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)


def _act(stage: int):
    return layers.ACTIVATIONS["relu" if stage == 0 else "hswish"]


class InvertedResidual(nnx.Module):
    def __init__(self, cin: int, cout: int, hidden: int, kernel: int, stride: int, *,
                 rngs: nnx.Rngs):
        self.expand = layers.Conv(cin, hidden, 1, 2, use_bias=False, rngs=rngs)
        self.expand_bn = layers.BatchNorm(hidden)
        self.depthwise = layers.Conv(hidden, hidden, kernel, 2, stride=stride, groups=hidden,
                                     use_bias=False, rngs=rngs)
        self.depthwise_bn = layers.BatchNorm(hidden)
        self.project = layers.Conv(hidden, cout, 1, 2, use_bias=False, rngs=rngs)
        self.project_bn = layers.BatchNorm(cout)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x, hidden_mask, window, act, train):
        h = act(self.expand_bn(self.expand(x, hidden_mask), hidden_mask, train))
        h = act(self.depthwise_bn(self.depthwise(h, hidden_mask, window), hidden_mask, train))
        h = self.project_bn(self.project(h), None, train)
        return x + h if self.residual else h


class ConvNetSupernet(nas.Supernet):
    def __init__(self, space: "ConvNetSpace", *, rngs: nnx.Rngs):
        self.space = space
        cfg, c = space.config, space.choices
        self.stem = layers.Conv(space.input_shape[-1], cfg["stem_channels"], 3, 2,
                                stride=cfg["stem_stride"], use_bias=False, rngs=rngs)
        self.stem_bn = layers.BatchNorm(cfg["stem_channels"])
        cin, stages = cfg["stem_channels"], []
        for s, (cout, stride) in enumerate(zip(cfg["widths"], cfg["strides"])):
            blocks = []
            for b in range(max(c[f"depth_{s}"])):
                hidden = cin * max(c[f"expand_{s}_{b}"])
                blocks.append(InvertedResidual(cin, cout, hidden, max(c[f"kernel_{s}_{b}"]),
                                               stride if b == 0 else 1, rngs=rngs))
                cin = cout
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.head_conv = layers.Conv(cin, cfg["head_channels"], 1, 2, use_bias=False, rngs=rngs)
        self.head_bn = layers.BatchNorm(cfg["head_channels"])
        self.classifier = layers.Dense(cfg["head_channels"], space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        """x: [batch, height, width, channels] → logits [batch, num_classes]."""
        c = self.space.choices
        h = jnp.maximum(self.stem_bn(self.stem(x), None, train), 0.0)
        for s, blocks in enumerate(self.stages):
            outputs = []
            for b, block in enumerate(blocks):
                cin = block.expand.kernel.shape[-2]
                hidden, kmax = block.depthwise.kernel.shape[-1], block.depthwise.kernel.shape[0]
                hidden_mask = masks.prefix_mask(probs[f"expand_{s}_{b}"],
                                                [cin * e for e in c[f"expand_{s}_{b}"]], hidden)
                window = masks.window_mask(probs[f"kernel_{s}_{b}"], c[f"kernel_{s}_{b}"], kmax, 2)
                h = block(h, hidden_mask, window, _act(s), train)
                outputs.append(h)
            depth = masks.depth_weights(probs[f"depth_{s}"], c[f"depth_{s}"], len(blocks))
            h = masks.mixture(depth, outputs)
        h = layers.ACTIVATIONS["hswish"](self.head_bn(self.head_conv(h), None, train))
        return self.classifier(jnp.mean(h, axis=(1, 2)))


class ConvNetSpace(Space):
    name = "convnet"
    supernet_class = ConvNetSupernet
    default_input_shape = (32, 32, 3)
    default_num_classes = 10

    def __init__(self, widths=(16, 24, 32), strides=(1, 2, 2), stem_channels: int = 16,
                 stem_stride: int = 1, head_channels: int = 64, kernels=KERNELS,
                 expands=EXPANDS, depths=DEPTHS, **kw):
        check_sizes("convnet", {"widths": tuple(widths), "strides": tuple(strides),
                                "stem_channels": stem_channels, "stem_stride": stem_stride,
                                "head_channels": head_channels, "kernels": tuple(kernels),
                                "depths": tuple(depths)}, {"expands": tuple(expands)})
        if len(widths) != len(strides):
            raise ValueError(f"widths {widths} and strides {strides} must have one entry per stage")
        choices = {}
        for s in range(len(widths)):
            choices[f"depth_{s}"] = tuple(depths)
            for b in range(max(depths)):
                choices[f"kernel_{s}_{b}"] = tuple(kernels)
                choices[f"expand_{s}_{b}"] = tuple(expands)
        super().__init__(choices, widths=tuple(widths), strides=tuple(strides),
                         stem_channels=stem_channels, stem_stride=stem_stride,
                         head_channels=head_channels, kernels=tuple(kernels),
                         expands=tuple(expands), depths=tuple(depths), **kw)

    def _canonical(self, arch):
        """Kernel and expansion of blocks beyond their stage's depth set to their first option."""
        unused = [f"{kind}_{s}_{b}" for s in range(len(self.config["widths"]))
                  for b in range(arch[f"depth_{s}"], max(self.config["depths"]))
                  for kind in ("kernel", "expand")]
        return self._first_options(arch, unused)

    def _distinct_structures(self, limit):
        c = self.choices
        return math.prod(
            sum(math.prod(len(c[f"kernel_{s}_{b}"]) * len(c[f"expand_{s}_{b}"]) for b in range(d))
                for d in c[f"depth_{s}"])
            for s in range(len(self.config["widths"])))

    def _check_shape(self):
        if len(self.input_shape) != 3:
            raise ValueError(f"convnet takes images [height, width, channels], got {self.input_shape}")

    def _costs(self, arch):
        """(params, MACs) of the compact model, layer by layer."""
        cfg = self.config
        height, width, channels = self.input_shape
        params, macs = 0, 0

        def conv(cin, cout, k, stride, groups=1):
            nonlocal height, width, params, macs
            height, width = math.ceil(height / stride), math.ceil(width / stride)
            params += k * k * (cin // groups) * cout + 2 * cout  # kernel + BatchNorm
            macs += height * width * k * k * (cin // groups) * cout

        conv(channels, cfg["stem_channels"], 3, cfg["stem_stride"])
        cin = cfg["stem_channels"]
        for s, (cout, stride) in enumerate(zip(cfg["widths"], cfg["strides"])):
            for b in range(arch[f"depth_{s}"]):
                hidden = cin * arch[f"expand_{s}_{b}"]
                conv(cin, hidden, 1, 1)
                conv(hidden, hidden, arch[f"kernel_{s}_{b}"], stride if b == 0 else 1, hidden)
                conv(hidden, cout, 1, 1)
                cin = cout
        conv(cin, cfg["head_channels"], 1, 1)
        params += cfg["head_channels"] * self.num_classes + self.num_classes
        macs += cfg["head_channels"] * self.num_classes
        return params, macs


register("convnet", ConvNetSpace)
