"""The `tune:` section of a config: what `nas tune` varies, how it schedules, what it ranks by.

    tune:
      num_samples: 1          # draws of the param space (--num-samples); grid values multiply them
      metric: accuracy        # accuracy | objective (accuracy − size_weight × log10(size))
      size_weight: 0.05       # objective: accuracy given up per 10× more parameters
      scheduler: asha         # asha: stop trials that fall behind at each rung | fifo: run all to the end
      grace_period: 1         # asha: reports a trial makes before it can be stopped
      reduction_factor: 2     # asha: one trial in reduction_factor passes each rung
      max_concurrent: null    # trials at once (null: as many as the resources allow)
      resources: {cpu: 1, gpu: 0, tpu: 0}    # per trial
      param_space:            # a config field (dotted, as for --set) → one distribution
        supernet.learning_rate: {loguniform: [0.001, 0.05]}
        search.max_params: {choice: [5000, 20000]}
        seed: {grid: [0, 1, 2]}

A trial's config is the file without `tune:`, with the `--set` overrides and then its
sampled values applied as `path=value` overrides. Without a param space the samples
are seeds: seed, seed + 1, … This module only reads the section (no JAX, no Ray):
`launch.tune.check` validates the sampled fields against `launch.config`.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing

import yaml

EXPERIMENT = "experiment.json"  # DIR's record of what it runs: the driver reads it, --resume checks it

# name → how many numbers it takes ("values": a non-empty list of any values)
DISTRIBUTIONS = {
    "choice": "values",       # one of the values, uniformly
    "grid": "values",         # every value (each sample takes each value once)
    "uniform": 2,             # a float in [low, high]
    "loguniform": 2,          # a float in [low, high], uniform in log space (0 < low)
    "randint": 2,             # an int in [low, high)
}
SCHEDULERS = ("asha", "fifo")
METRICS = ("accuracy", "objective")
RESOURCES = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Param:
    path: str         # dotted config field, e.g. supernet.learning_rate
    kind: str         # a key of DISTRIBUTIONS
    args: tuple       # the values (choice, grid) or (low, high)

    def corners(self) -> list:
        """The values that bound what this distribution can draw: every listed value, or
        the two ends of a range (as the type a draw has)."""
        if DISTRIBUTIONS[self.kind] == "values":
            return list(self.args)
        low, high = self.args
        if self.kind == "randint":
            return [int(low), int(high) - 1]
        return [float(low), float(high)]


@dataclasses.dataclass(frozen=True)
class TuneSpec:
    param_space: tuple = ()           # Params: the config fields drawn and their distributions
    num_samples: int = 1              # draws of the param space (each grid value in every draw)
    metric: str = "accuracy"          # what trials are ranked and stopped by (METRICS)
    size_weight: float = 0.05         # objective = accuracy − size_weight × log10(size)
    scheduler: str = "asha"           # SCHEDULERS
    grace_period: int = 1             # asha: reports before a trial can be stopped
    reduction_factor: int = 2         # asha: one trial in this many passes each rung
    max_concurrent: int | None = None  # trials at once (None: as the resources allow)
    resources: dict = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0, "tpu": 0})  # per trial

    def to_dict(self) -> dict:
        body = dataclasses.asdict(self)
        body["param_space"] = {p.path: {p.kind: list(p.args)} for p in self.param_space}
        return body


def _closest(name: str, valid) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _param(path, body) -> Param:
    where = f"config tune.param_space.{path}"
    if not isinstance(path, str) or not path or path.startswith("tune.") or path == "tune":
        raise ValueError(f"config tune.param_space: key {path!r} must name a config field outside "
                         "`tune`, dotted as for --set (e.g. supernet.learning_rate)")
    if not isinstance(body, dict) or len(body) != 1:
        raise ValueError(f"{where} = {body!r}: expected one distribution, e.g. {{choice: [a, b]}}; "
                         f"distributions are {list(DISTRIBUTIONS)}")
    (kind, args), = body.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown distribution {kind!r}{_closest(str(kind), DISTRIBUTIONS)}; "
                         f"distributions are {list(DISTRIBUTIONS)}")
    if DISTRIBUTIONS[kind] == "values":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}.{kind} = {args!r}: expected a non-empty list of values")
        return Param(path, kind, tuple(args))
    if not isinstance(args, list) or len(args) != 2 or not all(map(_number, args)):
        raise ValueError(f"{where}.{kind} = {args!r}: expected [low, high], two numbers")
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{where}.randint = {args!r}: low and high must be integers")
    if not low < high:
        raise ValueError(f"{where}.{kind} = {args!r}: low must be below high")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}.loguniform = {args!r}: low must be > 0")
    return Param(path, kind, (low, high))


def _positive_int(field: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config tune.{field} = {value!r}: expected an integer ≥ 1"
                         + (" or null" if allow_none else ""))


def parse(raw, num_samples: int | None = None) -> TuneSpec:
    """The validated `tune:` section (`raw`: its YAML mapping, or None when absent);
    `num_samples` (--num-samples) overrides `tune.num_samples`."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"config tune: expected a mapping, got {type(raw).__name__}")
    fields = {f.name for f in dataclasses.fields(TuneSpec)}
    for key in raw:
        if key not in fields:
            raise ValueError(f"unknown config key 'tune.{key}'{_closest(str(key), fields)}; "
                             f"valid keys here: {sorted(fields)}")
    body = dict(raw)
    if num_samples is not None:
        body["num_samples"] = num_samples
    space = body.get("param_space") or {}
    if not isinstance(space, dict):
        raise ValueError(f"config tune.param_space = {space!r}: expected a mapping of config "
                         "fields to distributions")
    body["param_space"] = tuple(_param(path, dist) for path, dist in space.items())
    spec = TuneSpec(**{**{k: v for k, v in body.items() if k != "resources"},
                       "resources": _resources(body.get("resources", {}))})
    _positive_int("num_samples", spec.num_samples)
    _positive_int("grace_period", spec.grace_period)
    _positive_int("max_concurrent", spec.max_concurrent, allow_none=True)
    if not isinstance(spec.reduction_factor, int) or spec.reduction_factor < 2:
        raise ValueError(f"config tune.reduction_factor = {spec.reduction_factor!r}: expected an "
                         "integer ≥ 2")
    for field, allowed in (("metric", METRICS), ("scheduler", SCHEDULERS)):
        value = getattr(spec, field)
        if value not in allowed:
            raise ValueError(f"config tune.{field} = {value!r} is not allowed; choose one of "
                             f"{list(allowed)}{_closest(str(value), allowed)}")
    if not _number(spec.size_weight) or spec.size_weight < 0:
        raise ValueError(f"config tune.size_weight = {spec.size_weight!r}: expected a number ≥ 0")
    return spec


