"""Supernet machinery: entangled layers, arch → masks, extraction, cost counting."""
from nas import layers, masks
from nas.supernet import Supernet, count_macs, count_params, extract, supernet

__all__ = ["Supernet", "count_macs", "count_params", "extract", "layers", "masks", "supernet"]
