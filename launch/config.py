"""The `nas search` configuration: a YAML file, validated field by field.

Every field is below with its default; the comment beside a field is its help
(`nas config [SECTION]` prints them all). Names — spaces, data sets, supernet
methods, controllers, sparse updaters, allocations, distributions — are checked
against their registries, and each controller's or updater's options by the
registry itself. An unknown key or name is an error that names the closest valid
one; a wrong type or value names the field, the value and what is allowed.
`--set section.field=value` overrides one field (the value is read as YAML:
`--set search.max_params=5000`). Defaults that depend on `supernet.method` are
filled in when the config is built (`SUPERNET_DEFAULTS`), so a run's
`config.yaml` shows the numbers actually used.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import math
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Mapping

import yaml

import spaces
import sparse
from launch import data as datasets
from launch import plugins
from nas import precision
from search import controllers, oneshot, predictor, proxies, samplers, splits
from spaces.core import Space, closest

SAMPLED = oneshot.RULES  # sampled one-shot training rules; every registered sampler is a gradient method


def is_gradient(method: str) -> bool:
    """Whether `supernet.method` is a gradient (TangleNAS) method: a registered sampler."""
    return method in samplers.names()


def uses_proxy(cfg: "Config") -> bool:
    """Whether a zero-cost proxy scores the archs (zero-training search: no supernet)."""
    return cfg.search.evaluator != "supernet"


def score_label(cfg: "Config") -> str:
    """What the search's score of an arch is, in words."""
    return f"{cfg.search.evaluator} score at init" if uses_proxy(cfg) else "supernet val accuracy"


# `supernet.learning_rate` / `supernet.weight_decay` left null take their method's value:
SUPERNET_DEFAULTS = {
    "sampled": {"learning_rate": 0.01, "weight_decay": 1e-4},    # AdamW peak after warm-up, cosine to 0
    "gradient": {"learning_rate": 0.025, "weight_decay": 3e-4},  # DARTS: SGD momentum 0.9, cosine
}


@dataclasses.dataclass
class SpaceConfig:
    name: str = "cnn1d"                 # a registered space (`nas spaces`)
    options: dict = dataclasses.field(default_factory=dict)  # keyword arguments of the space
    #                                     (`nas spaces show NAME` lists them), e.g. {norm: batch}


@dataclasses.dataclass
class AugmentConfig:
    crop_padding: int = 0               # random crop of the image padded by this many zeros a side
    flip: bool = False                  # random horizontal flip (probability ½)


@dataclasses.dataclass
class DataConfig:
    name: str = "mnist1d"               # a registered data set (`nas data`): generated, shipped, or
    #                                     read from data.path (npz, array_record, image_folder, hf)
    path: str | None = None             # its file or directory (docs/data.md)
    val_fraction: float = 0.2           # share of train held out: search validation split
    val_split: str = "train"            # where validation comes from: train (val_fraction of it,
    #                                     chosen by seed) or a file split of the source, e.g. val
    options: dict = dataclasses.field(default_factory=dict)  # loader keyword arguments
    standardize: bool = False           # scale each input feature by the training split's mean
    #                                     and std (tables); stored with the export, which then
    #                                     takes raw inputs
    normalize: bool = False             # images: scale each channel by the training split's
    #                                     mean and std; stored with the export, as standardize
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)  # training batches
    #                                     of images only (supernet and retraining)
    workers: int = 0                    # input worker processes decoding batches ahead (0: one
    #                                     prefetch thread); the batches do not depend on it