def _resources(raw) -> dict:
    if not isinstance(raw, dict):
        raise ValueError(f"config tune.resources = {raw!r}: expected a mapping like {{cpu: 1, gpu: 0}}")
    resources = {"cpu": 1, "gpu": 0, "tpu": 0}
    for key, value in raw.items():
        if key not in RESOURCES:
            raise ValueError(f"config tune.resources: unknown resource {key!r}"
                             f"{_closest(str(key), RESOURCES)}; resources are {list(RESOURCES)}")
        if not _number(value) or value < 0 or (key == "tpu" and not isinstance(value, int)):
            kind = "an integer (chips)" if key == "tpu" else "a number"
            raise ValueError(f"config tune.resources.{key} = {value!r}: expected {kind} ≥ 0")
        resources[key] = value
    if resources["cpu"] == 0 and resources["gpu"] == 0 and resources["tpu"] == 0:
        raise ValueError("config tune.resources: a trial needs some cpu, gpu or tpu")
    return resources


def seeds(spec: TuneSpec, seed: int) -> TuneSpec:
    """Without a param space, the samples are the search at `num_samples` seeds."""
    if spec.param_space:
        return spec
    grid = Param("seed", "grid", tuple(range(seed, seed + spec.num_samples)))
    return dataclasses.replace(spec, param_space=(grid,), num_samples=1)


def assignment(path: str, value) -> str:
    """`path=value` as `--set` reads it (the value as one line of YAML)."""
    value = value.item() if hasattr(value, "item") else value  # a NumPy scalar drawn by Ray
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return f"{path}={text.removesuffix('...').strip()}"


def split(raw) -> tuple[dict, typing.Any]:
    """(the search config, the `tune:` section) of a loaded YAML file."""
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        raise ValueError("config file must hold a mapping of sections")
    search = {k: v for k, v in raw.items() if k != "tune"}
    return search, raw.get("tune")
