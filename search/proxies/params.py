"""Parameter count (the baseline every zero-cost proxy paper compares against, e.g.
Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021): the trainable
parameters of the arch's extracted model, `space.params(arch)` (the space's closed form).
"""
from __future__ import annotations

from search.proxies.core import register


@register("params", traced=False)
def params(space, arch) -> int:
    """Trainable parameters of the arch's compact model (higher is better)."""
    return space.params(arch)
