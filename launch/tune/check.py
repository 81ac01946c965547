"""What `nas tune` checks before Ray starts, and the experiment record it leaves in DIR.

Every value a trial can draw is checked against `launch.config` as that trial's config
would be (the file without `tune:`, the `--set` overrides, then `path=value`): every
listed value of `choice`/`grid`, both ends of a range. The first bad one is one line
naming the field, the value and what is allowed; nothing is written. This module imports
`launch.config` (and with it JAX): `nas` runs it in its own process, which then hands
over to the driver (`python -m launch.tune`), a fresh process that never imports JAX.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from launch import config as configs
from launch.files import write_json_atomic
from launch.tune import spec as specs


def _read(path: Path) -> dict | None:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config path {str(path)!r} is a directory, not a YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid YAML"
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {first}") from None


def experiment(config: Path, overrides: list[str], num_samples: int | None) -> dict:
    """The validated experiment of `nas tune CONFIG`: the search config, the overrides every
    trial gets and the `tune:` section with its defaults, as plain JSON."""
    search, section = specs.split(_read(config))
    spec = specs.parse(section, num_samples)
    base = configs.from_dict(search, overrides)
    spec = specs.seeds(spec, base.seed)
    for param in spec.param_space:
        if param.path in ("split.only", "split.as_trials"):
            raise ValueError(f"config tune.param_space.{param.path}: not tunable (split.as_trials: "
                             "true makes each sub-supernet of the last split a trial of its own)")
        for value in param.corners():
            try:
                configs.from_dict(search, [*overrides, specs.assignment(param.path, value)])
            except ValueError as err:
                raise ValueError(f"config tune.param_space.{param.path}: the value {value!r} gives: "
                                 f"{err}") from None
    return json.loads(json.dumps({"config": str(config), "search": search, "overrides": list(overrides),
                                  "num_samples": spec.num_samples if num_samples is None else num_samples,
                                  "as_trials": base.split.as_trials,
                                  "tune": spec.to_dict()}))


def prepare(config: Path, overrides: list[str], num_samples: int | None, out: Path,
            resume: bool) -> None:
    """Validate and record the experiment in `out` (a new or empty directory), or with
    `resume` check that `out` holds this same experiment."""
    out = Path(out)
    record = out / specs.EXPERIMENT
    if resume:
        if not record.is_file():
            raise ValueError(f"--resume: {str(out)!r} holds no experiment ({specs.EXPERIMENT}); "
                             "start one without --resume")
        stored = json.loads(record.read_text())
        if num_samples is None:
            num_samples = stored.get("num_samples")
        new = experiment(config, overrides, num_samples)
        differs = [key for key in ("search", "overrides", "tune") if new[key] != stored.get(key)]
        if differs:
            raise ValueError(f"--resume: {str(out)!r} holds a different experiment (its "
                             f"{' and '.join(differs)} differ from {str(config)!r} with these flags); "
                             "resume with the same config and flags, or choose another --out")
        return
    new = experiment(config, overrides, num_samples)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "holds an experiment: pass --resume to continue it" if record.is_file() \
            else "already exists and is not empty"
        raise ValueError(f"--out {str(out)!r} {what}, or choose another directory")
    write_json_atomic(record, new)
