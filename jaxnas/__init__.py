"""jaxnas from Python: the calls a notebook needs, in one import.

    import jaxnas as jn

    jn.arrays("mine", x_train, y_train, x_test, y_test)     # your data, held in memory
    result = jn.search({"space": "mlp", "data": "mine", "search": {"max_params": 5000}},
                       "runs/mine")
    result.arch, result.params, result.metrics               # the pick
    result.population, result.front                        # what the search evaluated
    jn.plot_trajectory(result.run_dir)                      # matplotlib Figures
    model = jn.load(result.run_dir)                         # the exported model
    logits = model(x_test)

Nothing here switches matplotlib's backend: figures are plain `Figure`s that a
notebook shows and `fig.savefig` writes. The same runs are `nas search`, `nas
resume`, `nas eval` and `nas export` on the command line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import numpy as np

from launch import config as configs
from launch import data as datasets
from launch import export as exports
from launch import plots, run
from launch.metrics import read_rows

__all__ = ["Result", "arrays", "config", "evaluate", "export", "load", "plot_pareto", "plot_trajectory",
           "resume", "result", "search"]

load = exports.load


def config(source: str | Path | Mapping | configs.Config | None = None, *overrides: str) -> configs.Config:
    """A validated config from a dict (the YAML's structure), a YAML file, or a `Config`,
    plus `section.field=value` overrides (`nas config` lists every field)."""
    if isinstance(source, configs.Config):
        source = source.to_dict()
    if isinstance(source, (str, Path)):
        return configs.load(source, overrides)
    return configs.from_dict(source, overrides)


_ARRAYS: set[str] = set()  # data sets `arrays` registered (a notebook may run its cell again)


def arrays(name: str, x_train, y_train, x_test, y_test) -> str:
    """Register a copy of in-memory arrays as data set `name` (`data: {name: …}` in a
    config) for this process: inputs `[n, …]`, integer labels `[n]`. A run using it resumes
    or evaluates in another process only after the same call there (or from a plugin)."""
    if name in datasets.names() and name not in _ARRAYS:
        raise ValueError(f"data set {name!r} is already registered (data sets: {datasets.names()}); "
                         "choose another name")
    held = []
    for array in (x_train, y_train, x_test, y_test):
        copy = np.array(array, copy=True)
        copy.flags.writeable = False  # later edits of the caller's arrays change nothing
        held.append(copy)
    datasets.register(name)(lambda: tuple(held))
    _ARRAYS.add(name)
    return name


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished search, read from its run dir."""
    run_dir: Path
    arch: dict            # the pick's structural choices
    params: int
    flops: int            # multiply–accumulates per example
    metrics: dict         # val_accuracy, test_accuracy, supernet_val_accuracy
    cost: dict            # seconds and steps of each phase
    population: list      # [(arch, score)]: every arch the search evaluated, in order
    front: list           # `launch.export.FrontMember`s: evaluated archs no other beats on both

    @property
    def info(self) -> dict:
        """best/arch.json as written."""
        return exports.read_info(self.run_dir / "best")


def result(run_dir: str | Path) -> Result:
    """The `Result` of the finished run in `run_dir`."""
    run_dir = Path(run_dir)
    info = exports.read_info(run_dir / "best")
    population = _population(json.loads((run_dir / "search_state.json").read_text()), info)
    space = exports.search_space(run_dir, configs.load(run_dir / "config.yaml"))
    front = exports.pareto_front(population, lambda a: space.params(space.structure(a)))
    return Result(run_dir, info["choices"], info["params"], info["flops"], info["metrics"],
                  info.get("cost", {}), population, front)


def _population(state: dict, info: dict) -> list[tuple[dict, float]]:
    """(arch, score) of every evaluated arch in a search_state.json record: a controller's
    history, an argmax pick (scored in arch.json when it is the run's pick), or those of
    each sub-supernet of a split run."""
    if "sub_supernets" in state:
        return [pair for sub in state["sub_supernets"] for pair in _population(sub, info)]
    if "history" in state:
        return [(arch, scores[0]) for arch, scores in state["history"]]
    picked = state["arch"] == info["choices"]
    return [(state["arch"], info["metrics"].get("supernet_val_accuracy") if picked else float("nan"))]


def search(source, run_dir: str | Path, progress: bool = True, echo=print) -> Result | None:
    """Run (or continue) the search of `source` (see `config`) in `run_dir`; its `Result`,
    or None when a signal stopped it (`resume` continues)."""
    done = run.run_search(config(source), Path(run_dir), progress=progress, echo=echo)
    return None if done is None else result(run_dir)


def resume(run_dir: str | Path, progress: bool = True, echo=print) -> Result | None:
    """Continue the stopped or killed run in `run_dir` exactly; its `Result`."""
    done = run.resume(Path(run_dir), progress=progress, echo=echo)
    return None if done is None else result(run_dir)


def evaluate(path: str | Path, data: str | None = None, data_path: str | None = None) -> dict:
    """Test (and validation) accuracy of an export (or a run dir's best/) on the splits it
    was trained with, or on data set `data`."""
    cfg, _ = exports.data_config(path, data, data_path)
    return exports.evaluate(path, configs.dataset(cfg))


def export(run_dir: str | Path, out: str | Path, pick: str = "best", stablehlo: bool = False) -> Path:
    """`nas export RUN_DIR --out OUT --pick PICK [--format stablehlo]`: a new export dir."""
    from launch import cli
    argv = ["export", str(run_dir), "--out", str(out), "--pick", pick, "--quiet"]
    if cli.main(argv + (["--format", "stablehlo"] if stablehlo else [])) != 0:
        raise ValueError(f"export of {run_dir} into {out} failed (the line above says why)")
    return Path(out)


def plot_trajectory(run_dir: str | Path):
    """The run's supernet loss per epoch and best score against archs evaluated."""
    rows = read_rows(Path(run_dir) / "metrics.jsonl")
    cfg = configs.load(Path(run_dir) / "config.yaml")
    return plots.trajectory_figure([r for r in rows if r["phase"] == "supernet"],
                                   [r for r in rows if r["phase"] == "search"],
                                   score=configs.score_label(cfg))


def plot_pareto(run_dir: str | Path):
    """Every evaluated arch's score against its parameters, the front and the pick."""
    done = result(run_dir)
    cfg = configs.load(Path(run_dir) / "config.yaml")
    space = exports.search_space(Path(run_dir), cfg)
    points = [(space.params(space.structure(a)), s) for a, s in done.population]
    picked = done.metrics.get("supernet_val_accuracy")
    return plots.pareto_figure(points, None if picked is None else (done.params, picked),
                               budget=cfg.search.max_params, score=configs.score_label(cfg))
