"""Zero-cost proxies, one file each, registered by name (see `search.proxies.core`).

    from search import proxies
    proxies.names()                      # ['flops', 'grad_norm', 'gradsign', ...]
    proxies.score("gradsign", space, arch, x, y)
    proxies.score_population("gradsign", space, archs, x, y)   # one compilation
"""
from search.proxies import flops, grad_norm, gradsign, jacob_cov, naswot, params, snip, synflow  # noqa: F401  (each registers itself)
from search.proxies.core import Network, Proxy, get, init_factors, names, register, score, score_population

__all__ = ["Network", "Proxy", "get", "init_factors", "names", "register", "score", "score_population"]
