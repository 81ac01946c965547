"""Choices declared inside a supernet's own code: write the model, get its space.

    class Tiny(nas.Supernet):
        def __init__(self, space, *, rngs):
            self.space = space
            self.width = space.choice("width", [16, 32, 64])          # a Choice
            self.fc = layers.Dense(8, self.width.max, rngs=rngs)        # built at the largest
            self.head = layers.Dense(self.width.max, space.num_classes, rngs=rngs)

        def forward(self, x, probs, train=False):
            return self.head(jax.nn.relu(self.fc(x, self.width.mask(probs))))

    spaces.register_model("tiny", Tiny, input_shape=(8,), num_classes=3)

The constructor runs once, abstractly, to record the choices (`spaces.module`):
the space is derived from the module, never written twice. In a supernet each
`Choice` holds every option; in the compact model of an arch (`nas.extract`)
the same constructor sees one option per choice, so every layer is built at the
arch's own size. `forward(x, probs)` turns each choice's probability vector
into masks (`Choice.mask`, `Choice.window`), mixtures (`Choice.mix`), the
output after the chosen depth (`Choice.stack`), or one of several submodules
(`Branches`): one-hot probs give exactly the compact model's outputs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from flax import nnx

from nas import masks


@dataclasses.dataclass(frozen=True)
class Choice:
    """One decision of a space as a supernet's code uses it: its name and the options
    this (super- or compact) network has."""
    name: str
    options: tuple

    @property
    def max(self):
        """The largest option: the size a layer is built at."""
        return max(self.options)

    def map(self, size: Callable) -> "Choice":
        """The same decision with sizes `size(option)` (a hidden width of 2 × embed)."""
        return Choice(self.name, tuple(size(o) for o in self.options))

    def probs(self, probs: Mapping):
        """This choice's probability vector `[len(options)]` out of forward's `probs`."""
        return probs[self.name]

    def mask(self, probs: Mapping, size: int | None = None):
        """Prefix mask `[size]` (default: the largest option) of a width choice."""
        return masks.prefix_mask(probs[self.name], self.options, size or self.max)

    def window(self, probs: Mapping, size: int | None = None, ndim: int = 1):
        """Centred window mask `[size]*ndim` of a kernel-size choice."""
        return masks.window_mask(probs[self.name], self.options, size or self.max, ndim)

    def mix(self, probs: Mapping, values: Sequence):
        """Σ_k p_k · values_k, one value per option (activations, branches)."""
        if len(values) != len(self.options):
            raise ValueError(f"choice {self.name!r}: {len(values)} values for {len(self.options)} options")
        return masks.mixture(probs[self.name], values)

    def stack(self, probs: Mapping, outputs: Sequence):
        """The output after the chosen depth of a depth choice: `outputs[d - 1]` is the
        output after block d of `len(outputs)` blocks (one pass, a mixture over depths)."""
        weights = masks.depth_weights(probs[self.name], self.options, len(outputs))
        chosen = sorted(self.options)
        return masks.mixture([weights[d - 1] for d in chosen], [outputs[d - 1] for d in chosen])


class Branches(nnx.Module):
    """A module choice: one submodule per option (all of them same in, same out),
    `branches(probs, *args)` = Σ_k p_k · branch_k(*args); a compact model holds only
    its arch's branch. `factories`: option → a function building that branch."""

    def __init__(self, choice: Choice, factories: Mapping[str, Callable[[], nnx.Module]]):
        unknown = [o for o in choice.options if o not in factories]
        if unknown:
            raise ValueError(f"choice {choice.name!r}: no branch for option {unknown[0]!r} "
                             f"(branches: {sorted(map(str, factories))})")
        if len({str(o) for o in choice.options}) != len(choice.options):
            raise ValueError(f"choice {choice.name!r}: options {list(choice.options)} must differ as "
                             "text (they name the branches)")
        self.choice = choice
        self.branches = nnx.Dict({str(o): factories[o]() for o in choice.options})

    def __call__(self, probs: Mapping, *args, **kwargs):
        return self.choice.mix(probs, [self.branches[str(o)](*args, **kwargs) for o in self.choice.options])
