"""Runs of `train()` and `PopulationEvaluator` for tests/test_devices.py, each of which
needs a process of its own: a process's device count and `jax.distributed` membership are
fixed when it starts.

    python tests/multidevice.py compare                     # 8 fake devices: 1 device vs all 8
    python tests/multidevice.py distributed PORT ID COUNT   # process ID of COUNT, 2 devices each

Prints one JSON line: per run, the loss of every step, val/test accuracy, a checksum of
the trained weights and the population's accuracies. The training set holds one batch, so
each epoch's loss is one step's. Training uses SGD: Adam's normalised steps would turn the
rounding differences of the gradient (the summation order changes with the device
count) into visible ones where a gradient is near zero.
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np

DEVICES = {"compare": 8, "distributed": 2}
BATCH = 64


def run(parallel) -> dict:
    """Train a small BatchNorm CNN and score a population of its supernet on `parallel`."""
    from flax import nnx

    import nas
    import spaces
    from launch import data as datasets
    from launch.train import TrainConfig, train
    from search import engine
    from search.population import PopulationEvaluator

    space = spaces.get("cnn1d", channels=(4, 8), kernels=(3, 5), depths=(1,),
                       norm="batch").bind((40, 1), 10)
    data = datasets.load("synthetic", seed=0, val_fraction=0.8, n_train=400, n_test=100, noise=0.5)
    model = nas.supernet(space.fix(space.sample(0)), seed=0)
    schedule = TrainConfig(epochs=6, batch_size=BATCH, learning_rate=0.2, warmup_epochs=0, optimizer="sgd")
    result = train(model, data, schedule, progress=False, parallel=parallel)
    weights = jax.tree.leaves(nnx.state(result.model, nnx.Param))
    supernet = nas.supernet(space, seed=1)
    graphdef, params, rest = engine.split(supernet)
    evaluator = PopulationEvaluator(graphdef, params, rest, space, *data.val.arrays(),
                                    calib_x=data.train.read(np.arange(BATCH))[0], chunk=3, parallel=parallel)
    return {"losses": [record["loss"] for record in result.history],
            "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
            "checksum": float(sum(np.abs(np.asarray(w, np.float64)).sum() for w in weights)),
            "population": evaluator.evaluate([space.sample(i) for i in range(5)])}


def main(mode: str, *args: str) -> None:
    jax.config.update("jax_num_cpu_devices", DEVICES[mode])
    from search.parallel import data_parallel
    if mode == "compare":
        print(json.dumps({"one": run(data_parallel(1)), "all": run(data_parallel())}))
        return
    from launch import devices
    port, process_id, count = map(int, args)
    devices.initialize(f"127.0.0.1:{port}", count, process_id)
    parallel = data_parallel()
    # Host values (NaN included), one device's arrays and global arrays all replicate.
    local = {"host": np.array([np.nan, 1.0]), "device": jax.device_put(np.ones(2), jax.local_devices()[0])}
    tree = parallel.replicate(parallel.replicate(local))
    print(json.dumps({"num_devices": parallel.num_devices, "process_index": parallel.process_index,
                      "is_writer": parallel.is_writer,
                      "replicated": {k: np.asarray(v).tolist() for k, v in tree.items()},
                      **run(parallel)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
