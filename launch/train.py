"""Train one fixed architecture from scratch: the baseline every search is compared with.

The training step is a pure jitted function of (params, batch statistics,
optimizer state, batch); the model's own architecture (`model.space.encode`)
is data, so a supernet with an arch and its extracted compact model train
through the same code. With `sparse=SparseTraining(...)` the optimizer is
wrapped by a sparse updater (`sparse.wrap`): the forward runs at the masked
weights (so its gradient is the dense one RigL/GraNet grow by) and the
trained model holds exact zeros where pruned.

Training and evaluation are data parallel over every device (`parallel`,
`search.parallel`): weights and optimizer state replicated, batch rows split,
one global-view step. With several processes each draws the same batches and
feeds its own rows; only process 0 shows progress.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import sparse as sparse_lib
from launch.config import Config, RetrainConfig
from launch.data import Dataset, Split, in_order
from search import engine
from search.parallel import DataParallel, data_parallel, pad_rows, round_up
from sparse import masks as masklib


class Diverged(ValueError):
    """A training loss turned non-finite: the run stops (a bad-input error, one line)
    instead of exporting NaN weights."""


def check_finite(loss: float, where: str, learning_rate: float) -> float:
    """`loss`, or `Diverged` naming `where` when it is NaN or infinite."""
    if not math.isfinite(loss):
        raise Diverged(f"{where}: the mean training loss is {loss}; training diverged (learning rate "
                       f"{learning_rate:g}): lower the learning rate or check the inputs for extreme "
                       "values. Nothing was exported; earlier checkpoints are kept")
    return loss


@dataclasses.dataclass
class TrainConfig:
    """One training run; the defaults are the config's `retrain` section."""
    epochs: int = RetrainConfig.epochs                # passes over the training split
    batch_size: int = RetrainConfig.batch_size        # examples per step
    learning_rate: float = RetrainConfig.learning_rate  # peak learning rate (cosine decay to 0)
    warmup_epochs: float = RetrainConfig.warmup_epochs  # linear warm-up before the cosine
    weight_decay: float = RetrainConfig.weight_decay  # AdamW: decoupled; SGD: L2 added to the gradient
    seed: int = 0                     # batch order
    optimizer: str = "adamw"          # adamw | sgd (momentum below)
    momentum: float = 0.9

    @classmethod
    def from_config(cls, cfg: Config) -> "TrainConfig":
        """The config's `retrain` section, batches ordered by its `seed`."""
        rc = cfg.retrain
        return cls(epochs=rc.epochs, batch_size=rc.batch_size, learning_rate=rc.learning_rate,
                   warmup_epochs=rc.warmup_epochs, weight_decay=rc.weight_decay, seed=cfg.seed)

    def __post_init__(self):
        if self.optimizer not in engine.OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {list(engine.OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"train.{field} must be ≥ 1, got {getattr(self, field)}")
        for field in ("learning_rate", "warmup_epochs", "weight_decay"):
            if getattr(self, field) < 0:
                raise ValueError(f"train.{field} must be ≥ 0, got {getattr(self, field)}")


@dataclasses.dataclass
class SparseTraining:
    """Train sparse: updater `method` (`sparse.updaters.names()`) with its `options`
    (its `total_steps` is the run's), over every prunable kernel except, if asked,
    the first and last layers. `masks` starts from given masks (fine-tuning a
    pruned model: with the `static` method they stay fixed). A sparse start from
    the updater's own random masks rescales the initial weights
    (`sparse.masks.rescale`) unless `rescale` is False."""
    method: str = "rigl"
    options: dict = dataclasses.field(default_factory=dict)
    first_layer: bool = True
    last_layer: bool = True
    masks: dict | None = None
    rescale: bool = True


@dataclasses.dataclass
class TrainResult:
    model: nnx.Module
    history: list[dict]
    val_accuracy: float
    test_accuracy: float
    seconds: float
    masks: dict | None = None         # final sparse masks (sparse training only)


def prunable_kernels(model: nnx.Module, probs, first_layer: bool = True,
                     last_layer: bool = True) -> list[str]:
    """`model`'s prunable kernels in the order its forward at `probs` uses them."""
    graphdef, params, rest = engine.split(model)
    x = jnp.zeros((1,) + tuple(model.space.input_shape), jnp.float32)

    def forward(p):
        return engine.apply(graphdef, p, rest, x, probs, train=False)[0]
    return masklib.select(params, forward, first_layer=first_layer, last_layer=last_layer)


def sparse_optimizer(tx, spec: SparseTraining, model: nnx.Module, probs, steps: int, seed: int):
    """(wrapped optimizer, prunable kernel names) for `model` at `probs`."""
    if spec.masks is not None:
        names = list(spec.masks)
    else:
        names = prunable_kernels(model, probs, spec.first_layer, spec.last_layer)
    options = {"seed": seed, **spec.options, "total_steps": steps}
    return sparse_lib.wrap(tx, sparse_lib.updaters.get(spec.method, **options), names), names


@functools.partial(jax.jit, static_argnums=0)
def _correct(graphdef, params, rest, x, y, probs):
    logits, _ = engine.apply(graphdef, params, rest, x, probs, train=False)
    return engine.accuracy_count(logits, y)


EVAL_BATCH = 500  # examples per inference call


def accuracy(model, x: np.ndarray, y: np.ndarray, arch=None, batch_size: int = EVAL_BATCH,
             parallel: DataParallel | None = None) -> float:
    """Inference-mode accuracy on arrays `x`, `y` (see `batch_accuracy`)."""
    batches = ((x[start:start + batch_size], y[start:start + batch_size])
               for start in range(0, len(x), batch_size))
    return batch_accuracy(model, batches, len(x), arch, batch_size, parallel)


def split_accuracy(model, data: Dataset, split: Split, arch=None,
                   parallel: DataParallel | None = None) -> float:
    """Inference-mode accuracy on `split` of `data`, read in order, batch by batch, scaled."""
    return batch_accuracy(model, in_order(split, EVAL_BATCH, data.scaling), len(split), arch,
                          EVAL_BATCH, parallel)


def batch_accuracy(model, batches, examples: int, arch=None, batch_size: int = EVAL_BATCH,
                   parallel: DataParallel | None = None) -> float:
    """Inference-mode accuracy over `batches` ((x, y) of at most `batch_size` rows, `examples`
    in all, the same in every process), split over `parallel`'s devices (default: all).
    Batches are padded to one size, a multiple of the device count: a single compilation.
    Padding rows are labelled -1, which no argmax matches."""
    if examples == 0:
        return float("nan")
    parallel = parallel or data_parallel()
    graphdef, params, rest = engine.split(model)
    params, rest, probs = parallel.replicate((params, rest, model.space.encode(arch)))
    size = round_up(min(batch_size, examples), parallel.num_devices)
    correct = 0
    for x, y in batches:
        xb = pad_rows(np.asarray(x, np.float32), size)
        yb = pad_rows(np.asarray(y, np.int32), size, fill=-1)
        correct += int(_correct(graphdef, params, rest, parallel.shard(xb), parallel.shard(yb), probs))
    return correct / examples


def train(model: nnx.Module, data: Dataset, cfg: TrainConfig, arch=None,
          progress: bool = True, sparse: SparseTraining | None = None,
          parallel: DataParallel | None = None, stop: Callable[[], None] | None = None) -> TrainResult:
    """Train `model` (at `arch`, or its only architecture) on `data.train`, data parallel
    over `parallel` (default: every device); report val/test. `stop()` is called between
    steps: it raises to abandon the training (a run asked to stop)."""
    started = time.perf_counter()
    parallel = parallel or data_parallel()
    parallel.check_batch("train.batch_size", cfg.batch_size)
    probs = model.space.encode(arch)
    batches = data.batches(data.train, cfg.batch_size, seed=cfg.seed)
    steps = cfg.epochs * batches.steps_per_epoch
    tx = engine.optimizer(cfg.optimizer, cfg.learning_rate, steps,
                          warmup_steps=int(cfg.warmup_epochs * batches.steps_per_epoch),
                          weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if sparse is not None:
        tx, _ = sparse_optimizer(tx, sparse, model, probs, steps, cfg.seed)
    graphdef, params, rest = engine.split(model)
    opt_state = tx.init(params)
    if sparse is not None and sparse.masks is not None:
        opt_state = opt_state._replace(masks={n: jnp.asarray(m, bool) for n, m in sparse.masks.items()})
    masked = (lambda p, s: masklib.apply(p, s.masks)) if sparse is not None else (lambda p, s: p)
    if sparse is not None and sparse.masks is None and sparse.rescale:
        params = masklib.rescale(params, opt_state.masks)
    params = masked(params, opt_state)
    nnx.update(model, params)
    params, rest, opt_state = parallel.replicate((params, rest, opt_state))

    @jax.jit
    def step(params, rest, opt_state, x, y):
        def loss_fn(params):
            logits, new_rest = engine.apply(graphdef, params, rest, x, probs, train=True)
            return engine.cross_entropy(logits, y), new_rest
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(masked(params, opt_state))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    history = []
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not (progress and parallel.is_writer))
    for epoch in bar:
        losses = []
        for _ in range(batches.steps_per_epoch):
            if stop is not None:
                stop()
            x, y = next(batches)
            params, rest, opt_state, loss = step(params, rest, opt_state, parallel.shard_rows(x),
                                                 parallel.shard_rows(y))
            losses.append(loss)
        nnx.update(model, params, rest)
        record = {"epoch": epoch + 1, "loss": check_finite(float(jnp.mean(jnp.stack(losses))),
                                                           f"training, epoch {epoch + 1}", cfg.learning_rate)}
        if len(data.val) and (epoch + 1 == cfg.epochs or (epoch + 1) % max(cfg.epochs // 10, 1) == 0):
            record["val_accuracy"] = split_accuracy(model, data, data.val, arch, parallel=parallel)
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
    batches.close()
    val_acc = split_accuracy(model, data, data.val, arch, parallel=parallel)
    test_acc = split_accuracy(model, data, data.test, arch, parallel=parallel)
    masks = {n: np.asarray(m) for n, m in opt_state.masks.items()} if sparse is not None else None
    return TrainResult(model, history, val_acc, test_acc, time.perf_counter() - started, masks)
