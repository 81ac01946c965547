"""TangleNAS' toy "conv macro" supernet written with `nas.layers` and `nas.masks`, for the
speed benchmarks (`mask_tax`, `peer`).

Input `[batch, 32, 32, 3]`. Four 7×7 "same" convolutions, conv i with `channels_i`
output channels (CHANNELS[i]) and a centred `kernel_i` ∈ {3, 5, 7} window, each
followed by ReLU, a 2×2 max-pool after convs 1 and 2; then a fixed 7×7 convolution to
256 channels with padding 2 (8×8 → 6×6, no ReLU) and fully connected layers
9216 → 256 → 128 → 64 → classes with ReLU between them: 7.7 M weights. TangleNAS'
dropout is left out here and in the PyTorch peer (`benchmarks.peer`) alike.
"""
from __future__ import annotations

import jax
from flax import nnx

import nas
from nas import layers, masks
from spaces.core import Space

CHANNELS = ((8, 16, 32), (16, 32, 64), (32, 64, 128), (64, 128, 256))
KERNELS = (3, 5, 7)
LAST_CONV = (256, 7, 2)  # channels, kernel, padding
HIDDEN = (256, 128, 64)
POOL_AFTER = (1, 2)


class ConvMacroSupernet(nas.Supernet):
    def __init__(self, space: "ConvMacroSpace", *, rngs: nnx.Rngs):
        self.space = space
        c = space.choices
        height, width, cin = space.input_shape
        convs = []
        for i in range(len(CHANNELS)):
            cout = max(c[f"channels_{i}"])
            convs.append(layers.Conv(cin, cout, max(c[f"kernel_{i}"]), 2, rngs=rngs))
            cin = cout
        self.convs = nnx.List(convs)
        channels, kernel, padding = LAST_CONV
        self.last_conv = layers.Conv(cin, channels, kernel, 2, padding=padding, rngs=rngs)
        shrink = 2 ** len(POOL_AFTER)
        side = (height // shrink + 2 * padding - kernel + 1, width // shrink + 2 * padding - kernel + 1)
        widths = (side[0] * side[1] * channels,) + HIDDEN + (space.num_classes,)
        self.fcs = nnx.List([layers.Dense(a, b, rngs=rngs) for a, b in zip(widths, widths[1:])])

    def forward(self, x, probs, train: bool = False):
        """x: [batch, 32, 32, 3] → logits [batch, num_classes]."""
        c = self.space.choices
        h = x
        for i, conv in enumerate(self.convs):
            mask = masks.prefix_mask(probs[f"channels_{i}"], c[f"channels_{i}"], conv.kernel.shape[-1])
            window = masks.window_mask(probs[f"kernel_{i}"], c[f"kernel_{i}"], conv.kernel.shape[0], 2)
            h = jax.nn.relu(conv(h, mask, window))
            if i in POOL_AFTER:
                h = layers.max_pool(h, 2, 2)
        h = self.last_conv(h).reshape(x.shape[0], -1)
        for fc in self.fcs[:-1]:
            h = jax.nn.relu(fc(h))
        return self.fcs[-1](h)


class ConvMacroSpace(Space):
    name = "conv_macro"
    supernet_class = ConvMacroSupernet
    default_input_shape = (32, 32, 3)
    default_num_classes = 10

    def __init__(self, **kw):
        choices = {}
        for i, widths in enumerate(CHANNELS):
            choices[f"channels_{i}"] = widths
            choices[f"kernel_{i}"] = KERNELS
        super().__init__(choices, **kw)

    def _check_shape(self):
        if self.input_shape != (32, 32, 3):
            raise ValueError(f"conv_macro takes [32, 32, 3] images, got {self.input_shape}")


def largest(space: Space) -> dict:
    """Every choice at its last (here: largest) option."""
    return {k: v[-1] for k, v in space.choices.items()}
