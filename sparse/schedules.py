"""When and how much: the step schedules of the sparse updaters (traceable in `step`)."""
from __future__ import annotations

import jax.numpy as jnp


def cosine(step, total, start: float, end: float):
    """start → end along half a cosine over `total` steps, then constant at end."""
    progress = jnp.clip(step / jnp.maximum(total, 1), 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def cubic(step, begin, end, initial: float, final: float):
    """Gradual magnitude pruning (Zhu & Gupta 2017): s = s_f + (s_i − s_f)(1 − p)³
    with p the progress from `begin` to `end`."""
    progress = jnp.clip((step - begin) / jnp.maximum(end - begin, 1), 0.0, 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def every(step, interval: int, begin, end):
    """True at begin, begin + interval, … up to end, and at end itself."""
    inside = (step >= begin) & (step <= end)
    return inside & (((step - begin) % interval == 0) | (step == end))
