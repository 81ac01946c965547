"""`magnitude`: one-shot magnitude pruning at a fraction `at` of training, then fixed.

`scope="layer"` prunes every layer to the same sparsity;
`scope="global"` keeps the largest magnitudes with one threshold across layers.
The run is dense until then (prune a trained model, fine-tune the rest).
"""
import dataclasses

import jax.numpy as jnp

from sparse import criteria
from sparse import masks as masklib
from sparse.updater import Updater, register

SCOPES = ("layer", "global")


@register
@dataclasses.dataclass(frozen=True)
class Magnitude(Updater):
    at: float = 0.5          # fraction of training at which to prune
    scope: str = "layer"     # layer | global

    name = "magnitude"

    def __post_init__(self):
        super().__post_init__()
        if self.scope not in SCOPES:
            raise ValueError(f"{self.name}: scope must be one of {list(SCOPES)}, got {self.scope!r}")

    def score(self, weight):
        return criteria.magnitude(weight)

    def initial_masks(self, key, weights):
        return masklib.ones({n: w.shape for n, w in weights.items()})

    def is_event(self, step):
        return step == self.steps(self.at)

    def prune(self, masks, weights, sparsity):
        """Masks at `sparsity` (a shrink of `masks`) by this updater's score and scope."""
        scores = {n: self.score(w) for n, w in weights.items()}
        if self.scope == "global":
            total = sum(w.size for w in weights.values())
            return criteria.keep_global(masks, scores, jnp.round(total * (1.0 - sparsity)).astype(jnp.int32))
        return criteria.keep_per_layer(masks, scores, {
            n: jnp.round(w.size * (1.0 - sparsity)).astype(jnp.int32) for n, w in weights.items()})

    def new_masks(self, masks, weights, grads, step, key):
        return self.prune(masks, weights, self.sparsity)
