"""Sparse masks and training: distributions, DST updaters, layer-adaptive allocation (pure mask math)."""
