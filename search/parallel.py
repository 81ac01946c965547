"""Data parallelism over every device: batch rows split, weights replicated.

    parallel = data_parallel()                       # every device of every process
    parallel.check_batch("supernet.batch_size", 128)
    params, rest, opt_state = parallel.replicate((params, rest, opt_state))
    params, rest, opt_state, loss = step(params, rest, opt_state, *map(parallel.shard, next(batches)))

Steps stay global-view programs: a jitted step sees the whole batch and the
whole model, and XLA (GSPMD) splits the work by the shardings its inputs carry
— rows over the mesh axis `"data"`, weights on every device — adding the
all-reduces of gradients and BatchNorm statistics itself. So one step compiles
once and computes the same numbers on 1 device or 64 (up to the order of
floating-point sums), BatchNorm included (its statistics are over the global
batch).

Several processes (after `launch.devices.initialize`): every process draws the
same global batch (same seed), keeps its own contiguous rows and builds the
global array from them; weights are identical everywhere by construction.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"
# Archs per vmapped population call. CPU: 1, since a vmapped population measured 0.4× the
# speed of one call per arch (vmapped masked convolutions become batch-grouped convolutions,
# which XLA:CPU runs slowly). GPU/TPU: one small sub-network on a validation split cannot fill
# the device, so archs are batched; 64 is the cap the search phase has always used (not
# re-measured here), and activations grow with chunk × examples.
CPU_POPULATION_CHUNK = 1
ACCELERATOR_POPULATION_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A one-axis mesh over the devices, and where batches and weights live on it."""
    mesh: Mesh
    batch: NamedSharding        # rows split over the devices, in device order
    replicated: NamedSharding   # a full copy on every device

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def num_processes(self) -> int:
        return jax.process_count()

    @property
    def is_writer(self) -> bool:
        """Only process 0 writes logs, plots and exports."""
        return self.process_index == 0

    def check_batch(self, field: str, size: int) -> None:
        """Raise if a batch of `size` rows (config field `field`) cannot split evenly."""
        if size % self.num_devices:
            raise ValueError(f"{field} = {size} does not divide over {self.num_devices} devices; "
                             f"use a multiple of {self.num_devices}")

    def replicate(self, tree):
        """`tree` with every array copied to every device (the same in every process)."""
        if self.num_processes == 1:
            return jax.device_put(tree, self.replicated)
        return jax.tree.map(self._replicate_across_processes, tree)

    def _replicate_across_processes(self, leaf) -> jax.Array:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, self.replicated)  # already global: a reshard on its mesh
        # device_put of a host value would first all-gather it to check every process holds
        # the same (a collective per leaf, and NaN ≠ NaN fails the check); it does, by
        # construction, so each process places its own copy.
        return jax.make_array_from_process_local_data(self.replicated, np.asarray(leaf))

    def shard(self, global_batch: np.ndarray) -> jax.Array | np.ndarray:
        """The global array of `global_batch` (`[rows, ...]`, the same in every process),
        rows split over the devices: this process supplies its contiguous slice."""
        if self.num_devices == 1:
            # jit's own transfer of a host array is ~100 µs cheaper per array than any
            # explicit placement, and there is nothing to split.
            return global_batch
        rows = len(global_batch)
        self.check_batch("batch rows", rows)
        own = rows // self.num_processes
        local = global_batch[self.process_index * own:(self.process_index + 1) * own]
        return jax.make_array_from_process_local_data(self.batch, local, global_batch.shape)

    def shard_rows(self, local_rows: np.ndarray) -> jax.Array | np.ndarray:
        """The global array whose rows are every process's `local_rows` in process order (a
        stream's batch: each process reads only its own rows), split over the devices."""
        if self.num_processes == 1:
            return self.shard(local_rows)
        shape = (len(local_rows) * self.num_processes, *local_rows.shape[1:])
        self.check_batch("batch rows", shape[0])
        return jax.make_array_from_process_local_data(self.batch, local_rows, shape)


def data_parallel(num_devices: int | None = None) -> DataParallel:
    """Data parallelism over `num_devices` devices (default: all of them, every process's).

    With several processes each contributes the same number of its own devices, and the
    mesh orders devices by process, so process p's rows are the p-th contiguous block.
    """
    processes = jax.process_count()
    by_process = [sorted(jax.local_devices(process_index=p), key=lambda d: d.id)
                  for p in range(processes)]
    available = sum(len(devices) for devices in by_process)
    num_devices = available if num_devices is None else num_devices
    per_process = num_devices // processes
    if not 1 <= num_devices <= available or per_process * processes != num_devices:
        raise ValueError(f"num_devices must be a multiple of the {processes} process(es) between "
                         f"1 and the {available} devices available, got {num_devices}")
    devices = [d for local in by_process for d in local[:per_process]]
    mesh = Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))
    return DataParallel(mesh, NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P()))


def population_chunk(generation: int | None = None) -> int:
    """Archs per vmapped population call on this backend: 1 on CPU; on GPU/TPU 64, or
    the generation size if smaller (a bigger chunk would only evaluate padding)."""
    if jax.default_backend() == "cpu":
        return CPU_POPULATION_CHUNK
    return min(generation or ACCELERATOR_POPULATION_CHUNK, ACCELERATOR_POPULATION_CHUNK)


def local_copy(tree):
    """`tree` with every array that spans several processes replaced by this process's
    copy (a replicated array's shard on the first local device); other leaves as they are.
    What a single process reads or writes of a multi-process run's replicated state."""
    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x
    return jax.tree.map(local, tree)


def pad_rows(array: np.ndarray, rows: int, fill=0) -> np.ndarray:
    """`array` (`[n ≤ rows, ...]`) with rows of `fill` appended up to `rows`."""
    missing = rows - len(array)
    if missing == 0:
        return array
    return np.concatenate([array, np.full((missing,) + array.shape[1:], fill, array.dtype)])


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
