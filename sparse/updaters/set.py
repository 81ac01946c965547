"""`set`: Sparse Evolutionary Training (Mocanu et al. 2018).

Start from a random mask (`distribution`); every ΔT steps until `end`, drop the
fraction f(t) = (α/2)(1 + cos(π t / T_end)) of each layer's active weights with
the smallest magnitude and regrow as many at random inactive positions. Grown
weights start at zero with zero moments. The optimizer steps as usual on update
steps (the mask changes after the step, as in the reference).
"""
import dataclasses

import jax
import jax.numpy as jnp

from sparse import criteria, schedules
from sparse.updater import Updater, register


@register
@dataclasses.dataclass(frozen=True)
class SET(Updater):
    drop_fraction: float = 0.3   # α
    end: float = 0.75            # fraction of training after which masks freeze

    name = "set"

    def is_event(self, step):
        return (step > 0) & (step % self.update_every == 0) & (step <= self.steps(self.end))

    def fraction(self, step):
        return schedules.cosine(step, self.steps(self.end), self.drop_fraction, 0.0)

    def grow_score(self, key, weight, grad):
        return jax.random.uniform(key, weight.shape)

    def new_masks(self, masks, weights, grads, step, key):
        out = {}
        for k, (n, mask) in zip(jax.random.split(key, len(masks)), masks.items()):
            score_key, swap_key = jax.random.split(k)
            count = jnp.floor(self.fraction(step) * jnp.sum(mask)).astype(jnp.int32)
            grow = self.grow_score(score_key, weights[n], grads[n])
            out[n] = criteria.drop_and_grow(mask, weights[n], grow, count, swap_key)
        return out
