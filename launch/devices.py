"""Processes and devices: join a multi-process run, then split work over every device.

    devices.initialize(args.coordinator, args.num_processes, args.process_id)  # before any JAX use
    parallel = devices.data_parallel()      # every device of every process (search/parallel.py)
    chunk = devices.population_chunk(cfg.search.generation)

`initialize` starts `jax.distributed` when this process is one of several: given
the three flags (`--coordinator host:port --num-processes N --process-id i`),
or with none on a TPU pod slice or under SLURM with more than one task, where
JAX finds the coordinator itself. Otherwise a run is one process and nothing
happens. See docs/scale.md.
"""
from __future__ import annotations

import glob
import importlib.util
import os
from typing import Mapping

import jax

from search.parallel import DataParallel, data_parallel, population_chunk

__all__ = ["DataParallel", "data_parallel", "detected_cluster", "initialize", "population_chunk"]

# What JAX's own SLURM detection reads (jax._src.clusters.slurm_cluster): srun sets them all.
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                   "SLURM_LOCALID")


def detected_cluster(environ: Mapping[str, str] = os.environ) -> str | None:
    """"slurm" or "tpu" when this process is one of several that `jax.distributed.initialize()`
    finds without arguments; None for a lone process. Reads environment variables and, for
    Cloud TPU VMs (whose worker list is in the metadata server, not the environment),
    checks for libtpu and a TPU device file: no network, no backend start."""
    if all(name in environ for name in SLURM_VARIABLES) and int(environ["SLURM_NTASKS"]) > 1:
        return "slurm"
    hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
    if len(hosts.split(",")) > 1 or "MEGASCALE_COORDINATOR_ADDRESS" in environ:
        return "tpu"
    tpu_files = glob.glob("/dev/accel[0-9]*") + glob.glob("/dev/vfio/[0-9]*")
    if tpu_files and importlib.util.find_spec("libtpu"):
        return "tpu"
    return None


def _check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """True when the three flags are given (and valid), False when none is."""
    flags = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    missing = [flag for flag, value in flags.items() if value is None]
    if len(missing) == len(flags):
        return False
    if missing:
        raise ValueError(f"{missing[0]} is missing: --coordinator, --num-processes and --process-id "
                         f"go together (the same coordinator and count on every process, its own "
                         f"--process-id on each)")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator must be host:port (process 0's address), got {coordinator!r}")
    if num_processes < 1:
        raise ValueError(f"--num-processes must be ≥ 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0..{num_processes - 1} (--num-processes "
                         f"{num_processes}), got {process_id}")
    return True


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join the run's processes (`jax.distributed`) if there are several; call before
    anything else uses JAX. A second call does nothing."""
    flagged = _check_flags(coordinator, num_processes, process_id)
    if jax.distributed.is_initialized() or not (flagged or detected_cluster()):
        return
    # Cross-process collectives between CPU devices need gloo; the setting touches only
    # the CPU backend, so it is harmless where the devices are GPUs or TPUs.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if flagged:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    else:
        jax.distributed.initialize()
