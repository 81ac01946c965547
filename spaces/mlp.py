"""`mlp`: a multilayer perceptron over flattened inputs.

Choices: `depth` {1,2,3,4}, `width_i` {16,32,64,128,256} for hidden layer i,
`activation` {relu, gelu, tanh, silu}. Layer i is Dense(width_i) → activation;
the classifier reads the output after the chosen depth (depth mixing).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

import nas
from nas import layers, masks
from spaces import register
from spaces.core import Space, check_sizes

WIDTHS = (16, 32, 64, 128, 256)
ACTIVATIONS = ("relu", "gelu", "tanh", "silu")


class MLPSupernet(nas.Supernet):
    def __init__(self, space: "MLPSpace", *, rngs: nnx.Rngs):
        self.space = space
        c = space.choices
        self.max_depth = max(c["depth"])
        widths = [max(c[f"width_{i}"]) for i in range(self.max_depth)]
        fan_in = [math.prod(space.input_shape)] + widths[:-1]
        self.hidden = nnx.List([layers.Dense(i, o, rngs=rngs) for i, o in zip(fan_in, widths)])
        # The classifier reads the last layer of any candidate depth: its widest one.
        head_in = max(widths[d - 1] for d in c["depth"])
        self.head = layers.Dense(head_in, space.num_classes, rngs=rngs)

    def forward(self, x, probs, train: bool = False):
        """x: [batch, *input_shape] → logits [batch, num_classes]."""
        c = self.space.choices
        h = x.reshape(x.shape[0], -1)
        head_in = self.head.kernel.shape[0]
        candidates = []
        for i, layer in enumerate(self.hidden):
            name = f"width_{i}"
            mask = masks.prefix_mask(probs[name], c[name], layer.kernel.shape[1])
            h = layers.activation_mixture(probs["activation"], c["activation"], layer(h, mask))
            if i + 1 in c["depth"]:
                candidates.append(jnp.pad(h, ((0, 0), (0, head_in - h.shape[-1]))))
        depth = masks.depth_weights(probs["depth"], c["depth"], self.max_depth)
        weights = [depth[d - 1] for d in sorted(c["depth"])]
        return self.head(masks.mixture(jnp.stack(weights), candidates))


class MLPSpace(Space):
    name = "mlp"
    supernet_class = MLPSupernet
    default_input_shape = (64,)
    default_num_classes = 10

    def __init__(self, max_depth: int = 4, widths=WIDTHS, activations=ACTIVATIONS, **kw):
        check_sizes("mlp", {"max_depth": max_depth, "widths": tuple(widths)})
        unknown = [a for a in activations if a not in layers.ACTIVATIONS]
        if unknown:
            raise ValueError(f"mlp: unknown activation {unknown[0]!r}; activations are "
                             f"{sorted(layers.ACTIVATIONS)}")
        choices = {"depth": tuple(range(1, max_depth + 1))}
        choices.update({f"width_{i}": tuple(widths) for i in range(max_depth)})
        choices["activation"] = tuple(activations)
        super().__init__(choices, max_depth=max_depth, widths=tuple(widths),
                         activations=tuple(activations), **kw)

    def _canonical(self, arch):
        """Widths of layers beyond the depth set to their first option (the activation is
        used by every depth ≥ 1)."""
        return self._first_options(arch, [f"width_{i}" for i in range(arch["depth"],
                                                                    self.config["max_depth"])])

    def _distinct_structures(self, limit):
        c = self.choices
        return len(c["activation"]) * sum(math.prod(len(c[f"width_{i}"]) for i in range(d))
                                          for d in c["depth"])

    def _layer_sizes(self, arch):
        return [math.prod(self.input_shape)] + [arch[f"width_{i}"] for i in range(arch["depth"])]

    def _param_shapes(self, items):
        sizes = self._layer_sizes(dict(items))
        shapes = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes += [(f"hidden.{i}.bias", (b,)), (f"hidden.{i}.kernel", (a, b))]
        head = [("head.bias", (self.num_classes,)), ("head.kernel", (sizes[-1], self.num_classes))]
        return tuple(shapes + head)

    def unit_chain(self, arch):
        """The hidden layers then the head (see `nas.surgery`)."""
        chain = [{"kernel": f"hidden.{i}.kernel", "bias": f"hidden.{i}.bias", "unit_vars": [],
                  "width": f"width_{i}", "zero_preserving": True} for i in range(arch["depth"])]
        return chain + [{"kernel": "head.kernel", "bias": "head.bias", "unit_vars": [], "width": None,
                         "zero_preserving": False}]

    def with_widths(self, arch, widths):
        """(space, arch) with the hidden widths set to `widths` (any positive ints)."""
        new_arch = {**arch, **widths}
        options = tuple(sorted({new_arch[f"width_{i}"] for i in range(self.config["max_depth"])}))
        space = MLPSpace(max_depth=self.config["max_depth"], widths=options,
                         activations=self.config["activations"]).bind(self.input_shape, self.num_classes)
        return space, new_arch

    def _costs(self, arch):
        sizes = self._layer_sizes(arch) + [self.num_classes]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        return sum(a * b + b for a, b in pairs), sum(a * b for a, b in pairs)


register("mlp", MLPSpace)
