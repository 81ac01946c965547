"""Gradient-matching splits on cnn1d / MNIST-1D: ranking, picks and step speed.

Ranking and picks: one supernet against split searches with 2 and 4 sub-supernets
at equal total supernet epochs (the sum over sub-supernets of the epochs each is
trained: 20 in every setting), each with and without `search.max_params = 5000`,
over `seeds` seeds. For each run: Kendall τ of its inherited-weight scores
(each table arch scored by the sub-supernet holding it) against the shipped
table's accuracies (`nas bench supernet`), over all the table's archs or those
within the budget, and the test accuracy of its retrained pick. Printed as
mean ± sd over the seeds.

Speed: steps per second of the sub-supernets' training after a split, all of them
in one vmapped step (`split.training: joint`) against one after another through
one compiled step (`sequential`), for 2 and 4 sub-supernets, sampled (sandwich)
and gradient (DrNAS) supernets, measured side by side in this process.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from scipy import stats

TABLE = Path(__file__).parent / "tables" / "cnn1d_mnist1d.csv"
# (supernet.epochs, split.epochs): 20 sub-supernet epochs in all for each setting.
SETTINGS = {"one supernet": (20, []), "2 sub-supernets": (15, [10]), "4 sub-supernets": (12, [8, 10])}
BASE = {
    "space": {"name": "cnn1d", "options": {"norm": "batch"}}, "data": {"name": "mnist1d"},
    "supernet": {"method": "sandwich"},
    "search": {"controller": "aging", "evaluations": 300, "candidates": 2},
    "retrain": {"space_options": {"norm": "none"}, "epochs": 50},
    "checkpoint": {"every_seconds": None},
}


def _config(seed: int, epochs: int, split: list, budget: int | None, evaluations: int,
            retrain_epochs: int, candidates: int) -> dict:
    return {**BASE, "seed": seed, "supernet": {**BASE["supernet"], "epochs": epochs},
            "search": {**BASE["search"], "max_params": budget, "evaluations": evaluations,
                       "candidates": candidates},
            "retrain": {**BASE["retrain"], "epochs": retrain_epochs}, "split": {"epochs": split}}


def _ranking_and_pick(run_dir: Path, table) -> dict:
    from launch.bench.supernet import supernet_scores
    scores, within, _ = supernet_scores(run_dir, table, progress=False)
    info = json.loads((run_dir / "best" / "arch.json").read_text())
    out = {"tau_all": float(stats.kendalltau(scores, table.mean).statistic),
           "test": info["metrics"]["test_accuracy"], "sub_supernets": info["cost"]["sub_supernets"],
           "supernet_epochs": info["cost"]["supernet_epochs"]}
    if not within.all():
        out["tau_budget"] = float(stats.kendalltau(scores[within], table.mean[within]).statistic)
    return out


def ranking(seeds: int = 2, evaluations: int = 300, retrain_epochs: int = 50, candidates: int = 2) -> None:
    from launch import config as configs
    from launch.bench.table import load
    from launch.run import run_search
    table = load(TABLE)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Seed by seed: an interrupted benchmark has printed whole seeds.
        for seed in range(seeds):
            for budget in (None, 5000):
                for name, (epochs, split) in SETTINGS.items():
                    cfg = configs.from_dict(_config(seed, epochs, split, budget, evaluations, retrain_epochs,
                                                    candidates))
                    run_dir = Path(tmp) / f"{name}-{budget}-{seed}".replace(" ", "_")
                    started = time.perf_counter()
                    if run_search(cfg, run_dir, progress=False, echo=lambda text: None) is None:
                        raise SystemExit(f"the search in {run_dir} was stopped by a signal")
                    result = _ranking_and_pick(run_dir, table)
                    result["seconds"] = time.perf_counter() - started
                    rows.setdefault((budget, name), []).append(result)
                    shown = yaml.safe_dump({k: round(v, 4) for k, v in result.items()},
                                           default_flow_style=True)
                    print(f"  {name}, budget {budget}, seed {seed}: {shown.strip()}", flush=True)
    print(f"\nsplits on cnn1d/MNIST-1D, {seeds} seeds (mean ± sd), equal total supernet epochs (20), "
          f"{evaluations} evaluations, top {candidates} retrained {retrain_epochs} epochs:")
    print(f"{'budget':<8} {'setting':<17} {'τ all archs':>13} {'τ in budget':>13} {'pick test acc':>14} "
          f"{'seconds':>8}")
    for (budget, name), results in rows.items():
        def cell(key):
            values = [r[key] for r in results if key in r]
            return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "—"
        print(f"{str(budget):<8} {name:<17} {cell('tau_all'):>13} {cell('tau_budget'):>13} "
              f"{cell('test'):>14} {np.mean([r['seconds'] for r in results]):>8.0f}")


def _split_context(tmp: Path, method: str, training: str, splits: int, decisions=()):
    from launch import config as configs
    from launch.context import setup
    cfg = configs.from_dict({
        **{k: v for k, v in BASE.items() if k in ("space", "data")}, "seed": 0,
        "supernet": {"method": method, "epochs": 12},
        "search": {"controller": "aging" if method == "sandwich" else "argmax"},
        "split": {"epochs": [8, 10][:splits], "batches": 1, "training": training,
                  "decisions": list(decisions)}})
    return setup(cfg, tmp / f"{method}-{training}-{splits}", progress=False, echo=lambda text: None)


def split_rates(tmp: Path, method: str, splits: int, repeats: int, decisions=()) -> dict[str, float]:
    """{"joint": …, "sequential": …}: steps per second of the 2^`splits` sub-supernets' training
    after the splits (median of `repeats` steps after two warm-up steps), both measured here.
    `decisions`: the choices a split may cut (default: every one; fewer compile less)."""
    from launch.checkpoints import RunState
    from launch.phases import supernet
    rates = {}
    for training in ("joint", "sequential"):
        ctx = _split_context(tmp, method, training, splits, decisions)
        arrays, meta = supernet.init(ctx)
        state = RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
        trainer = supernet._Trainer(ctx, meta)
        stepper = supernet._stepper(ctx, trainer, arrays, meta)
        for _ in range(splits):
            stepper = supernet._split_round(ctx, state, trainer, stepper, arrays,
                                            step=trainer.steps_per_epoch)
        x, y = next(trainer.batches)
        xv, yv = next(trainer.arch_batches) if ctx.gradient else (None, None)
        times = []
        for i in range(repeats + 2):  # two warm-up steps (compilation)
            started = time.perf_counter()
            loss, _ = stepper.step(x, y, xv, yv, jax.random.key(i), jnp.float32(0.5))
            jax.block_until_ready((loss, stepper.state))
            times.append(time.perf_counter() - started)
        rates[training] = 1 / np.median(times[2:])
    return rates


def speed(repeats: int = 20) -> None:
    print("\nsub-supernet training after the split (cnn1d, batch 128): steps per second "
          f"(median of {repeats})")
    print(f"{'method':<10} {'sub-supernets':>13} {'joint':>8} {'sequential':>11} {'joint / sequential':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("sandwich", "drnas"):
            for splits in (1, 2):
                rates = split_rates(Path(tmp), method, splits, repeats)
                print(f"{method:<10} {2 ** splits:>13} {rates['joint']:>8.2f} {rates['sequential']:>11.2f} "
                      f"{rates['joint'] / rates['sequential']:>19.2f}")


def run(seeds: int = 2, quick: bool = False, repeats: int = 20) -> None:
    speed(5 if quick else repeats)
    if quick:
        ranking(1, evaluations=60, retrain_epochs=5, candidates=1)
    else:
        ranking(seeds)
