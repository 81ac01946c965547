"""`rigl`: Rigging the Lottery (Evci et al. 2020).

As SET, but regrow the inactive positions with the largest magnitude of the
dense gradient (the gradient with respect to the masked weights on the current
batch). Defaults are the paper's: α = 0.3 cosine-decayed, ΔT = 100, masks
frozen after 75 % of training, ERK densities; unlike SET and GraNet, no
optimizer step on mask-update steps (google-research/rigl).
"""
import dataclasses

import jax.numpy as jnp

from sparse.updater import register
from sparse.updaters.set import SET


@register
@dataclasses.dataclass(frozen=True)
class RigL(SET):
    name = "rigl"
    skip_step = True

    def grow_score(self, key, weight, grad):
        return jnp.abs(grad)
