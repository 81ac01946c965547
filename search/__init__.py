"""Controllers: gradient (DARTS/DrNAS/GDAS), sampled one-shot training, evolution, proxies."""
