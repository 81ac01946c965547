"""One Ray Tune trial: a whole `nas search` run in the trial's own directory.

    DIR/trial_<id>/run/        the run dir (config.yaml, checkpoints/, metrics.jsonl, best/, …)
    DIR/trial_<id>/run/output.log   what the run prints

The run saves a checkpoint after each supernet epoch and each search generation
(`Context.on_save`); each is reported with `tune.report` and that Orbax step as the
Ray checkpoint, with the run's own step counter `progress` (supernet epochs plus search
generations so far: what ASHA's rungs count). The metric is `accuracy`:

    supernet epoch      the supernet's validation accuracy at its largest in-budget arch
    search generation   the best validation accuracy the search has found (inherited weights)
    the end             the retrained pick's validation accuracy (best/arch.json)

and `objective` = accuracy − size_weight × log10(size of that arch), size being its
parameters (its nonzero parameters in sparse searches). A restored trial
(`tune.get_checkpoint()`: after ASHA or a crash, or `nas tune --resume`) puts the Orbax
step back into its run dir unless the run dir already holds it, and the run resumes
exactly from its newest step. Only this function's body imports JAX: it runs in a
Ray worker, never in the driver.

With `split.as_trials` an experiment runs in two stages (`launch.tune.driver`). A
*trunk* trial trains the supernet up to and through its last split and ends there
(`SplitDone`; its last report says which Orbax step holds the split tree and how many
sub-supernets it has). A *sub-supernet* trial (its config is `{LEAF: {...}}`) starts
from a copy of that step in its own run dir and runs the rest of the search with
`split.only` set to its sub-supernet: it trains and searches that one alone, on the
batches and keys it gets in the full run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from ray import tune

from launch.tune import spec as specs

CHECKPOINT_INFO = "tune.json"   # in a Ray checkpoint: the Orbax step it holds and the progress then
REPORTED = ("supernet", "search")  # the phases whose rows are reported (one report each)
TRUNK, SUB_SUPERNETS = "trunk", "sub_supernets"  # split.as_trials: the stages, DIR/<stage>/trial_<id>
LEAF = "sub_supernet"  # a sub-supernet trial's config key: {index, trunk (run dir), step, values}


class SplitDone(Exception):
    """A trunk trial's run reached its last split (and saved it as Orbax step `step`)."""

    def __init__(self, step: int, sub_supernets: int):
        super().__init__(f"split into {sub_supernets} sub-supernets at step {step}")
        self.step, self.sub_supernets = step, sub_supernets


def run_trial(config: dict, experiment: dict) -> None:
    """Ray Tune's function trainable: `config` holds this trial's drawn values by path (or,
    for a sub-supernet trial, `{LEAF: {index, trunk, step, values}}`)."""
    from launch import config as configs
    from launch import xla_cache
    from launch.files import write_text_atomic
    from launch.metrics import read_rows
    from launch.run import run_search

    # The trial directory Ray names for this trial (`driver.trial_dirname`) in DIR (or its stage
    # folder), which every node of a cluster must mount; Ray's own working directory is a
    # temporary one.
    xla_cache.enable()  # shared by the trials of a machine (a joined node: its own default)
    run_dir = Path(experiment["trials"]) / f"trial_{tune.get_context().get_trial_id()}" / "run"
    if Path(experiment["cwd"]).is_dir():  # relative paths (data.path) as in the `nas tune` shell
        os.chdir(experiment["cwd"])
    leaf = config.get(LEAF)
    values = leaf["values"] if leaf else config
    overrides = [*experiment["overrides"], *(specs.assignment(path, value) for path, value in values.items())]
    if leaf:  # a plain split.only run from here on
        overrides += [specs.assignment("split.only", leaf["index"]), "split.as_trials=false"]
    resumed_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resumed_from = unpack(Path(directory), run_dir)
    elif leaf:
        resumed_from = unpack(Path(leaf["trunk"]), run_dir, leaf["step"], leaf["progress"])
    cfg = configs.from_dict(experiment["search"], overrides)
    trunk = experiment.get("stage") == TRUNK
    reporter = Reporter(experiment["tune"]["size_weight"], resumed_from, stop_at_split=trunk,
                        extra={LEAF: leaf["index"]} if leaf else {})
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists():  # a run dir before its first file of the trial's own
        write_text_atomic(run_dir / "config.yaml", configs.dump(cfg))
    with (run_dir / "output.log").open("a") as log:
        def echo(text: str) -> None:
            log.write(text + "\n")
            log.flush()
        try:
            summary = run_search(cfg, run_dir, progress=False, echo=echo, on_save=reporter.saved)
        except SplitDone as done:
            echo(f"trunk trial: {done}; each sub-supernet goes on as a trial of its own")
            tune.report({**reporter.last, "phase": "split", "trunk_step": done.step,
                         "sub_supernets": done.sub_supernets})
            return
    if summary is None:
        raise RuntimeError(f"the search in {run_dir} was stopped before its end")
    if trunk:
        raise RuntimeError(f"the run in {run_dir} ended without reaching its last split")
    info = json.loads((run_dir / "best" / "arch.json").read_text())
    metrics = info["metrics"]
    size = info.get("nonzero_params", info["params"])
    logged = read_rows(run_dir / "metrics.jsonl")
    progress = sum(row["phase"] in REPORTED for row in logged) + 1
    tune.report({**reporter.metrics("done", progress, metrics["val_accuracy"], size),
                 "params": info["params"], "nonzero_params": size,
                 "test_accuracy": metrics["test_accuracy"]})


