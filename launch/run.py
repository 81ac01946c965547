"""`nas search`: supernet phase → search phase → retrain → test → report, in a run dir.

    RUN_DIR/config.yaml        the validated config (with every default spelled out)
    RUN_DIR/metrics.jsonl      one JSON record per supernet epoch / search generation / retrain
    RUN_DIR/tensorboard/       the same scalars as TensorBoard events
    RUN_DIR/checkpoints/       Orbax checkpoints of the supernet phase (resume point)
    RUN_DIR/search_state.json  controller state after every generation (resume point)
    RUN_DIR/trajectory.png     supernet loss and search progress
    RUN_DIR/pareto.png         accuracy against params of every evaluated arch
    RUN_DIR/best/arch.json     the chosen arch, its costs, metrics and what the search cost
    RUN_DIR/best/weights/      the retrained compact model (Orbax)

Running the same config into an existing run dir resumes: finished supernet
epochs and search generations are not repeated.

Sparse searches (`sparse.sparsity` or `sparse.levels`): the supernet trains
with a DST updater (masks in the optimizer state, checkpointed with it), so
sub-networks inherit sparse weights; with `levels` each arch also chooses its
sparsity (`sparse.levels`), and budgets and objectives can count nonzero
parameters. Each retrained candidate is then pruned to its sparsity with the
configured per-layer allocation (DP by default) and fine-tuned sparse
(`launch.prune`); the export holds exact zeros and arch.json the per-layer
sparsity and `nonzero_params`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

import nas
import spaces
import sparse
from launch import __version__ as VERSION
from launch import config as configs
from launch import data as datasets
from launch import plots
from launch.data import Batches
from launch.files import write_json_atomic, write_text_atomic
from launch.prune import prune
from launch.train import SparseTraining, TrainConfig, prunable_kernels, train
from nas import surgery
from search import controllers, engine, gradient, oneshot, samplers
from search.population import PopulationEvaluator
from sparse import masks as masklib
from sparse.levels import Levels, SliceCounts

POOL_SIZE = 4096  # feasible archs the sampled supernet step draws from under a budget


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard events (tensorboardX)."""

    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter
        self.path = run_dir / "metrics.jsonl"
        self.records: list[dict] = []
        if self.path.exists():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, phase: str, step: int, **values) -> None:
        record = {"phase": phase, "step": step, **values}
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{phase}/{key}", value, step)
        self.writer.flush()

    def phase(self, name: str) -> list[dict]:
        return [r for r in self.records if r["phase"] == name]

    def close(self) -> None:
        self.writer.close()


@dataclasses.dataclass
class SparseSetup:
    """What a sparse search prunes, at which sparsities, and how it counts nonzeros.

    One rule: an arch is charged (budget, NSGA-II objective, the export's pruning
    target) the nonzeros its sub-network holds. At a sparsity s each prunable
    kernel has the density of `sparse.distribution` at s (the DST supernet's own
    start); once the supernet is trained, `measure` counts, for every kernel and
    level, the nonzero kept weights inside any arch's slice, and `keep` charges
    exactly those. Before that (the sandwich pool under a budget) the charge is
    the estimate Σ round(compact size · density).
    """
    names: list[str]                 # prunable kernels of the supernet, in forward order
    target: float                    # the fixed sparsity (when not searched)
    levels: Levels | None            # searched sparsity choices
    densities: dict[str, float] = dataclasses.field(default_factory=dict)  # fixed sparsity:
    #                                  each kernel's density at `target` (levels hold their own)
    counts: dict | None = None       # after `measure`: kernel → [SliceCounts per level]

    def sparsity(self, space, arch, kernel: str) -> float:
        return space.sparsity_of(arch, kernel) if self.levels is not None else self.target

    def _level(self, space, arch, kernel: str) -> int:
        return 0 if self.levels is None else self.levels.options.index(self.sparsity(space, arch, kernel))

    def density(self, space, arch, kernel: str) -> float:
        if self.levels is None:
            return self.densities[kernel]
        return self.levels.density(kernel)[self._level(space, arch, kernel)]

    def measure(self, params) -> None:
        """Count the trained supernet's nonzero kept weights per kernel and level."""
        if self.levels is None:
            masks = {n: np.asarray(w)[None] != 0 for n, w in masklib.kernels(params, self.names).items()}
        else:
            masks = self.levels.masks(params)
        self.counts = {n: [SliceCounts(m, masklib.kernel_axes(n, m.shape).spatial) for m in stack]
                       for n, stack in masks.items()}

    def nonzero(self, space, arch) -> int:
        """Nonzero parameters of `arch`: its prunable kernels' kept weights, the rest dense."""
        dense = sum(math.prod(shape) for name, shape in space.param_shapes(arch).items()
                    if name not in self.names)
        return dense + self.keep(space, arch)

    def keep(self, space, arch) -> int:
        """The prunable weights `arch` is charged: counted in its slices once measured."""
        total = 0
        for name, shape in space.param_shapes(arch).items():
            if name not in self.names:
                continue
            if self.counts is None:
                total += round(math.prod(shape) * self.density(space, arch, name))
            else:
                total += self.counts[name][self._level(space, arch, name)](shape)
        return total


