"""The Ray Tune driver of `nas tune`: `python -m launch.tune DIR [--resume] [--address ADDR]`.

It runs the experiment recorded in DIR/experiment.json (`launch.tune.check` wrote it after
validating the config) as Ray Tune trials, one `nas search` run each
(`launch.tune.trial`), prints Ray's progress table while they run, and then writes
DIR/results.csv, DIR/results.png and DIR/best/ (`launch.tune.results`). This process
never imports JAX: the trials import it in their Ray workers.

    DIR/experiment.json     what runs: the search config, overrides, the tune section
    DIR/trial_<id>/         Ray's trial directory: params.json, result.json, checkpoint_*/,
                            and run/, the trial's run dir
    DIR/tuner.pkl, DIR/experiment_state-*.json   Ray's experiment state (what --resume reads)

Ray starts locally (dashboard off, one CPU per core, trial output kept in each run's
output.log rather than printed) unless `--address` names a running cluster. With
`--resume` Ray restores the experiment (`Tuner.restore`): finished trials stay finished,
unfinished and errored ones continue from their latest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from launch.tune import results, trial
from launch.tune.spec import EXPERIMENT

# ASHA stops any trial reaching max_t reports; a search ends by itself, so no trial
# should ever reach it (rungs beyond a trial's length are simply never reached).
UNBOUNDED = 10**6


def trial_dirname(trial_) -> str:
    """DIR/trial_<id>: short, stable names (Ray's default packs every drawn value in)."""
    return f"trial_{trial_.trial_id}"


def _scheduler(tuned: dict):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    if tuned["scheduler"] == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="progress", max_t=UNBOUNDED, grace_period=tuned["grace_period"],
                         reduction_factor=tuned["reduction_factor"])


def _param_space(tuned: dict) -> dict:
    from ray import tune
    build = {"choice": tune.choice, "grid": tune.grid_search, "uniform": lambda a: tune.uniform(*a),
             "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a)}
    return {path: build[kind](args) for path, body in tuned["param_space"].items()
            for kind, args in body.items()}


def _trainable(experiment: dict):
    from ray import tune
    names = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU"}
    bundle = {names[k]: v for k, v in experiment["tune"]["resources"].items() if v}
    return tune.with_resources(tune.with_parameters(trial.run_trial, experiment=experiment),
                               tune.PlacementGroupFactory([bundle]))


def _reporter(tuned: dict):
    from ray import tune
    metric = tuned["metric"]
    return tune.CLIReporter(parameter_columns=list(tuned["param_space"]),
                            metric_columns={"progress": "progress", "phase": "phase", metric: metric},
                            max_report_frequency=30)


def run(directory: Path, resume: bool = False, address: str | None = None) -> int:
    directory = Path(directory).absolute()
    experiment = json.loads((directory / EXPERIMENT).read_text())
    experiment.update(directory=str(directory), cwd=os.getcwd())  # where the trials write and read
    tuned = experiment["tune"]
    # The classic reporter prints the table of trials with our columns.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray saves the experiment state (what --resume restores) at most every 10 s by default:
    # a driver killed in between would run trials again that had already finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    import ray
    from ray import tune

    started = time.perf_counter()
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    startup = time.perf_counter() - started
    print(f"ray: {'joined ' + address if address else 'started locally'} in {startup:.1f} s; "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} "
          f"GPUs, {ray.cluster_resources().get('TPU', 0):g} TPU chips", flush=True)
    try:
        trainable = _trainable(experiment)
        if resume:
            tuner = tune.Tuner.restore(str(directory), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable, param_space=_param_space(tuned),
                tune_config=tune.TuneConfig(
                    metric=tuned["metric"], mode="max", scheduler=_scheduler(tuned),
                    num_samples=tuned["num_samples"], max_concurrent_trials=tuned["max_concurrent"],
                    trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    name=directory.name, storage_path=str(directory.parent),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    progress_reporter=_reporter(tuned), verbose=1))
        grid = tuner.fit()
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    table = results.rows(grid, list(tuned["param_space"]), tuned["metric"])
    results.write_csv(directory / "results.csv", table)
    results.plot(directory / "results.png", table, tuned["metric"], next(iter(tuned["param_space"]), None))
    top = results.best(table, tuned["metric"])
    if top is not None:
        results.copy_best(directory, top)
    print(results.summary(table, tuned["metric"]))
    print(f"wrote {directory / 'results.csv'}, results.png" + (", best/" if top else "")
          + f" in {seconds:.0f} s (ray start-up {startup:.1f} s)")
    for row in table:
        if row["status"] == results.ERROR:
            print(f"  {row['trial']} failed: {row['error']}")
    if top is None:
        print("nas tune: no trial finished; see the errors above and each trial's run/output.log",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.tune",
                                     description="Run the experiment `nas tune` recorded in DIR.")
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--address")
    args = parser.parse_args(argv)
    return run(args.directory, args.resume, args.address)
