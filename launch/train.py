"""Train one fixed architecture from scratch: the baseline every search is compared with.

The training step is a pure jitted function of (params, batch statistics,
optimizer state, batch); the model's own architecture (`model.space.encode`)
is data, so a supernet with an arch and its extracted compact model train
through the same code.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from launch.data import Batches, Dataset
from search.engine import cross_entropy


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 100                 # passes over the training split
    batch_size: int = 128             # examples per step
    learning_rate: float = 1e-2       # AdamW peak learning rate (cosine decay to 0)
    warmup_epochs: float = 2.0        # linear warm-up before the cosine
    weight_decay: float = 1e-4        # AdamW decoupled weight decay
    seed: int = 0                     # batch order

    def __post_init__(self):
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"train.{field} must be ≥ 1, got {getattr(self, field)}")
        for field in ("learning_rate", "warmup_epochs", "weight_decay"):
            if getattr(self, field) < 0:
                raise ValueError(f"train.{field} must be ≥ 0, got {getattr(self, field)}")


@dataclasses.dataclass
class TrainResult:
    model: nnx.Module
    history: list[dict]
    val_accuracy: float
    test_accuracy: float
    seconds: float


def make_optimizer(cfg: TrainConfig, steps: int, warmup_steps: int) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, max(warmup_steps, 1), max(steps, warmup_steps + 1))
    return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def accuracy(model, x: np.ndarray, y: np.ndarray, arch=None, batch_size: int = 500) -> float:
    """Inference-mode accuracy. Batches are padded to one size: a single compilation."""
    if len(x) == 0:
        return float("nan")
    batch_size = min(batch_size, len(x))
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        n = len(xb)
        if n < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - n,) + xb.shape[1:], xb.dtype)])
        predictions = np.asarray(jnp.argmax(model(xb, arch), -1))[:n]
        correct += int((predictions == y[start:start + n]).sum())
    return correct / len(x)


def train(model: nnx.Module, data: Dataset, cfg: TrainConfig, arch=None,
          progress: bool = True) -> TrainResult:
    """Train `model` (at `arch`, or its only architecture) on `data.train`; report val/test."""
    started = time.perf_counter()
    probs = model.space.encode(arch)
    batches = Batches(data.x_train, data.y_train, cfg.batch_size, seed=cfg.seed)
    steps = cfg.epochs * batches.steps_per_epoch
    tx = make_optimizer(cfg, steps, int(cfg.warmup_epochs * batches.steps_per_epoch))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, rest, opt_state, x, y):
        def loss_fn(params):
            net = nnx.merge(graphdef, params, rest, copy=True)
            loss = cross_entropy(net.forward(x, probs, train=True), y)
            return loss, nnx.split(net, nnx.Param, ...)[2]
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    history = []
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        losses = []
        for _ in range(batches.steps_per_epoch):
            x, y = next(batches)
            params, rest, opt_state, loss = step(params, rest, opt_state, x, y)
            losses.append(loss)
        nnx.update(model, params, rest)
        record = {"epoch": epoch + 1, "loss": float(jnp.mean(jnp.stack(losses)))}
        if len(data.x_val) and (epoch + 1 == cfg.epochs or (epoch + 1) % max(cfg.epochs // 10, 1) == 0):
            record["val_accuracy"] = accuracy(model, data.x_val, data.y_val, arch)
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
    val_acc = accuracy(model, data.x_val, data.y_val, arch)
    test_acc = accuracy(model, data.x_test, data.y_test, arch)
    return TrainResult(model, history, val_acc, test_acc, time.perf_counter() - started)