def _sparse_setup(cfg: configs.Config, space, model):
    """(space with sparsity choices if searched, SparseSetup) — (space, None) when dense."""
    levels = configs.sparse_levels(cfg)
    if not levels:
        return space, None
    names = prunable_kernels(model, space.uniform_probs(), cfg.sparse.first_layer, cfg.sparse.last_layer)
    shapes = masklib.shapes_of(nnx.state(model, nnx.Param), names)
    if not cfg.sparse.levels:
        return space, SparseSetup(names, levels[0], None,
                                  masklib.densities(shapes, levels[0], cfg.sparse.distribution))
    per_kernel = names if cfg.sparse.per == "layer" else None
    searched = space.with_sparsity(levels, per_kernel)
    choice_of = tuple((n, f"sparsity:{n}" if per_kernel else "sparsity") for n in names)
    return searched, SparseSetup(names, 0.0, Levels.of(choice_of, levels, shapes, cfg.sparse.distribution))


def _constraint(space, cfg: configs.SearchConfig, sparse_setup: SparseSetup | None = None):
    def ok(arch) -> bool:
        if cfg.max_params is not None and space.params(arch) > cfg.max_params:
            return False
        if cfg.min_params is not None and space.params(arch) < cfg.min_params:
            return False
        if cfg.max_nonzero is not None and sparse_setup.nonzero(space, arch) > cfg.max_nonzero:
            return False
        return cfg.max_flops is None or space.flops(arch) <= cfg.max_flops
    if cfg.max_params is None and cfg.min_params is None and cfg.max_flops is None \
            and cfg.max_nonzero is None:
        return None
    if cfg.max_nonzero is not None:
        sparsest, _, _ = space.extremes(lambda a: sparse_setup.nonzero(space, a))
        if sparse_setup.nonzero(space, sparsest) > cfg.max_nonzero:
            raise ValueError(f"config search.max_nonzero = {cfg.max_nonzero}: the sparsest arch of "
                             f"{space.name!r} has {sparse_setup.nonzero(space, sparsest):,} nonzero "
                             "parameters")
    if cfg.max_params is not None:
        smallest, _, _ = space.extremes(space.params)
        if space.params(smallest) > cfg.max_params:
            raise ValueError(f"config search.max_params = {cfg.max_params}: the smallest arch of "
                             f"{space.name!r} has {space.params(smallest):,} parameters")
    if cfg.max_flops is not None:
        cheapest, _, _ = space.extremes(space.flops)
        if space.flops(cheapest) > cfg.max_flops:
            raise ValueError(f"config search.max_flops = {cfg.max_flops}: the cheapest arch of "
                             f"{space.name!r} has {space.flops(cheapest):,} FLOPs")
    return ok


def _check_measured_budget(space, cfg: configs.SearchConfig, sparse_setup: SparseSetup) -> None:
    """The budget was checked against the estimated charge before training; a trained
    supernet's prefixes can hold more nonzeros than that, so check it again."""
    if cfg.max_nonzero is None:
        return
    sparsest, _, _ = space.extremes(lambda a: sparse_setup.nonzero(space, a))
    fewest = sparse_setup.nonzero(space, sparsest)
    if fewest > cfg.max_nonzero:
        raise ValueError(f"config search.max_nonzero = {cfg.max_nonzero}: after supernet training the "
                         f"sparsest arch of {space.name!r} holds {fewest:,} nonzero parameters (the "
                         "estimate before training was lower); raise the budget and run into a new --out")


def _supernet_extremes(space, constraint, size):
    """(max, min) archs by `size` (params, or nonzeros when sparse), the max within
    the budget when there is one."""
    low, high, _ = space.extremes(size)
    if constraint is not None and not constraint(high):
        feasible = [a for a in space.enumerate(limit=200_000) if constraint(a)] \
            if space.size() <= 200_000 else []
        if feasible:
            high = max(feasible, key=size)
    return high, low


