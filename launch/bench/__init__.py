"""`nas bench`: offline yardsticks. A table of architectures trained from scratch with
one fixed recipe (`build`), and what it judges: zero-cost proxies (`proxies`), search
controllers (`controllers`) and a trained supernet's ranking (`supernet`)."""
from launch.bench.table import Table, load

__all__ = ["Table", "load"]
