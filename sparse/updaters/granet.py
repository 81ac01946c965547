"""`granet`: gradual pruning with zero-cost neuroregeneration (Liu et al. 2021).

Pruning follows the GMP cubic schedule from `initial_sparsity` to `sparsity`
between `begin` and `end` with one global magnitude threshold. Right after each
pruning event, and every ΔT after the pruning window until the last step, each
layer drops ⌈r·nnz⌉ of its smallest active weights and regrows as many inactive
positions with the largest gradient magnitude (zero weight, zero moments), with
r cosine-annealed from `regrow_start` to `regrow_end` over the whole run. The
optimizer steps on every step, mask updates included (as the reference does).
`initial_sparsity = 0` is dense-to-sparse; > 0 starts from a random mask of
that sparsity (`distribution`, ERK by default): sparse-to-sparse.
"""
import dataclasses

import jax
import jax.numpy as jnp

from sparse import criteria, schedules
from sparse.updater import register
from sparse.updaters.gmp import GMP


@register
@dataclasses.dataclass(frozen=True)
class GraNet(GMP):
    regrow_start: float = 0.5
    regrow_end: float = 0.005

    name = "granet"

    def initial_masks(self, key, weights):
        if self.initial_sparsity == 0.0:
            return super().initial_masks(key, weights)
        return self.sparse_start(key, weights, self.initial_sparsity)

    def is_event(self, step):
        pruning = super().is_event(step)
        regrowing = (step > self.steps(self.end)) & (step % self.update_every == 0)
        return pruning | regrowing

    def new_masks(self, masks, weights, grads, step, key):
        in_window = schedules.every(step, self.update_every, self.steps(self.begin), self.steps(self.end))
        pruned = self.prune(masks, weights, self.target(step))
        masks = {n: jnp.where(in_window, pruned[n], masks[n]) for n in masks}
        ratio = schedules.cosine(step, self.total_steps, self.regrow_start, self.regrow_end)
        out = {}
        for k, (n, mask) in zip(jax.random.split(key, len(masks)), masks.items()):
            count = jnp.ceil(ratio * jnp.sum(mask)).astype(jnp.int32)
            out[n] = criteria.drop_and_grow(mask, weights[n], jnp.abs(grads[n]), count, k)
        return out