class SupernetPhase:
    """The supernet's training state, its compiled step and its Orbax checkpoints."""

    def __init__(self, cfg: configs.Config, space, data: datasets.Dataset, run_dir: Path,
                 constraint, model, sparse_setup: SparseSetup | None = None):
        self.cfg, self.space, self.data = cfg, space, data
        sc = cfg.supernet
        self.gradient = configs.is_gradient(sc.method)
        self.model = model
        self.sparse = sparse_setup
        self.graphdef, params, rest = engine.split(self.model)
        if self.gradient:
            # Bi-level: the train split is halved, weights on one half, α on the other.
            half = len(data.x_train) // 2
            self.batches = Batches(data.x_train[:half], data.y_train[:half], sc.batch_size, cfg.seed)
            self.arch_batches = Batches(data.x_train[half:], data.y_train[half:], sc.batch_size,
                                        cfg.seed + 1)
        else:
            self.batches = Batches(data.x_train, data.y_train, sc.batch_size, cfg.seed)
            self.arch_batches = None
        self.steps = sc.epochs * self.batches.steps_per_epoch
        key = jax.random.key(cfg.seed)
        if self.gradient:
            tx = gradient.weight_optimizer(self.steps, sc.learning_rate, sc.min_learning_rate,
                                           weight_decay=sc.weight_decay)
            alpha_tx = gradient.alpha_optimizer(sc.arch_learning_rate, weight_decay=sc.arch_weight_decay)
            alpha = gradient.init_alpha(space, jax.random.fold_in(key, 1))
            self.sampler = samplers.get(sc.method)
            self.step_fn = gradient.make_step(self.graphdef, self.sampler, tx, alpha_tx)
            self.anchors = []
            self.state = {"params": params, "rest": rest, "opt": tx.init(params), "alpha": alpha,
                          "alpha_opt": alpha_tx.init(alpha), "key": jax.random.key_data(key)}
        else:
            warmup = int(sc.warmup_epochs * self.batches.steps_per_epoch)
            tx = engine.optimizer("adamw", sc.learning_rate, self.steps, warmup_steps=max(warmup, 1),
                                  weight_decay=sc.weight_decay)
            size = space.params
            if sparse_setup is not None:
                tx = sparse.wrap(tx, _updater(cfg, sparse_setup, self.steps), sparse_setup.names)
                size = functools.partial(sparse_setup.nonzero, space)
            high, low = _supernet_extremes(space, constraint, size)
            self.anchors = [high, low] if sc.method == "sandwich" else []
            pool = None
            if constraint is not None:
                sampler = controllers.get("random", space, seed=cfg.seed, constraint=constraint)
                pool = np.stack([space.index_vector(a) for a in sampler.ask(POOL_SIZE)])
            self.step_fn = oneshot.make_step(
                self.graphdef, space, tx, sc.method, sc.num_random, sc.distill, max_arch=high,
                min_arch=low, pool=pool, levels=sparse_setup.levels if sparse_setup else None)
            opt = tx.init(params)
            if sparse_setup is not None:
                # BatchNorm makes each layer scale-free: rescaling would only shrink AdamW's
                # relative step; without it a sparse start needs the rescale to keep its signal.
                if not engine.has_batch_norm(model):
                    params = masklib.rescale(params, opt.masks)
                params = masklib.apply(params, opt.masks)
            self.state = {"params": params, "rest": rest, "opt": opt, "key": jax.random.key_data(key)}
        self.epoch = 0
        self.manager = ocp.CheckpointManager(
            (run_dir / "checkpoints").absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))

    def masked_params(self):
        """The supernet's weights as the search sees them (sparse masks applied)."""
        params = self.state["params"]
        if self.sparse is None:
            return params
        return masklib.apply(params, self.state["opt"].masks)

    def restore(self) -> bool:
        step = self.manager.latest_step()
        if step is None:
            return False
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(self.state), meta=ocp.args.JsonRestore()))
        self.state = restored.state
        meta = restored.meta
        self.epoch = int(meta["epoch"])
        self.batches.load_state_dict(meta["batches"])
        if self.arch_batches is not None:
            self.arch_batches.load_state_dict(meta["arch_batches"])
        return True

    def save(self) -> None:
        meta = {"epoch": self.epoch, "batches": self.batches.state_dict(),
                "arch_batches": self.arch_batches.state_dict() if self.arch_batches else None}
        self.manager.save(self.epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(self.state), meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()

    def run_epoch(self) -> dict:
        s = self.state
        key = jax.random.wrap_key_data(s["key"])
        losses, alpha_losses = [], []
        for i in range(self.batches.steps_per_epoch):
            key, sub = jax.random.split(key)
            x, y = next(self.batches)
            if self.gradient:
                xv, yv = next(self.arch_batches)
                progress = (self.epoch * self.batches.steps_per_epoch + i) / max(self.steps, 1)
                (s["params"], s["rest"], s["opt"], s["alpha"], s["alpha_opt"], metrics) = self.step_fn(
                    s["params"], s["rest"], s["opt"], s["alpha"], s["alpha_opt"], x, y, xv, yv, sub,
                    jnp.float32(progress))
                losses.append(metrics["loss"])
                alpha_losses.append(metrics["alpha_loss"])
            else:
                s["params"], s["rest"], s["opt"], loss = self.step_fn(
                    s["params"], s["rest"], s["opt"], x, y, sub)
                losses.append(loss)
        s["key"] = jax.random.key_data(key)
        self.epoch += 1
        record = {"loss": float(jnp.mean(jnp.stack(losses)))}
        if self.gradient:
            record["alpha_loss"] = float(jnp.mean(jnp.stack(alpha_losses)))
            record["alpha_entropy"] = gradient.entropy(s["alpha"])
        return record


def _updater(cfg: configs.Config, setup: SparseSetup, steps: int) -> sparse.Updater:
    """The supernet's DST updater at the lowest sparsity any arch uses."""
    base = min(setup.levels.options) if setup.levels is not None else setup.target
    return configs.updater(cfg, base, steps)


def _cost(space, arch, name, sparse_setup=None) -> float:
    if name == "params":
        return float(space.params(arch))
    if name == "nonzero":
        return float(sparse_setup.nonzero(space, arch))
    return float(space.flops(arch))


def _scores(space, archs, accuracies, objectives, sparse_setup=None):
    rows = []
    for arch, acc in zip(archs, accuracies):
        row = [acc]
        for name in objectives[1:]:
            row.append(-_cost(space, arch, name, sparse_setup))
        rows.append(tuple(row) if len(row) > 1 else acc)
    return rows


def _controller(cfg: configs.Config, space, constraint):
    name, options = configs.controller(cfg)
    if name == "argmax":
        return None
    return controllers.get(name, space, seed=cfg.seed, constraint=constraint, **options)


def _top_candidates(space, evaluated: list[tuple[dict, float]], k: int) -> list[tuple[dict, float]]:
    """The `k` best distinct networks, each in canonical form (`Space.canonical`): two
    encodings of one network are retrained once."""
    seen, out = set(), []
    for arch, acc in sorted(evaluated, key=lambda item: -item[1]):
        network = space.canonical(arch)
        key = tuple(network.items())
        if key not in seen:
            seen.add(key)
            out.append((network, acc))
        if len(out) == k:
            break
    return out


def _write_orbax(directory: Path, model: nnx.Module) -> None:
    """The model's variables as a plain tree under `directory` (replaced atomically)."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp.absolute(), nnx.to_pure_dict(nnx.state(model)))
    checkpointer.wait_until_finished()
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def load_export(best_dir: Path | str):
    """(space, arch, model) of an export directory: the compact model with its trained
    weights, runnable without the supernet (`model(x)` gives logits)."""
    best_dir = Path(best_dir)
    info = json.loads((best_dir / "arch.json").read_text())
    space = spaces.from_dict(info["space_config"])
    arch = space.validate(info["choices"])
    fixed = space.fix(arch)
    abstract = nnx.eval_shape(lambda: fixed.supernet_class(fixed, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    target = nnx.to_pure_dict(state)
    restored = ocp.StandardCheckpointer().restore((best_dir / "weights").absolute(), target)
    nnx.replace_by_pure_dict(state, restored)
    return space, arch, nnx.merge(graphdef, state)


def save_export(directory: Path | str, model: nnx.Module, info: dict) -> None:
    """An export directory `load_export` reads back: the model's weights under weights/
    and `info` (with at least `choices` and `space_config`) as arch.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_orbax(directory / "weights", model)
    write_json_atomic(directory / "arch.json", info)


@dataclasses.dataclass
class Summary:
    arch: dict
    params: int
    flops: int
    val_accuracy: float
    test_accuracy: float
    cost: dict
    run_dir: Path
    nonzero_params: int | None = None       # sparse searches
    dense_test_accuracy: float | None = None  # sparse searches: the pick before pruning
    prune_rounds: int | None = None         # sparse searches: prune-then-fine-tune rounds


@dataclasses.dataclass
class Retrained:
    """One retrained candidate; for sparse searches, after pruning and fine-tuning."""
    model: nnx.Module
    val_accuracy: float
    test_accuracy: float
    dense_val_accuracy: float
    dense_test_accuracy: float
    pruned: object = None                   # launch.prune.PruneResult


def _at_sparsity(phase: SupernetPhase, space, arch) -> nnx.Module:
    """The supernet with its inherited sparse weights at `arch`'s sparsity choice."""
    params = phase.masked_params()
    levels = phase.sparse.levels if phase.sparse else None
    if levels is not None:
        params = levels.apply(params, space.one_hot(arch), levels.ranks(params))
    return nnx.merge(phase.graphdef, params, phase.state["rest"])


def _nonzero_masks(model: nnx.Module, setup: SparseSetup | None):
    """Masks of the nonzero inherited weights of the prunable kernels (None when dense)."""
    if setup is None:
        return None
    leaves = masklib.named_leaves(nnx.state(model, nnx.Param))
    return {n: np.asarray(leaves[n]) != 0 for n in setup.names if n in leaves}


def _finetune_config(cfg: configs.Config, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=cfg.sparse.finetune_epochs if epochs is None else epochs,
                       batch_size=cfg.retrain.batch_size,
                       learning_rate=cfg.sparse.finetune_learning_rate, warmup_epochs=0.0,
                       weight_decay=cfg.retrain.weight_decay, seed=cfg.seed)


def _export_sparse(best_dir: Path, model: nnx.Module, names: list[str], info: dict) -> dict:
    """The two extra forms of a sparse export: compressed storage (COO, `sparse.storage`)
    and, where the space describes its layer chain, the smaller dense model without
    dead units (`nas.surgery`) as a second export directory `best/compact/`."""
    ratios = sparse.storage.save(best_dir / "sparse_weights.npz", nnx.state(model, nnx.Param), names)
    sizes = {n: v["size"] for n, v in info["sparsity"]["layers"].items()}
    out = {"coo_file": "sparse_weights.npz",
           "coo_bytes_vs_dense": sum(ratios[n] * sizes[n] for n in ratios) / sum(sizes[n] for n in ratios)}
    if not hasattr(model.space, "unit_chain"):
        out["compact"] = None
        return out
    smaller = surgery.remove_dead_units(model)
    fixed = smaller.space
    choices = {k: v[0] for k, v in fixed.choices.items()}
    compact_dir = best_dir / "compact"
    compact_dir.mkdir(exist_ok=True)
    _write_orbax(compact_dir / "weights", smaller)
    space_config = spaces.get(fixed.name, **fixed.config).bind(fixed.input_shape, fixed.num_classes)
    compact_info = {"space": fixed.name, "choices": choices, "params": nas.count_params(smaller),
                    "flops": fixed.flops(choices), "space_config": space_config.to_dict(),
                    "derived_from": "../arch.json (dead units removed; same outputs)",
                    "engine": f"jaxnas {VERSION}"}
    write_json_atomic(compact_dir / "arch.json", compact_info)
    out["compact"] = {"dir": "compact", "params": compact_info["params"], "flops": compact_info["flops"]}
    return out


def _sparsity_info(cfg: configs.Config, space, arch, setup: SparseSetup, chosen: Retrained) -> dict:
    """arch.json's sparse part, counted from the exported weights' masks."""
    params = nnx.state(chosen.model, nnx.Param)
    report = masklib.summary(params, chosen.pruned.masks)
    target = {k: v for k, v in arch.items() if k not in space.structure(arch)}
    return {
        "nonzero_params": report["nonzero_params"],
        "sparsity": {
            "target": target or setup.target, "allocation": cfg.sparse.allocation,
            "supernet_method": cfg.sparse.method,
            "prunable_params": report["prunable_params"], "prunable_nonzero": report["prunable_nonzero"],
            "prunable_sparsity": report["prunable_sparsity"], "overall_sparsity": report["sparsity"],
            "layers": report["layers"], "rounds": chosen.pruned.rounds,
        },
    }


def run_search(cfg: configs.Config, run_dir: Path, progress: bool = True, echo=print) -> Summary:
    """Run (or resume) the whole search of `cfg` in `run_dir`."""
    started = time.perf_counter()
    data = configs.dataset(cfg)
    space = spaces.get(cfg.space.name, **cfg.space.options).bind(data.input_shape, data.num_classes)
    model = nas.supernet(space, seed=cfg.seed)
    retrain_space = space
    space, sparse_setup = _sparse_setup(cfg, space, model)
    constraint = _constraint(space, cfg.search, sparse_setup)
    if cfg.retrain.space_options:
        retrain_space = spaces.get(cfg.space.name, **{**cfg.space.options,
                                                      **cfg.retrain.space_options})
        retrain_space = retrain_space.bind(data.input_shape, data.num_classes)
        if retrain_space.choices != model.space.choices:
            raise ValueError(f"config retrain.space_options = {cfg.retrain.space_options}: the "
                             "retrained space must keep the searched space's choices")
    for section, size in (("supernet", len(data.x_train) // (2 if configs.is_gradient(
                                                              cfg.supernet.method) else 1)),
                          ("retrain", len(data.x_train))):
        batch = getattr(cfg, section).batch_size
        if batch > size:
            raise ValueError(f"config {section}.batch_size = {batch} exceeds the {size} "
                             f"training examples available")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_text = configs.dump(cfg)
    previous = run_dir / "config.yaml"
    if previous.exists() and previous.read_text() != config_text:
        raise ValueError(f"run dir {str(run_dir)!r} holds a different config; pass another --out "
                         "(or delete it)")
    write_text_atomic(previous, config_text)
    log = MetricsLog(run_dir)
    cost: dict = {}
    try:
        echo(data.summary())

        # ---------------------------------------------------------------- supernet phase
        t0 = time.perf_counter()
        phase = SupernetPhase(cfg, space, data, run_dir, constraint, model, sparse_setup)
        echo(f"space {space.name}: {space.size():,} architectures; supernet "
             f"{nas.count_params(phase.model):,} parameters")
        if phase.restore():
            echo(f"resumed the supernet phase at epoch {phase.epoch}/{cfg.supernet.epochs}")
        bar = tqdm(total=cfg.supernet.epochs, initial=phase.epoch, desc=f"supernet "
                   f"({cfg.supernet.method})", unit="epoch", disable=not progress)
        while phase.epoch < cfg.supernet.epochs:
            record = phase.run_epoch()
            log.log("supernet", phase.epoch, **record)
            phase.save()
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in record.items()})
        bar.close()
        if sparse_setup is not None:
            sparse_setup.measure(phase.masked_params())
            _check_measured_budget(space, cfg.search, sparse_setup)
        cost["supernet_seconds"] = round(time.perf_counter() - t0, 1)
        cost["supernet_steps"] = phase.steps

        # ---------------------------------------------------------------- search phase
        t0 = time.perf_counter()
        state = phase.state
        calib = data.x_train[np.random.default_rng(cfg.seed).permutation(len(data.x_train))
                             [:cfg.search.calibration]]
        evaluator = PopulationEvaluator(phase.graphdef, phase.masked_params(), state["rest"], space,
                                        data.x_val, data.y_val, calib_x=calib,
                                        chunk=min(cfg.search.generation, 64),
                                        levels=sparse_setup.levels if sparse_setup else None)
        ctrl = _controller(cfg, space, constraint)
        evaluated: list[tuple[dict, float]] = []
        if ctrl is None:
            arch = gradient.discretise(space, state["alpha"])
            if constraint is not None and not constraint(arch):
                echo("warning: the argmax arch is outside the budget; it is kept, as argmax "
                     "search has no constraint")
            evaluated = [(arch, evaluator.evaluate([arch])[0])]
            probs = {k: np.round(np.asarray(jax.nn.softmax(v)), 3).tolist()
                     for k, v in state["alpha"].items()}
            log.log("search", 1, evaluations=1, best_accuracy=evaluated[0][1])
            write_json_atomic(run_dir / "search_state.json", {
                "alpha": {k: np.asarray(v).tolist() for k, v in state["alpha"].items()},
                "alpha_softmax": probs, "arch": arch})
            cost["search_evaluations"] = 1
        else:
            state_path = run_dir / "search_state.json"
            objectives = cfg.search.objectives if ctrl.name == "nsga2" else ["accuracy"]
            if state_path.exists():
                ctrl.load_state_dict(json.loads(state_path.read_text()))
                echo(f"resumed the search after {len(ctrl.history)} evaluations")
            elif phase.anchors:
                # The sandwich's max and min nets are trained on every batch: the best-trained
                # sub-networks start the population.
                anchors = [a for a in phase.anchors if constraint is None or constraint(a)]
                accuracies = evaluator.evaluate(anchors)
                ctrl.tell(anchors, _scores(space, anchors, accuracies, objectives, sparse_setup))
            bar = tqdm(total=cfg.search.evaluations, initial=len(ctrl.history),
                       desc=f"search ({ctrl.name})", unit="arch", disable=not progress)
            while len(ctrl.history) < cfg.search.evaluations:
                n = min(cfg.search.generation, cfg.search.evaluations - len(ctrl.history))
                archs = ctrl.ask(n)
                accuracies = evaluator.evaluate(archs)
                ctrl.tell(archs, _scores(space, archs, accuracies, objectives, sparse_setup))
                best = max(row[0] for _, row in ctrl.history)
                log.log("search", len(ctrl.history), evaluations=len(ctrl.history),
                        best_accuracy=best, generation_mean=float(np.mean(accuracies)))
                write_json_atomic(state_path, ctrl.state_dict())
                bar.update(n)
                bar.set_postfix(best=round(best, 4))
            bar.close()
            evaluated = [(a, row[0]) for a, row in ctrl.history]
            cost["search_evaluations"] = len(evaluated)
        cost["search_seconds"] = round(time.perf_counter() - t0, 1)

        # ---------------------------------------------------------------- retrain phase
        t0 = time.perf_counter()
        candidates = _top_candidates(space, evaluated, cfg.search.candidates)
        rc = cfg.retrain
        train_cfg = TrainConfig.from_config(cfg)
        results = []
        if rc.mode == "finetune":
            nnx.update(phase.model, phase.masked_params(), state["rest"])
        for i, (arch, supernet_acc) in enumerate(candidates):
            structural = space.structure(arch)
            size = (f"{sparse_setup.nonzero(space, arch):,} nonzero of {space.params(arch):,} params"
                    if sparse_setup else f"{space.params(arch):,} params")
            echo(f"retrain {i + 1}/{len(candidates)} ({rc.mode}): {json.dumps(arch)} — "
                 f"{size}, supernet val accuracy {supernet_acc:.4f}")
            record = {"supernet_accuracy": supernet_acc, "params": space.params(arch)}
            if rc.mode == "scratch":
                model = nas.supernet(retrain_space.fix(structural), seed=cfg.seed)
                inherited = None
            else:
                model = nas.extract(_at_sparsity(phase, space, arch), structural)
                inherited = _nonzero_masks(model, sparse_setup)
            result = train(model, data, train_cfg, progress=progress,
                           sparse=SparseTraining("static", masks=inherited) if inherited else None)
            outcome = Retrained(result.model, result.val_accuracy, result.test_accuracy,
                                result.val_accuracy, result.test_accuracy)
            if sparse_setup is not None:
                outcome.pruned = prune(
                    result.model, data, sparse_setup.names, sparse_setup.keep(space, arch),
                    allocation=cfg.sparse.allocation, grid=cfg.sparse.grid, rate=cfg.sparse.prune_rate,
                    calibration=cfg.sparse.calibration, finetune=_finetune_config(cfg),
                    final=_finetune_config(cfg, cfg.sparse.final_epochs), masks=result.masks,
                    progress=progress, seed=cfg.seed)
                outcome.model = outcome.pruned.model
                outcome.val_accuracy = outcome.pruned.val_accuracy
                outcome.test_accuracy = outcome.pruned.test_accuracy
                record.update(dense_val_accuracy=result.val_accuracy,
                              dense_test_accuracy=result.test_accuracy,
                              nonzero=sparse_setup.nonzero(space, arch))
            log.log("retrain", i + 1, **record, val_accuracy=outcome.val_accuracy,
                    test_accuracy=outcome.test_accuracy, seconds=round(result.seconds, 1))
            results.append((arch, supernet_acc, outcome))
        arch, supernet_acc, chosen = max(results, key=lambda item: item[2].val_accuracy)
        structural = space.structure(arch)
        cost["retrain_seconds"] = round(time.perf_counter() - t0, 1)
        cost["retrained_candidates"] = len(results)
        cost["total_seconds"] = round(time.perf_counter() - started, 1)

        # ---------------------------------------------------------------- export + report
        best_dir = run_dir / "best"
        best_dir.mkdir(exist_ok=True)
        _write_orbax(best_dir / "weights", chosen.model)
        info = {
            "space": space.name, "choices": structural,
            "params": retrain_space.params(structural), "flops": retrain_space.flops(structural),
            "metrics": {"test_accuracy": chosen.test_accuracy, "val_accuracy": chosen.val_accuracy,
                        "supernet_val_accuracy": supernet_acc},
            "search": {"method": cfg.supernet.method,
                       "controller": ctrl.name if ctrl is not None else "argmax",
                       "budget": {k: getattr(cfg.search, k) for k in
                                  ("max_params", "min_params", "max_flops")},
                       "candidates": [{"choices": a, "params": space.params(a),
                                       "supernet_val_accuracy": s, "val_accuracy": r.val_accuracy,
                                       "test_accuracy": r.test_accuracy,
                                       "dense_test_accuracy": r.dense_test_accuracy}
                                      for a, s, r in results]},
            "cost": cost, "data": cfg.data.name, "retrain": dataclasses.asdict(train_cfg),
            "space_config": retrain_space.to_dict(), "engine": f"jaxnas {VERSION}",
        }
        if sparse_setup is not None:
            info.update(_sparsity_info(cfg, space, arch, sparse_setup, chosen))
            info["export"] = _export_sparse(best_dir, chosen.model, list(chosen.pruned.masks), info)
        write_json_atomic(best_dir / "arch.json", info)
        plots.trajectory(run_dir / "trajectory.png", log.phase("supernet"), log.phase("search"),
                         title=f"{space.name} · {cfg.supernet.method} · "
                         f"{info['search']['controller']}")
        size_name = "nonzero" if sparse_setup else "params"
        plots.pareto(run_dir / "pareto.png",
                     [(_cost(space, a, size_name, sparse_setup), acc) for a, acc in evaluated],
                     (_cost(space, arch, size_name, sparse_setup), supernet_acc),
                     budget=cfg.search.max_nonzero if sparse_setup else cfg.search.max_params,
                     xlabel="nonzero parameters" if sparse_setup else "parameters")
        summary = Summary(arch, info["params"], info["flops"], chosen.val_accuracy,
                          chosen.test_accuracy, cost, run_dir, info.get("nonzero_params"),
                          chosen.dense_test_accuracy if sparse_setup else None,
                          len(chosen.pruned.rounds) if sparse_setup else None)
        report = _report(summary, space, cfg, state.get("alpha"))
        write_text_atomic(run_dir / "report.txt", report)
        echo(report)
        return summary
    finally:
        log.close()


