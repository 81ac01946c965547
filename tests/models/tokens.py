"""A small sequence data set for tests/models: 8 tokens of 6 features, 3 classes."""
import numpy as np

from launch import data


@data.register("tokens")
def tokens(n: int = 600):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.normal(size=(3, 8, 6))[y] + 0.8 * rng.normal(size=(n, 8, 6))
    return x[:480].astype(np.float32), y[:480], x[480:].astype(np.float32), y[480:]