@dataclasses.dataclass
class SupernetConfig:
    method: str = "sandwich"            # sampled one-shot rule, or gradient sampler (TangleNAS: weights
    #                                     and α alternate on the two halves of the training split)
    epochs: int = 30                    # passes over the (weight) training data
    batch_size: int = 128               # examples per step
    learning_rate: float | None = None  # sampled: AdamW peak; gradient: SGD start
    min_learning_rate: float = 0.001    # gradient methods: cosine end
    weight_decay: float | None = None   # sampled: AdamW (decoupled); gradient: SGD (L2)
    warmup_epochs: float = 1.0          # sampled methods: linear warm-up
    num_random: int = 2                 # sandwich: random sub-networks per batch
    distill: bool = True                # sandwich: in-place distillation from the max net
    arch_learning_rate: float = 3e-4    # gradient methods: Adam on α
    arch_weight_decay: float = 1e-3     # gradient methods: L2 on α

    def __post_init__(self):
        kind = "gradient" if is_gradient(self.method) else "sampled" if self.method in SAMPLED else None
        for name, value in SUPERNET_DEFAULTS.get(kind, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)


@dataclasses.dataclass
class SearchConfig:
    controller: str = "auto"            # auto | argmax | random | aging | grea | autoformer | nsga2
    evaluator: str = "supernet"         # what scores an arch: supernet (validation accuracy with
    #                                     inherited weights), or a zero-cost proxy (`search.proxies`,
    #                                     e.g. gradsign): zero-training search, no supernet phase
    evaluations: int = 1000             # archs evaluated
    generation: int = 10                # archs asked (and evaluated in one vmapped pass) at once;
    #                                     aging: each ask retires that many oldest members, so keep it
    #                                     well below population (≥ population replaces them all:
    #                                     generational, not aging; the controller warns);
    #                                     autoformer: its generations of 25 + 25 children span asks
    population: int = 50                # aging / autoformer / nsga2 population
    sample: int = 10                    # aging: tournament size
    parents: int = 10                   # autoformer: parents kept
    mutation_prob: float = 0.2          # autoformer / nsga2: per-decision mutation probability
    mutants: int = 10                   # grea: mutants of each parent ranked by search.proxy; only
    #                                     the best-scored one is evaluated
    proxy: str = "gradsign"             # the zero-cost proxy of grea
    proxy_examples: int = 128           # training examples a proxy scores each arch on
    max_params: int | None = None       # budget: only archs with at most this many parameters
    min_params: int | None = None       # window: at least this many parameters
    max_flops: int | None = None        # budget on multiply-accumulates per example
    max_nonzero: int | None = None      # budget on nonzero parameters (sparse searches)
    objectives: list = dataclasses.field(default_factory=lambda: ["accuracy", "params"])  # nsga2;
    #                                     also flops, nonzero
    calibration: int = 512              # examples used to recalibrate BatchNorm per sub-network
    score_examples: int = 10000         # validation examples each arch is scored on (a seeded
    #                                     subset when the validation split is larger)
    candidates: int = 3                 # top archs retrained; the best on validation is chosen
    baseline: bool = False              # also retrain the params baseline: the search.candidates
    #                                     largest networks within the budget, same recipe (the
    #                                     report always names them; without this it can only
    #                                     compare those the search retrained too); they may be
    #                                     the pick, and the predictor learns from them
    predictor: str = "none"             # none: retrain the top candidates by the search's score |
    #                                     ridge | forest | gp: retrain in rounds of search.round,
    #                                     each round picked by a predictor fitted on every arch
    #                                     retrained so far (docs/search.md, "Ranking")
    features: list = dataclasses.field(default_factory=lambda: ["naswot", "flops", "params", "score"])
    #                                     the predictor's inputs per arch: zero-cost proxies at init
    #                                     (`search.proxies`), score (the search's own score:
    #                                     supernet val accuracy or the evaluator proxy), encoding
    #                                     (the arch's option indices)
    round: int = 2                      # candidates retrained per predictor round
    acquisition: str = "ei"             # ei: expected improvement over the best measured | ucb:
    #                                     predicted mean + 2 sd


