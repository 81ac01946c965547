"""`cnn1d`: the MNIST-1D benchmark space.

Input `[batch, 40, 1]`. Three stages s = 0, 1, 2; stage s is `depth_s` ×
[Conv1D(`channels_s`, `kernel_s`, padding SAME) → ReLU]; max-pool (window 2,
stride 2) after stages 0 and 1; head = global average pool → Dense(classes).
Choices `channels_s` {8,16,24,32}, `kernel_s` {3,5,7}, `depth_s` {1,2,3}.

`norm="batch"` puts a parameter-free BatchNorm (statistics of the active
channels, no scale or bias) between each conv and its ReLU, and drops the
convs' biases (BatchNorm subtracts them again: they would get no gradient but
rounding noise, which Adam turns into full steps, so runs on different device
counts drifted apart). Parameters drop by the channels of every conv; FLOPs are
unchanged, and weight sharing becomes trainable: without
normalisation, sub-networks of different depths hand the next stage
activations of very different scales, and sampled training of the supernet
stalls (see `docs/search.md`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import nas
from nas import layers, masks
from spaces import register
from spaces.core import Space, check_sizes

STAGES = 3
CHANNELS = (8, 16, 24, 32)
KERNELS = (3, 5, 7)
DEPTHS = (1, 2, 3)


class CNN1DSupernet(nas.Supernet):
    def __init__(self, space: "CNN1DSpace", *, rngs: nnx.Rngs):
        self.space = space
        c = space.choices
        in_channels = 1  # inputs [length] or [length, 1]: one channel either way
        batch_norm = space.config["norm"] == "batch"
        stages, norm_layers = [], []
        for s in range(STAGES):
            width, kernel = max(c[f"channels_{s}"]), max(c[f"kernel_{s}"])
            stage, norms = [], []
            for _ in range(max(c[f"depth_{s}"])):
                # A bias in front of BatchNorm is subtracted again with the mean: it gets no
                # gradient but rounding noise, which Adam would turn into full-size steps.
                stage.append(layers.Conv(in_channels, width, kernel, 1, use_bias=not batch_norm, rngs=rngs))
                norms.append(layers.BatchNorm(width, affine=False) if batch_norm else None)
                in_channels = width
            stages.append(nnx.List(stage))
            norm_layers.append(nnx.List(norms))
        self.stages = nnx.List(stages)
        self.norms = nnx.List(norm_layers)
        self.head = layers.Dense(in_channels, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        """x: [batch, length, 1] (or [batch, length]) → logits [batch, num_classes]."""
        c = self.space.choices
        h = x.reshape(x.shape[0], self.space.input_shape[0], -1)
        for s, (stage, norms) in enumerate(zip(self.stages, self.norms)):
            kernel = stage[0].kernel
            mask = masks.prefix_mask(probs[f"channels_{s}"], c[f"channels_{s}"], kernel.shape[-1])
            window = masks.window_mask(probs[f"kernel_{s}"], c[f"kernel_{s}"], kernel.shape[0], 1)
            outputs = []
            for conv, norm in zip(stage, norms):
                h = conv(h, mask, window)
                if norm is not None:
                    h = norm(h, mask, train)
                h = jax.nn.relu(h)
                outputs.append(h)
            depth = masks.depth_weights(probs[f"depth_{s}"], c[f"depth_{s}"], len(stage))
            h = masks.mixture(depth, outputs)
            if s < STAGES - 1:
                h = layers.max_pool(h, 2, 2)
        return self.head(jnp.mean(h, axis=1))


class CNN1DSpace(Space):
    name = "cnn1d"
    supernet_class = CNN1DSupernet
    default_input_shape = (40, 1)
    default_num_classes = 10

    def __init__(self, channels=CHANNELS, kernels=KERNELS, depths=DEPTHS, norm: str = "none",
                 **kw):
        if norm not in ("none", "batch"):
            raise ValueError(f"cnn1d: norm must be 'none' or 'batch', got {norm!r}")
        check_sizes("cnn1d", {"channels": tuple(channels), "kernels": tuple(kernels),
                              "depths": tuple(depths)})
        choices = {}
        for s in range(STAGES):
            choices[f"channels_{s}"] = tuple(channels)
            choices[f"kernel_{s}"] = tuple(kernels)
            choices[f"depth_{s}"] = tuple(depths)
        super().__init__(choices, channels=tuple(channels), kernels=tuple(kernels),
                         depths=tuple(depths), norm=norm, **kw)

    def _check_shape(self):
        if len(self.input_shape) > 2 or (len(self.input_shape) == 2 and self.input_shape[1] != 1):
            raise ValueError(f"cnn1d takes inputs [length] or [length, 1], got {self.input_shape}")
        if self.input_shape[0] < 4:
            raise ValueError(f"cnn1d needs length ≥ 4 (two poolings), got {self.input_shape[0]}")

    def _layers(self, arch):
        """(length, kernel, in_channels, out_channels) of every conv of `arch`."""
        length, cin, out = self.input_shape[0], 1, []
        for s in range(STAGES):
            cout, k = arch[f"channels_{s}"], arch[f"kernel_{s}"]
            for _ in range(arch[f"depth_{s}"]):
                out.append((length, k, cin, cout))
                cin = cout
            length //= 2
        return out, cin

    def _param_shapes(self, items):
        arch, shapes = dict(items), []
        convs, last = self._layers(arch)
        names = [(s, j) for s in range(STAGES) for j in range(arch[f"depth_{s}"])]
        biased = self.config["norm"] != "batch"
        for (s, j), (_, k, cin, cout) in zip(names, convs):
            shapes += [(f"stages.{s}.{j}.bias", (cout,))] if biased else []
            shapes += [(f"stages.{s}.{j}.kernel", (k, cin, cout))]
        return tuple(shapes + [("head.bias", (self.num_classes,)), ("head.kernel", (last, self.num_classes))])

    def unit_chain(self, arch):
        """The conv chain then the head (see `nas.surgery`)."""
        chain = []
        for s in range(STAGES):
            for j in range(arch[f"depth_{s}"]):
                chain.append({"kernel": f"stages.{s}.{j}.kernel",
                              "bias": f"stages.{s}.{j}.bias" if self.config["norm"] != "batch" else None,
                              "unit_vars": [f"norms.{s}.{j}.mean", f"norms.{s}.{j}.var"]
                              if self.config["norm"] == "batch" else [],
                              "width": f"channels_{s}", "zero_preserving": self.config["norm"] == "none"})
        return chain + [{"kernel": "head.kernel", "bias": "head.bias", "unit_vars": [], "width": None,
                         "zero_preserving": False}]

    def with_widths(self, arch, widths):
        """(space, arch) with the channel choices set to `widths` (any positive ints)."""
        new_arch = {**arch, **widths}
        channels = tuple(sorted({new_arch[f"channels_{s}"] for s in range(STAGES)}))
        space = CNN1DSpace(channels=channels, kernels=self.config["kernels"], depths=self.config["depths"],
                           norm=self.config["norm"]).bind(self.input_shape, self.num_classes)
        return space, new_arch

    def _costs(self, arch):
        convs, last = self._layers(arch)
        bias = self.config["norm"] != "batch"  # batch: no conv bias (BatchNorm removes it)
        params = sum(k * ci * co + bias * co for _, k, ci, co in convs) + (last + 1) * self.num_classes
        macs = sum(n * k * ci * co for n, k, ci, co in convs) + last * self.num_classes
        return params, macs


register("cnn1d", CNN1DSpace)