class Reporter:
    """`on_save` of a trial's run: reports each new supernet or search row with its step.
    `progress` is always the run's own count of those rows: a run that resumes from a step
    newer than the Ray checkpoint (its run dir kept it) reports on from its own count."""

    def __init__(self, size_weight: float, reported: int, stop_at_split: bool = False,
                 extra: dict | None = None):
        self.size_weight = size_weight
        self.reported = reported   # the progress reported so far (that of the restored checkpoint)
        self.resumed_from = reported
        self.stop_at_split = stop_at_split  # a trunk trial: raise SplitDone at the last split
        self.extra = extra or {}   # what every report also carries (a sub-supernet's index)
        self.last = {}             # the latest report

    def metrics(self, phase: str, progress: int, accuracy: float, size: int) -> dict:
        objective = accuracy - self.size_weight * math.log10(max(size, 1))
        self.last = {"progress": progress, "phase": phase, "accuracy": float(accuracy), "size": int(size),
                     "objective": float(objective), "resumed_from": self.resumed_from, **self.extra}
        return self.last

    def saved(self, ctx, state, step: int) -> None:
        self._report(ctx, state, step)
        if self.stop_at_split:
            from launch.phases import supernet
            meta = state.meta[supernet.NAME]
            if meta.get("rounds", 0) == len(ctx.cfg.split.epochs):
                ctx.checkpoints.wait()
                if not self.last:  # a trunk that split before its first report: ASHA needs a metric
                    self._report(ctx, state, step, force=True)
                raise SplitDone(step, len(meta["tree"]["leaves"]))

    def _report(self, ctx, state, step: int, force: bool = False) -> None:
        rows = [r for r in ctx.log.records[:state.meta["log_rows"]] if r["phase"] in REPORTED]
        if len(rows) <= self.reported and not force:
            return
        latest = rows[-1]
        accuracy, arch = _latest_accuracy(ctx, state, latest)
        size = ctx.sparse.nonzero(ctx.space, arch) if ctx.sparse is not None else ctx.space.params(arch)
        ctx.checkpoints.wait()  # the step committed, its files recorded
        staging = ctx.run_dir / ".tune_checkpoint"
        pack(ctx.run_dir, step, len(rows), staging)
        self.reported = len(rows)
        tune.report(self.metrics(latest["phase"], len(rows), accuracy, size),
                    checkpoint=tune.Checkpoint.from_directory(str(staging)))
        shutil.rmtree(staging, ignore_errors=True)


def _latest_accuracy(ctx, state, row: dict) -> tuple[float, dict]:
    """(accuracy, the arch it belongs to) of a reported row: in the supernet phase the best
    of the trained sub-supernets' largest in-budget archs."""
    from launch.phases import search, supernet
    largest = ctx.space.validate(state.meta[supernet.NAME]["extremes"][0])
    if row["phase"] != search.NAME:
        scored = [(float(search.make_evaluator(ctx, state, sub).evaluate([arch])[0]), arch)
                  for sub in supernet.trained(ctx, state) for arch in [supernet.extremes(ctx, state, sub)[0]]]
        return max(scored, key=lambda pair: pair[0])
    # The search's best so far: its scored archs once it has finished, else its controller's
    # history; a search that keeps neither where this looks gives the largest arch's size.
    meta = state.meta.get(search.NAME, {})
    history = (meta.get("controller") or {}).get("history", [])
    scored = meta.get("evaluated") or [(a, r[0]) for a, r in history]
    best = max(scored, key=lambda pair: pair[1])[0] if scored else largest
    return float(row["best_accuracy"]), ctx.space.validate(best)


def pack(run_dir: Path, step: int, progress: int, staging: Path) -> None:
    """Ray checkpoint of a run at Orbax `step`: the step's directory (hard links), the metrics
    rows and config it belongs with, and what it holds (CHECKPOINT_INFO)."""
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_dir / "checkpoints" / str(step), staging / "checkpoints" / str(step),
                    copy_function=_link)
    for name in ("metrics.jsonl", "config.yaml"):
        shutil.copy2(run_dir / name, staging / name)
    (staging / CHECKPOINT_INFO).write_text(json.dumps({"step": step, "progress": progress}))


def _link(source, destination) -> None:
    # Ray copies the checkpoint into the trial's storage: links spare a second copy here.
    try:
        Path(destination).hardlink_to(source)
    except OSError:
        shutil.copy2(source, destination)


def unpack(checkpoint: Path, run_dir: Path, step: int | None = None, progress: int | None = None) -> int:
    """Put a Ray checkpoint's Orbax step into `run_dir` (the metrics rows and config too, where
    the run dir lacks them) and return the progress it was reported at. A run dir already
    holding the step (the same machine, or shared storage) keeps its own newer steps: the
    run resumes from its newest one, which ends where the trial would have ended anyway.
    With `step` and `progress`, `checkpoint` is a trunk trial's run dir instead: a
    sub-supernet trial starts from its split (its own config, which sets `split.only`,
    is written by the run)."""
    if step is None:
        info = json.loads((checkpoint / CHECKPOINT_INFO).read_text())
        step, progress, names = info["step"], info["progress"], ("metrics.jsonl", "config.yaml")
    else:
        names = ("metrics.jsonl",)
        steps = run_dir / "checkpoints"
        if steps.is_dir() and any(p.name.isdigit() for p in steps.iterdir()):
            return progress  # started from the trunk before: it resumes from its own steps
    step_dir = run_dir / "checkpoints" / str(step)
    if not step_dir.exists():
        partial = step_dir.with_name(f".{step_dir.name}.restoring")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(checkpoint / "checkpoints" / str(step), partial)
        partial.rename(step_dir)
    for name in names:
        if _lines(run_dir / name) < _lines(checkpoint / name):
            shutil.copy2(checkpoint / name, run_dir / name)
    return progress


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else -1
