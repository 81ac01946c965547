"""Evaluate a whole population of architectures with inherited supernet weights in
one `vmap`ped call.

Archs travel as option-index vectors `int32[P, num_choices]` (one-hot encoded
inside the trace), so every population of the same size runs through one
compilation; populations are padded to a fixed `chunk` to keep it that way.
The evaluation examples are split over the devices (`search.parallel`), the
weights replicated; padding rows are labelled -1, which no argmax matches.
For supernets with BatchNorm, each arch first gets its own statistics from a
calibration batch (`engine.recalibrate`), inside the same vmapped call; that
batch must come from the training split, never the evaluation set, so it is
always passed explicitly.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from search import engine
from search.parallel import DataParallel, data_parallel, pad_rows, population_chunk, round_up
from spaces.core import Arch


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _population_correct(graphdef, space, recalibrate, levels, params, rest, index_vectors, calib_x, x, y):
    ranks = levels.ranks(params) if levels is not None else None

    def one(index_vector):
        probs = space.probs_from_index_vector(index_vector)
        params_at = params if levels is None else levels.apply(params, probs, ranks)
        stats = engine.recalibrate(graphdef, params_at, rest, calib_x, probs) if recalibrate else rest
        logits, _ = engine.apply(graphdef, params_at, stats, x, probs, train=False)
        return engine.accuracy_count(logits, y)
    return jax.vmap(one)(index_vectors)


class PopulationEvaluator:
    """Accuracy of many archs on a fixed evaluation set, `chunk` archs per call.

    `evaluate(archs)` returns one accuracy per arch with the supernet weights
    given here (`params`, `rest` from `engine.split`; a sparse supernet's
    weights already masked). With `levels` (`sparse.levels`) each arch runs at
    its own sparsity choice. With BatchNorm (`recalibrate`, detected by default)
    `calib_x` is required: a training-split batch that sets each arch's statistics.
    `chunk` defaults to `population_chunk()` (this backend's best); `parallel` (default:
    every device) splits the evaluation examples, and the calibration batch when it
    divides evenly, over the devices.
    """

    def __init__(self, graphdef, params, rest, space, x: np.ndarray, y: np.ndarray,
                 calib_x: np.ndarray | None = None, recalibrate: bool | None = None,
                 chunk: int | None = None, levels=None, parallel: DataParallel | None = None):
        if len(x) == 0:
            raise ValueError("population evaluation needs a non-empty evaluation set "
                             "(is the validation split empty? set data.val_fraction > 0)")
        parallel = parallel or data_parallel()
        self.graphdef, self.space, self.parallel = graphdef, space, parallel
        self.params, self.rest = parallel.replicate(params), parallel.replicate(rest)
        rows = round_up(len(x), parallel.num_devices)
        self.x = parallel.shard(pad_rows(np.asarray(x, np.float32), rows))
        self.y = parallel.shard(pad_rows(np.asarray(y, np.int32), rows, fill=-1))
        self.examples = len(x)
        if recalibrate is None:
            recalibrate = engine.has_batch_norm(nnx.merge(graphdef, params, rest))
        self.recalibrate = bool(recalibrate)
        if self.recalibrate and (calib_x is None or len(calib_x) == 0):
            got = "none" if calib_x is None else "an empty one"
            raise ValueError("population evaluation of a supernet with BatchNorm needs calib_x, a "
                             "non-empty training-split batch (search.calibration examples) to "
                             f"recalibrate each arch; got {got}")
        self.calib_x = None if calib_x is None else _calibration(np.asarray(calib_x, np.float32),
                                                                 parallel)
        chunk = population_chunk() if chunk is None else chunk
        if chunk < 1:
            raise ValueError(f"population chunk must be ≥ 1, got {chunk}")
        self.chunk = chunk
        self.levels = levels

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        """One accuracy per arch; each network is scored once (encodings of one network,
        `Space.canonical`, share its score)."""
        networks: dict[tuple, int] = {}
        slots = [networks.setdefault(tuple(self.space.canonical(a).items()), len(networks))
                 for a in archs]
        accuracies = self._accuracies([dict(network) for network in networks])
        return [accuracies[i] for i in slots]

    def _accuracies(self, archs: Sequence[Arch]) -> list[float]:
        if not archs:
            return []
        vectors = np.stack([self.space.index_vector(a) for a in archs])
        correct = []
        for start in range(0, len(vectors), self.chunk):
            block = vectors[start:start + self.chunk]
            pad = self.chunk - len(block)
            if pad:
                block = np.concatenate([block, np.repeat(block[:1], pad, 0)])
            counts = _population_correct(self.graphdef, self.space, self.recalibrate, self.levels,
                                         self.params, self.rest, self.parallel.replicate(block),
                                         self.calib_x, self.x, self.y)
            correct.extend(np.asarray(counts)[:len(block) - pad].tolist())
        return [c / self.examples for c in correct]


def _calibration(calib_x: np.ndarray, parallel: DataParallel) -> jax.Array:
    """The calibration batch split over the devices when it divides evenly; otherwise a
    copy on each (padding it would change the BatchNorm statistics it sets)."""
    if len(calib_x) % parallel.num_devices:
        return parallel.replicate(calib_x)
    return parallel.shard(calib_x)