@dataclasses.dataclass
class RetrainConfig:
    mode: str = "scratch"               # scratch (new weights) | finetune (inherited weights)
    space_options: dict = dataclasses.field(default_factory=dict)  # override space options of
    #                                     the retrained model (same choices), e.g. {norm: none}
    epochs: int = 100                   # passes over the training split
    batch_size: int = 128               # examples per step
    learning_rate: float = 0.01         # AdamW peak, cosine to 0
    warmup_epochs: float = 2.0          # linear warm-up before the cosine
    weight_decay: float = 1e-4          # AdamW, decoupled


@dataclasses.dataclass
class SparseConfig:
    sparsity: float = 0.0               # target over the prunable kernels of the export; 0 = dense
    levels: list = dataclasses.field(default_factory=list)  # searchable sparsities (≥ 1 level
    #                                     adds the choice `sparsity`); empty: fixed at `sparsity`
    per: str = "model"                  # model: one sparsity choice; layer: one per kernel
    method: str = "rigl"                # DST updater of the supernet (`sparse.updaters`)
    options: dict = dataclasses.field(default_factory=dict)  # more options of the updater, e.g.
    #                                     nm: {n: 2, m: 8}; they override the fields below
    distribution: str = "erk"           # per-layer densities of a random sparse start
    update_every: int = 100             # ΔT: steps between mask updates
    drop_fraction: float = 0.3          # set / rigl: α, cosine-decayed
    first_layer: bool = True            # prune the input layer's kernel
    last_layer: bool = True             # prune the classifier's kernel
    allocation: str = "dp"              # per-layer sparsity of the pick (`sparse.allocate`)
    grid: int = 50                      # sparsity levels 0 … 0.98 of the distortion curves
    calibration: int = 1024             # training examples the distortion curves are measured on
    prune_rate: float = 0.2             # share of the kept weights each prune-then-fine-tune round
    #                                     removes; rounds continue until the target (90 %: 11)
    finetune_epochs: int = 5            # sparse fine-tuning epochs after each round but the last
    final_epochs: int = 60              # sparse fine-tuning epochs at the target (the last round)
    finetune_learning_rate: float = 0.01   # AdamW peak of each fine-tuning, cosine to 0


@dataclasses.dataclass
class SplitConfig:
    epochs: list = dataclasses.field(default_factory=list)  # supernet epochs after which every
    #                                     sub-supernet is split in two (GM-NAS): [10, 20] → 4
    #                                     sub-supernets; empty: one supernet, no split
    decisions: list = dataclasses.field(default_factory=list)  # choices that may be split;
    #                                     empty: every choice with ≥ 2 options
    batches: int = 20                   # training batches each decision's gradient-distance
    #                                     matrix is averaged over
    distance: str = "cosine"            # cosine (1 − cos of the shared gradients) | l2 (squared)
    restart: bool = False               # re-initialise the sub-supernets made at the last split
    #                                     (fresh weights and optimizer moments; the learning-rate
    #                                     schedule runs on)
    training: str = "auto"              # joint (all sub-supernets in one vmapped step) |
    #                                     sequential (one after another, one compiled step) |
    #                                     auto: sequential on CPU, joint on GPU/TPU
    only: int | None = None             # after the last split, train and search only this
    #                                     sub-supernet (its index in the split tree; the others
    #                                     stop there): one job per sub-supernet, e.g. on separate
    #                                     machines; it trains exactly as in the full run
    as_trials: bool = False             # `nas tune`: after the last split each sub-supernet
    #                                     is a trial of its own (`split.only`); `nas search`
    #                                     ignores it


@dataclasses.dataclass
class PrecisionConfig:
    compute: str = "float32"            # dtype of matmuls, convolutions and activations in every
    #                                     phase; bfloat16 is mixed precision: parameters, optimizer
    #                                     states, BatchNorm statistics, α and the loss stay float32.
    #                                     The export records it (arch.json) and computes in it


@dataclasses.dataclass
class CheckpointConfig:
    every_steps: int | None = None      # save after this many units of progress (supernet steps,
    #                                     search generations, retrained candidates), or
    every_seconds: float | None = 300.0  # after this many seconds, whichever first; phase ends always
    keep: int = 3                       # checkpoints kept (plus the one with the lowest supernet loss)


