"""Supernet machinery: entangled layers, arch → masks, extraction, cost counting.
Importing it sets jaxnas' XLA defaults (`nas.xla_defaults`) before JAX starts its backend."""
from nas import layers, masks, xla_defaults
from nas.choices import Branches, Choice
from nas.supernet import Supernet, count_macs, count_params, extract, supernet

__all__ = ["Branches", "Choice", "Supernet", "count_macs", "count_params", "extract", "layers", "masks",
           "supernet", "xla_defaults"]
