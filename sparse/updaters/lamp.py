"""`lamp`: one-shot global pruning by LAMP scores (Lee et al. 2021), then fixed."""
import dataclasses

from sparse import criteria
from sparse.updater import register
from sparse.updaters.magnitude import Magnitude


@register
@dataclasses.dataclass(frozen=True)
class LAMP(Magnitude):
    scope: str = "global"

    name = "lamp"

    def score(self, weight):
        return criteria.lamp(weight)
