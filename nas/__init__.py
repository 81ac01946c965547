"""Supernet machinery: entangled layers, arch → masks, extraction, cost counting.
Importing it sets jaxnas' XLA defaults (`nas.xla_defaults`) before JAX starts its backend."""
from nas import layers, masks, precision, xla_defaults
from nas.choices import Branches, Choice
from nas.supernet import Supernet, count_macs, count_params, extract, supernet

__all__ = ["Branches", "Choice", "Supernet", "count_macs", "count_params", "extract", "layers", "masks",
           "precision", "supernet", "xla_defaults"]
