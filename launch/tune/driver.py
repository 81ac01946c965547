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

With `split.as_trials` the experiment has two stages, each a Ray experiment of its own:

    DIR/trunk/trial_<id>/          one per drawn config: the supernet up to its last split
    DIR/sub_supernets/trial_<id>/  one per sub-supernet of each trunk that split: the rest
                                   of that sub-supernet's training, its search, retraining
    DIR/sub_supernets_<n>/         after --resume, the sub-supernets of trunks that split
                                   only then (trunks that had failed)

results.csv then has a row per sub-supernet trial (with its `sub_supernet` index and its
`trunk`) and one per trunk trial that failed or was stopped before splitting.
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


def _trainable(experiment: dict, trials: Path, stage: str | None):
    """The trial function with this stage's experiment record (where its trials write)."""
    from ray import tune
    names = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU"}
    bundle = {names[k]: v for k, v in experiment["tune"]["resources"].items() if v}
    staged = {**experiment, "trials": str(trials), "stage": stage}
    return tune.with_resources(tune.with_parameters(trial.run_trial, experiment=staged),
                               tune.PlacementGroupFactory([bundle]))


def _reporter(tuned: dict, stage: str | None):
    from ray import tune
    metric = tuned["metric"]
    columns = {"progress": "progress", "phase": "phase", metric: metric}
    if stage == trial.SUB_SUPERNETS:
        return tune.CLIReporter(metric_columns={trial.LEAF: trial.LEAF, **columns}, max_report_frequency=30)
    return tune.CLIReporter(parameter_columns=list(tuned["param_space"]), metric_columns=columns,
                            max_report_frequency=30)


def _fit(experiment: dict, directory: Path, stage: str | None, param_space: dict, num_samples: int,
         resume: bool, name: str | None = None):
    """Run (or with `resume` restore, where its state exists) one Ray experiment: the whole
    experiment in DIR, or one stage of a split.as_trials one in DIR/<name> (default: the
    stage's name)."""
    from ray import tune
    tuned = experiment["tune"]
    storage, name = (directory.parent, directory.name) if stage is None else (directory, name or stage)
    trainable = _trainable(experiment, storage / name, stage)
    if resume and tune.Tuner.can_restore(str(storage / name)):
        return tune.Tuner.restore(str(storage / name), trainable=trainable, resume_errored=True).fit()
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=tuned["metric"], mode="max", scheduler=_scheduler(tuned), num_samples=num_samples,
            max_concurrent_trials=tuned["max_concurrent"], trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            progress_reporter=_reporter(tuned, stage), verbose=1))
    return tuner.fit()


def _sub_supernets(trunks) -> list[dict]:
    """A sub-supernet trial's config for each sub-supernet of each trunk trial that split."""
    leaves = []
    for result in trunks:
        reported = result.metrics or {}
        if result.error is not None or reported.get("phase") != "split":
            continue
        for index in range(reported["sub_supernets"]):
            leaves.append({"index": index, "trunk": str(Path(result.path) / "run"),
                           "step": reported["trunk_step"], "progress": reported["progress"],
                           "values": dict(result.config or {})})
    return leaves


def _leaf_key(leaf: dict) -> tuple:
    return leaf["trunk"], leaf["index"]


def _trials(experiment: dict, directory: Path, resume: bool) -> list[dict]:
    """Run the experiment; the rows of results.csv."""
    from ray import tune
    tuned = experiment["tune"]
    params, metric = list(tuned["param_space"]), tuned["metric"]
    if not experiment.get("as_trials"):
        grid = _fit(experiment, directory, None, _param_space(tuned), tuned["num_samples"], resume)
        return results.rows(grid, params, metric)
    trunks = _fit(experiment, directory, trial.TRUNK, _param_space(tuned), tuned["num_samples"], resume)
    leaves = _sub_supernets(trunks)
    table = [row for row in results.rows(trunks, params, metric, staged=True)
             if row["status"] != results.SPLIT]
    # Restored sub-supernet stages finish their own trials; trunks that split only in this
    # run (a failed trunk run again by --resume) get a stage of their own.
    stages = sorted(p.name for p in directory.glob(f"{trial.SUB_SUPERNETS}*")
                    if tune.Tuner.can_restore(str(p))) if resume else []
    known = set()
    for name in stages:
        grid = _fit(experiment, directory, trial.SUB_SUPERNETS, {}, 1, True, name)
        table += results.rows(grid, params, metric, staged=True)
        known |= {_leaf_key(result.config[trial.LEAF]) for result in grid}
    missing = [leaf for leaf in leaves if _leaf_key(leaf) not in known]
    print(f"{len(leaves)} sub-supernet trials from {len(trunks)} trunk trial(s)"
          + (f", {len(missing)} new" if stages else ""), flush=True)
    if missing:
        name = f"{trial.SUB_SUPERNETS}_{len(stages)}" if stages else trial.SUB_SUPERNETS
        grid = _fit(experiment, directory, trial.SUB_SUPERNETS, {trial.LEAF: tune.grid_search(missing)}, 1,
                    False, name)
        table += results.rows(grid, params, metric, staged=True)
    return table


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

    started = time.perf_counter()
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    startup = time.perf_counter() - started
    print(f"ray: {'joined ' + address if address else 'started locally'} in {startup:.1f} s; "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} "
          f"GPUs, {ray.cluster_resources().get('TPU', 0):g} TPU chips", flush=True)
    try:
        table = _trials(experiment, directory, resume)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
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
