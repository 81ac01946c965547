"""`gmp`: gradual magnitude pruning (Zhu & Gupta 2017).

Every ΔT steps from `begin` to `end` (fractions of training) prune the smallest
magnitudes so that the sparsity follows s = s_f + (s_i − s_f)(1 − p)³; masks
only shrink. `scope="global"` uses one threshold across layers.
"""
import dataclasses

from sparse import schedules
from sparse.updater import register
from sparse.updaters.magnitude import Magnitude


@register
@dataclasses.dataclass(frozen=True)
class GMP(Magnitude):
    begin: float = 0.0
    end: float = 0.5
    initial_sparsity: float = 0.0
    scope: str = "global"

    name = "gmp"

    def target(self, step):
        return schedules.cubic(step, self.steps(self.begin), self.steps(self.end),
                               self.initial_sparsity, self.sparsity)

    def is_event(self, step):
        return schedules.every(step, self.update_every, self.steps(self.begin), self.steps(self.end))

    def new_masks(self, masks, weights, grads, step, key):
        return self.prune(masks, weights, self.target(step))