def cheapest_decisions(space, arch) -> list[str]:
    """The decisions of `arch` on their cheapest option: fewest parameters with the
    other decisions held (parameter-free ops, smallest widths). Decisions whose
    options all cost the same are never counted."""
    out = []
    for name, options in space.choices.items():
        costs = [space.params({**arch, name: option}) for option in options]
        if min(costs) < max(costs) and costs[options.index(arch[name])] == min(costs):
            out.append(name)
    return out


def _collapse_lines(space, arch, alpha) -> list[str]:
    """How decided the gradient search was, and a warning when it drifted toward the
    cheapest arch (DARTS' failure mode: parameter-free ops win the edges)."""
    confidence = [float(np.max(np.asarray(jax.nn.softmax(v)))) for v in alpha.values()]
    lines = [f"  α: argmax holds {np.mean(confidence):.0%} of the softmax mass on average "
             f"(min {min(confidence):.0%}) over {len(confidence)} decisions"]
    cheapest = cheapest_decisions(space, arch)
    priced = [n for n, o in space.choices.items() if len({space.params({**arch, n: v}) for v in o}) > 1]
    if priced and 2 * len(cheapest) >= len(priced):
        lines.append(f"  warning: {len(cheapest)} of {len(priced)} decisions chose their cheapest option "
                     f"(parameter-free ops, smallest widths: {', '.join(cheapest)}), the collapse "
                     "gradient searches are known for; compare with a sampled search")
    return lines