@dataclasses.dataclass
class Config:
    seed: int = 0                       # init, splits, sampling, controller
    plugins: list = dataclasses.field(default_factory=list)  # your modules, imported first: the
    #                                     spaces, data sets, controllers they register can be
    #                                     named below, e.g. [mypkg.spaces] (`--plugin` adds one)
    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)  # the search space
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # the data set and its splits
    supernet: SupernetConfig = dataclasses.field(default_factory=SupernetConfig)  # supernet training
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)  # controller and budgets
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)  # the top candidates
    #                                     trained again and tested
    sparse: SparseConfig = dataclasses.field(default_factory=SparseConfig)  # sparse joint search
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)  # gradient-matching
    #                                     sub-supernets
    precision: PrecisionConfig = dataclasses.field(default_factory=PrecisionConfig)  # compute dtype
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)  # resume points

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choices() -> dict[str, tuple]:
    """The allowed values of every name field, asked of the registries."""
    return {
        "space.name": tuple(spaces.names()),
        "data.name": tuple(datasets.names()),
        "supernet.method": tuple(SAMPLED) + tuple(samplers.names()),
        "search.controller": ("auto", "argmax", *controllers.names()),
        "search.evaluator": ("supernet", *proxies.names()),
        "search.proxy": tuple(proxies.names()),
        "search.predictor": ("none", *predictor.names()),
        "search.acquisition": ("ei", "ucb"),
        "retrain.mode": ("scratch", "finetune"),
        "sparse.per": ("model", "layer"),
        "sparse.method": tuple(sparse.updaters.names()),
        "sparse.distribution": tuple(sparse.masks.DISTRIBUTIONS),
        "sparse.allocation": tuple(sparse.allocate.METHODS),
        "split.distance": tuple(splits.METRICS),
        "split.training": ("auto", "joint", "sequential"),
        "precision.compute": precision.COMPUTE_DTYPES,
    }


_OBJECTIVES = ("accuracy", "params", "flops", "nonzero")
_POSITIVE = {"supernet.epochs", "supernet.batch_size", "search.evaluations", "search.generation",
             "search.population", "search.sample", "search.parents", "search.calibration",
             "search.candidates", "search.mutants", "search.round", "search.proxy_examples",
             "search.score_examples",
             "retrain.epochs", "retrain.batch_size", "search.max_params",
             "search.max_flops", "search.min_params", "search.max_nonzero", "sparse.update_every",
             "sparse.grid", "sparse.calibration", "checkpoint.every_steps", "checkpoint.keep",
             "split.batches"}


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or annotation)


