"""Data: sources (in memory, ArrayRecord, image folders, Hugging Face tables) split three
ways, and batches streamed from them.

    data = load("mnist1d", seed=0, val_fraction=0.1)
    batches = Batches(data.train, batch_size=128, seed=0, scaling=data.scaling)
    x, y = next(batches)

The test split never depends on `seed`; the train/validation split does,
deterministically. A new source is one module that calls `register` (ours, or a
user's named in the config's `plugins`).
"""
from launch.data import array_record, builtin, hf, image_folder  # noqa: F401 — they register
from launch.data.core import (
    ArraySource,
    Dataset,
    Scaling,
    Sources,
    Split,
    check_arrays,
    load,
    loader,
    names,
    read,
    register,
    statistics,
)
from launch.data.stream import Augment, Batches, in_order, record_keys

__all__ = ["ArraySource", "Augment", "Batches", "Dataset", "Scaling", "Sources", "Split", "check_arrays",
           "in_order", "load", "loader", "names", "read", "record_keys", "register", "statistics"]
