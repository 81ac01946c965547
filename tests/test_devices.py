"""Data parallelism and multi-process runs: 8 fake CPU devices and two `jax.distributed`
processes give what one device gives. Those runs need processes of their own (a process's
device count is fixed when it starts): tests/multidevice.py, run as subprocesses."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh

import nas
import spaces
from launch import data as datasets
from launch import devices
from launch.train import TrainConfig, train
from search.parallel import DataParallel, data_parallel, pad_rows, population_chunk, round_up

WORKER = Path(__file__).with_name("multidevice.py")


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])  # gloo logs its connections on stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_and_eight():
    """The same training and population runs on 1 device and on 8 (one process)."""
    return _result(_spawn("compare"))


def _assert_same_run(got: dict, expected: dict) -> None:
    np.testing.assert_allclose(got["losses"], expected["losses"], rtol=0, atol=1e-5)
    assert got["val_accuracy"] == expected["val_accuracy"]
    assert got["test_accuracy"] == expected["test_accuracy"]
    assert got["checksum"] == pytest.approx(expected["checksum"], rel=1e-6)
    assert got["population"] == expected["population"]


def test_eight_devices_train_and_score_like_one(one_and_eight):
    assert len(one_and_eight["one"]["losses"]) == 6
    _assert_same_run(one_and_eight["all"], one_and_eight["one"])


def test_two_processes_train_and_score_like_one(one_and_eight):
    port = _free_port()
    processes = [_spawn("distributed", str(port), str(i), "2") for i in range(2)]
    results = [_result(p) for p in processes]
    for i, result in enumerate(results):
        assert (result["num_devices"], result["process_index"], result["is_writer"]) == (4, i, i == 0)
        np.testing.assert_array_equal(result["replicated"]["host"], [np.nan, 1.0])  # NaN == NaN here
        assert result["replicated"]["device"] == [1.0, 1.0]
        _assert_same_run(result, one_and_eight["one"])


def _stand_in(num_devices: int) -> DataParallel:
    """A DataParallel whose mesh only has a size: enough for checks made before any
    array is placed."""
    return DataParallel(AbstractMesh((num_devices,), ("data",)), None, None)


def test_check_batch_names_the_field_the_value_and_the_fix():
    _stand_in(8).check_batch("supernet.batch_size", 128)
    with pytest.raises(ValueError, match=r"^supernet.batch_size = 100 does not divide over 8 devices; "
                                         r"use a multiple of 8$"):
        _stand_in(8).check_batch("supernet.batch_size", 100)
    space = spaces.get("mlp", max_depth=1, widths=(16,), activations=("relu",)).bind((8,), 3)
    data = datasets.load("synthetic", input_shape=(8,), num_classes=3, n_train=200, n_test=20)
    with pytest.raises(ValueError, match="train.batch_size = 100 does not divide over 8 devices"):
        train(nas.supernet(space), data, TrainConfig(batch_size=100), progress=False,
              parallel=_stand_in(8))


def test_one_device_layout():
    parallel = data_parallel(1)
    assert (parallel.num_devices, parallel.num_processes, parallel.process_index) == (1, 1, 0)
    assert parallel.is_writer and parallel.mesh.axis_names == ("data",)
    assert data_parallel().num_devices == jax.device_count()
    x = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(parallel.shard(x), x)
    tree = parallel.replicate({"w": x})
    assert tree["w"].sharding == parallel.replicated
    with pytest.raises(ValueError, match="num_devices must be .* between 1 and the"):
        data_parallel(jax.device_count() + 1)


def test_padding_helpers_and_population_chunk():
    assert [round_up(n, 8) for n in (1, 8, 9)] == [8, 8, 16]
    padded = pad_rows(np.array([1, 2, 3]), 5, fill=-1)
    np.testing.assert_array_equal(padded, [1, 2, 3, -1, -1])
    assert population_chunk() == population_chunk(200) == 1  # these tests run on CPU


@pytest.mark.parametrize("flags, message", [
    (("127.0.0.1:1234", 2, None), "--process-id is missing"),
    ((None, 2, 0), "--coordinator is missing"),
    (("127.0.0.1:1234", None, None), "--num-processes is missing"),
    (("127.0.0.1", 2, 0), "--coordinator must be host:port"),
    (("127.0.0.1:port", 2, 0), "--coordinator must be host:port"),
    (("127.0.0.1:1234", 0, 0), "--num-processes must be ≥ 1"),
    (("127.0.0.1:1234", 2, 2), r"--process-id must be in 0..1"),
])
def test_initialize_checks_its_flags(flags, message):
    with pytest.raises(ValueError, match=message):
        devices.initialize(*flags)


def test_initialize_without_flags_or_cluster_is_one_process():
    devices.initialize()
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "4", "SLURM_PROCID": "1",
      "SLURM_LOCALID": "1"}, "slurm"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0",
      "SLURM_LOCALID": "0"}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, None),          # sbatch script, not an srun task
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
    ({"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2:8080"}, "tpu"),
])
def test_detected_cluster_reads_the_environment(environ, expected):
    assert devices.detected_cluster(environ) == expected