def _is_float_field(annotation) -> bool:
    """A `float` or `float | None` field (an int given there is read as a float)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    return float in args and int not in args


def _type_name(annotation) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if annotation is type(None) else annotation.__name__


def _build(cls, raw: Mapping, prefix: str):
    if not isinstance(raw, Mapping):
        raise ValueError(f"config{'.' + prefix.rstrip('.') if prefix else ''}: expected a mapping, "
                         f"got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ValueError(f"unknown config key {path!r}"
                             f"{closest(path, [prefix + f for f in fields])}; "
                             f"valid keys here: {sorted(fields)}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            values[key] = _build(annotation, value if value is not None else {}, f"{path}.")
            continue
        if not _type_ok(value, annotation):
            raise ValueError(f"config {path} = {value!r}: expected {_type_name(annotation)}")
        if isinstance(value, int) and not isinstance(value, bool) and _is_float_field(annotation):
            value = float(value)
        values[key] = value
    return cls(**values)


def space(name: str, options: Mapping, field: str = "space.options") -> Space:
    """The registered space `name` with `options`, every option checked against the
    space's own keyword arguments (`spaces.options`); errors name `field`."""
    known = spaces.options(name)
    for key in options:
        if key not in known:
            raise ValueError(f"config {field}: space {name!r} has no option {key!r}"
                             f"{closest(str(key), known)}; its options are {sorted(known)}")
    try:
        return spaces.get(name, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config {field} = {dict(options)!r}: {err}") from None


def dataset(cfg: Config) -> datasets.Dataset:
    """The data set of the `data` section, split by `seed`."""
    dc = cfg.data
    options = {**dc.options, **({"path": dc.path} if dc.path else {})}
    augment = None
    if dc.augment.crop_padding or dc.augment.flip:
        augment = datasets.Augment(dc.augment.crop_padding, dc.augment.flip)
    return datasets.load(dc.name, seed=cfg.seed, val_fraction=dc.val_fraction, val_split=dc.val_split,
                         standardize=dc.standardize, normalize=dc.normalize, augment=augment,
                         workers=dc.workers, **options)


def controller(cfg: Config) -> tuple[str, dict]:
    """(name, options) of the search controller: `auto` resolved (argmax for gradient
    methods, aging otherwise), and the `search` fields the controller takes."""
    name = cfg.search.controller
    if name == "auto":
        name = "argmax" if is_gradient(cfg.supernet.method) and not uses_proxy(cfg) else "aging"
    if name == "argmax":
        return name, {}
    fields = dataclasses.asdict(cfg.search)
    return name, {k: fields[k] for k in controllers.options(name) if k in fields}


def updater(cfg: Config, sparsity: float, total_steps: int) -> sparse.Updater:
    """The supernet's DST updater: `sparse.method` with the `sparse` fields it takes,
    then `sparse.options` (an unknown option names the closest one)."""
    sc = cfg.sparse
    fields = {"sparsity": sparsity, "total_steps": total_steps, "update_every": sc.update_every,
              "distribution": sc.distribution, "drop_fraction": sc.drop_fraction, "seed": cfg.seed}
    valid = sparse.updaters.options(sc.method)
    return sparse.updaters.get(sc.method, **{k: v for k, v in fields.items() if k in valid},
                               **sc.options)


def _check(cfg: Config) -> None:
    flat = {f"{section}.{k}": v for section, body in cfg.to_dict().items()
            if isinstance(body, dict) for k, v in body.items()}
    for path, allowed in choices().items():
        if flat[path] not in allowed:
            raise ValueError(f"config {path} = {flat[path]!r} is not allowed; "
                             f"choose one of {list(allowed)}{closest(str(flat[path]), allowed)}")
    for path in _POSITIVE:
        if flat[path] is not None and flat[path] < 1:
            raise ValueError(f"config {path} = {flat[path]!r}: must be ≥ 1")
    for path, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"config {path} = {value!r}: must be a finite number")
        if isinstance(value, float) and value < 0:
            raise ValueError(f"config {path} = {value!r}: must be ≥ 0")
    if not 0 <= cfg.seed < 2 ** 32:
        raise ValueError(f"config seed = {cfg.seed!r}: must be in [0, 2^32)")
    for section in ("supernet", "retrain"):
        body = getattr(cfg, section)
        if body.warmup_epochs > 10 * body.epochs:  # its learning rate would stay near zero
            raise ValueError(f"config {section}.warmup_epochs = {body.warmup_epochs!r}: must be ≤ "
                             f"10 × {section}.epochs = {10 * body.epochs}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ValueError(f"config data.val_fraction = {cfg.data.val_fraction!r}: must be in [0, 1)")
    if cfg.data.workers < 0:
        raise ValueError(f"config data.workers = {cfg.data.workers!r}: must be ≥ 0")
    if cfg.data.augment.crop_padding < 0:
        raise ValueError(f"config data.augment.crop_padding = {cfg.data.augment.crop_padding!r}: "
                         "must be ≥ 0")
    if cfg.data.val_fraction == 0.0 and cfg.data.val_split == "train":
        raise ValueError("config data.val_fraction = 0.0: the search needs a validation split")
    if not 0.0 <= cfg.search.mutation_prob <= 1.0:
        raise ValueError(f"config search.mutation_prob = {cfg.search.mutation_prob!r}: "
                         "must be in [0, 1]")
    gradient = is_gradient(cfg.supernet.method)
    if uses_proxy(cfg):
        _check_proxy_search(cfg)
    if cfg.search.controller == "argmax" and not gradient:
        raise ValueError(f"config search.controller = 'argmax' needs a gradient supernet.method "
                         f"({samplers.names()}), not {cfg.supernet.method!r}")
    objectives = cfg.search.objectives
    if not objectives or objectives[0] != "accuracy" or any(o not in _OBJECTIVES for o in objectives) \
            or len(set(objectives)) != len(objectives):
        raise ValueError(f"config search.objectives = {objectives!r}: 'accuracy' first, then any "
                         f"of {list(_OBJECTIVES[1:])} without repeats")
    if cfg.retrain.mode == "finetune" and cfg.retrain.space_options:
        raise ValueError("config retrain.space_options needs retrain.mode = 'scratch': inherited "
                         "weights only fit the supernet's own space")
    space(cfg.space.name, cfg.space.options)
    if cfg.retrain.space_options:
        space(cfg.space.name, {**cfg.space.options, **cfg.retrain.space_options}, "retrain.space_options")
    name, options = controller(cfg)
    if name != "argmax":
        try:
            controllers.get(name, Space.from_choices({"probe": (0, 1)}), seed=cfg.seed, **options)
        except ValueError as err:
            raise ValueError(f"config search.controller = {name!r}: {err}") from None
    _check_sparse(cfg)
    _check_split(cfg)
    _check_features(cfg)
    if cfg.search.min_params and cfg.search.max_params and cfg.search.min_params > cfg.search.max_params:
        raise ValueError(f"config search.min_params = {cfg.search.min_params} exceeds "
                         f"search.max_params = {cfg.search.max_params}")


def _check_proxy_search(cfg: Config) -> None:
    """A zero-training search trains no supernet: nothing may need one."""
    evaluator = cfg.search.evaluator
    if cfg.search.controller == "argmax":
        raise ValueError(f"config search.controller = 'argmax' discretises a gradient supernet; "
                         f"search.evaluator = {evaluator!r} trains none: use a controller "
                         f"({controllers.names()})")
    if cfg.retrain.mode == "finetune":
        raise ValueError(f"config retrain.mode = 'finetune' inherits supernet weights; "
                         f"search.evaluator = {evaluator!r} trains no supernet: use 'scratch'")
    if sparse_levels(cfg):
        raise ValueError(f"config sparse.sparsity/sparse.levels: sparse searches charge the "
                         f"nonzeros of a trained supernet; search.evaluator = {evaluator!r} "
                         "trains none")


FEATURES = ("score", "encoding")  # predictor features besides the proxies


def _check_features(cfg: Config) -> None:
    features = cfg.search.features
    allowed = (*FEATURES, *proxies.names())
    for name in features:
        if name not in allowed:
            raise ValueError(f"config search.features: {name!r} is not a feature"
                             f"{closest(str(name), allowed)}; features are {list(allowed)}")
    if not features or len(set(features)) != len(features):
        raise ValueError(f"config search.features = {features!r}: at least one of {list(allowed)}, "
                         "without repeats")


def _check_split(cfg: Config) -> None:
    split = cfg.split
    if not split.epochs:
        for name, value in (("only", split.only), ("as_trials", split.as_trials or None)):
            if value is not None:
                raise ValueError(f"config split.{name} = {value!r} needs split.epochs "
                                 "(a split tree to take sub-supernets from)")
        return
    epochs = split.epochs
    if any(not isinstance(e, int) or isinstance(e, bool) or not 1 <= e < cfg.supernet.epochs
           for e in epochs) or sorted(set(epochs)) != list(epochs):
        raise ValueError(f"config split.epochs = {epochs!r}: increasing supernet epochs in "
                         f"[1, supernet.epochs = {cfg.supernet.epochs}) (a split needs training "
                         "before and after it)")
    searched = space(cfg.space.name, cfg.space.options)
    names = searched.names
    for decision in split.decisions:
        if decision not in names:
            raise ValueError(f"config split.decisions: {decision!r} is not a choice of space "
                             f"{cfg.space.name!r}{closest(str(decision), names)}; choices are {list(names)}")
        if len(searched.choices[decision]) < 2:
            raise ValueError(f"config split.decisions: {decision!r} has a single option "
                             f"{list(searched.choices[decision])}; it cannot be split")
    # Each round splits every sub-supernet along a decision not yet split on its path.
    splittable = [n for n in (split.decisions or names) if len(searched.choices[n]) > 1]
    if len(epochs) > len(splittable):
        raise ValueError(f"config split.epochs = {epochs!r}: {len(epochs)} rounds of splits need as many "
                         f"splittable decisions; there are {len(splittable)} ({splittable})")
    if split.only is not None and (not isinstance(split.only, int) or isinstance(split.only, bool)
                                   or not 0 <= split.only < 2 ** len(epochs)):
        raise ValueError(f"config split.only = {split.only!r}: a sub-supernet's index in the split tree, "
                         f"an int in [0, {2 ** len(epochs)}) for {len(epochs)} split round(s)")
    if split.as_trials and split.only is not None:
        raise ValueError(f"config split.only = {split.only!r} with split.as_trials: `nas tune` sets "
                         "split.only of each sub-supernet's trial itself; leave it null")
    if uses_proxy(cfg):
        raise ValueError(f"config split.epochs: splits cut a trained supernet; search.evaluator = "
                         f"{cfg.search.evaluator!r} trains none")
    if cfg.retrain.mode == "finetune":
        raise ValueError("config split.epochs with retrain.mode = 'finetune': candidates come from "
                         "several sub-supernets; retrain them from scratch")
    if sparse_levels(cfg):
        raise ValueError("config split.epochs with sparse.sparsity/sparse.levels: sparse searches "
                         "charge nonzeros measured on one supernet; splits are dense-only for now")


def sparse_levels(cfg: Config) -> list[float]:
    """The sparsities a sparse search considers (empty for a dense search)."""
    if cfg.sparse.levels:
        return sorted(float(s) for s in cfg.sparse.levels)
    return [cfg.sparse.sparsity] if cfg.sparse.sparsity > 0 else []


def _check_sparse(cfg: Config) -> None:
    sc = cfg.sparse
    if not 0.0 <= sc.sparsity < 1.0:
        raise ValueError(f"config sparse.sparsity = {sc.sparsity!r}: must be in [0, 1)")
    for level in sc.levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= level < 1.0:
            raise ValueError(f"config sparse.levels = {sc.levels!r}: every level must be a number in [0, 1)")
    if len(set(sc.levels)) != len(sc.levels):
        raise ValueError(f"config sparse.levels = {sc.levels!r}: repeats a level")
    if not 0.0 < sc.prune_rate < 1.0:
        raise ValueError(f"config sparse.prune_rate = {sc.prune_rate!r}: must be in (0, 1)")
    if sc.drop_fraction > 1.0:
        raise ValueError(f"config sparse.drop_fraction = {sc.drop_fraction!r}: must be in [0, 1]")
    levels = sparse_levels(cfg)
    if levels and is_gradient(cfg.supernet.method):
        raise ValueError(f"config sparse: sparse joint search trains the supernet by sampling; "
                         f"supernet.method = {cfg.supernet.method!r} must be one of {list(SAMPLED)}")
    if sc.levels and sc.sparsity:
        raise ValueError(f"config sparse: set either sparse.sparsity = {sc.sparsity} (fixed) or "
                         f"sparse.levels = {sc.levels} (searched), not both")
    uses_nonzero = cfg.search.max_nonzero is not None or "nonzero" in cfg.search.objectives
    if uses_nonzero and not levels:
        raise ValueError("config search.max_nonzero / objective 'nonzero' need a sparse search: "
                         "set sparse.sparsity or sparse.levels")
    if levels:
        try:
            updater(cfg, levels[0], total_steps=1)
        except ValueError as err:
            raise ValueError(f"config sparse.method = {sc.method!r}: {err}") from None


def _set(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ValueError(f"--set {assignment!r}: expected key=value, e.g. search.max_params=5000")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set {assignment!r}: empty key")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {assignment!r}: {part!r} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {assignment!r}: value is not YAML ({err})") from None


def from_dict(raw: Mapping | None, overrides: typing.Sequence[str] = ()) -> Config:
    """A validated `Config` from a (YAML-loaded) mapping plus `key=value` overrides."""
    raw = dict(raw or {})
    raw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for section in ("space", "data"):  # `space: cnn1d` is short for `space: {name: cnn1d}`
        if isinstance(raw.get(section), str):
            raw[section] = {"name": raw[section]}
    for assignment in overrides:
        _set(raw, assignment)
    plugins.load(raw.get("plugins"))  # before the names they register are checked
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


def load(path: Path | str, overrides: typing.Sequence[str] = ()) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config path {str(path)!r} is a directory, not a YAML file") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text (byte {err.start}); save it "
                         "as UTF-8 YAML") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid YAML"
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"config file {str(path)!r} is not valid YAML{where}: {first}") from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of sections")
    return from_dict(raw, overrides)


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def field_help(cls) -> dict[str, str]:
    """{field: help} of the dataclass `cls`: the comment beside each field, continued on
    the comment-only lines right below it."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign):
            continue
        parts, line = [], node.lineno
        while line <= len(lines) and (line <= node.end_lineno or lines[line - 1].lstrip().startswith("#")):
            if comments.get(line):
                parts.append(comments[line])
            line += 1
        out[node.target.id] = " ".join(parts)
    return out


def to_yaml(value) -> str:
    """`value` as one line of flow-style YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()  # a scalar document ends with a `...` marker


