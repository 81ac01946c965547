"""FLOPs (the cost baseline of Abdelfattah et al., "Zero-Cost Proxies for Lightweight
NAS", ICLR 2021): the multiply–accumulates of one forward pass of one example through
the arch's extracted model, `space.flops(arch)` (the space's closed form).
"""
from __future__ import annotations

from search.proxies.core import register


@register("flops", traced=False)
def flops(space, arch) -> int:
    """Multiply–accumulates of one example's forward pass (higher is better)."""
    return space.flops(arch)
