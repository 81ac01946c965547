"""`nm`: N:M structured sparsity (2:4 by default, what sparse tensor cores run).

At the fraction `at` of training every group of M consecutive weights along each
kernel's inputs (`sparse.masks.kernel_axes`) keeps its N largest magnitudes; the pattern is then fixed.
The sparsity is 1 − N/M whatever `sparsity` says.
"""
import dataclasses

from sparse import criteria
from sparse import masks as masklib
from sparse.updater import Updater, register


@register
@dataclasses.dataclass(frozen=True)
class NM(Updater):
    n: int = 2
    m: int = 4
    at: float = 0.0

    name = "nm"

    def __post_init__(self):
        object.__setattr__(self, "sparsity", 1.0 - self.n / self.m if 0 < self.n <= self.m else 0.0)
        super().__post_init__()
        if not 0 < self.n <= self.m:
            raise ValueError(f"nm: needs 0 < n ≤ m, got n={self.n}, m={self.m}")

    def initial_masks(self, key, weights):
        for n, w in weights.items():
            fan_in = masklib.matrix_sizes(n, w.shape)[0]
            if fan_in % self.m:
                raise ValueError(f"nm: kernel {n!r} of shape {tuple(w.shape)} has {fan_in} inputs, "
                                 f"not a multiple of m={self.m}; leave it dense (e.g. first_layer: false)")
        return masklib.ones({n: w.shape for n, w in weights.items()})

    def is_event(self, step):
        return step == self.steps(self.at)

    def new_masks(self, masks, weights, grads, step, key):
        return {n: criteria.n_of_m(w, self.n, self.m, name=n) & masks[n] for n, w in weights.items()}