def describe(section: str | None = None) -> str:
    """Every field (or one section's) as commented YAML: its default and its help, with the
    allowed names of name fields from their registries. The output is a valid config."""
    allowed = choices()
    top = {f.name: f for f in dataclasses.fields(Config)}
    if section is not None and section not in top:
        raise ValueError(f"unknown config section {section!r}{closest(section, top)}; "
                         f"sections are {list(top)}")
    hints, helps = typing.get_type_hints(Config), field_help(Config)
    rows: list[tuple[str, str]] = []  # (YAML text, help)
    for name, f in top.items():
        if section is not None and name != section:
            continue
        cls = hints[name]
        if not dataclasses.is_dataclass(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append((f"{name}: {to_yaml(default)}", helps[name]))
            continue
        rows.append((f"{name}:", helps[name]))
        sub_helps = field_help(cls)
        for sub in dataclasses.fields(cls):
            path = f"{name}.{sub.name}"
            default = sub.default_factory() if sub.default_factory is not dataclasses.MISSING \
                else sub.default
            if dataclasses.is_dataclass(default):  # a nested section, e.g. data.augment
                default = dataclasses.asdict(default)
            text = sub_helps[sub.name]
            if path in allowed:
                text += f"; one of: {', '.join(map(str, allowed[path]))}"
            if name == "supernet" and sub.name in SUPERNET_DEFAULTS["sampled"]:
                text += "; null: the method's default (" + ", ".join(
                    f"{kind} {values[sub.name]}" for kind, values in SUPERNET_DEFAULTS.items()) + ")"
            rows.append((f"  {sub.name}: {to_yaml(default)}", text))
    width = max(len(text) for text, _ in rows) + 2
    return "\n".join(f"{text:<{width}}# {help_}" if help_ else text for text, help_ in rows)