def _report(summary: Summary, space, cfg: configs.Config, alpha=None) -> str:
    c = summary.cost
    budget = ", ".join(f"{k} ≤ {v:,}" if k.startswith("max") else f"{k} ≥ {v:,}"
                       for k, v in (("max_params", cfg.search.max_params),
                                    ("min_params", cfg.search.min_params),
                                    ("max_flops", cfg.search.max_flops)) if v is not None)
    lines = [
        f"best arch ({space.name}): {json.dumps(summary.arch)}",
        f"  params {summary.params:,}, FLOPs {summary.flops:,}" + (f"  (budget: {budget})"
                                                                   if budget else ""),
        f"  retrained {cfg.retrain.epochs} epochs ({cfg.retrain.mode}): val accuracy "
        f"{summary.val_accuracy:.4f}, test accuracy {summary.test_accuracy:.4f}",
        *([f"  sparse: {summary.nonzero_params:,} nonzero of {summary.params:,} parameters "
           f"({1 - summary.nonzero_params / summary.params:.1%} zeros; allocation "
           f"{cfg.sparse.allocation}, {summary.prune_rounds} rounds); the dense pick before pruning "
           f"tested {summary.dense_test_accuracy:.4f}"] if summary.nonzero_params is not None else []),
        *(_collapse_lines(space, summary.arch, alpha) if alpha is not None else []),
        f"search cost: supernet {c['supernet_seconds']:.0f} s ({cfg.supernet.epochs} epochs, "
        f"{c['supernet_steps']:,} steps, {cfg.supernet.method}), search "
        f"{c['search_seconds']:.0f} s ({c['search_evaluations']:,} archs evaluated with inherited "
        f"weights), retrain {c['retrain_seconds']:.0f} s ({c['retrained_candidates']} "
        f"candidates); total {c['total_seconds']:.0f} s",
        f"wrote {summary.run_dir / 'best'} (arch.json + Orbax weights), trajectory.png, pareto.png",
    ]
    return "\n".join(lines)
