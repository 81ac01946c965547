"""What checkpointing costs the supernet phase: the time a save blocks the training loop
(device-to-host copy, waiting for the previous save, recording its files), as a fraction
of the epoch time, with one save per epoch (far more often than the default policy of
one save every 300 s).

Runs the supernet phase of examples/quick.yaml (cnn1d on MNIST-1D, sandwich rule) in a
temporary run dir, timing every `Checkpoints.save` call.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from launch import config as configs
from launch import context
from launch.checkpoints import RunState
from launch.phases import supernet

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "quick.yaml"


SPACES = (("cnn1d", {"norm": "batch"}), ("mlp", {"widths": [256, 512, 1024]}))


def run(epochs: int = 4, spaces_and_options=SPACES) -> list[dict]:
    rows = []
    print(f"checkpoint cost in the supernet phase, one save per epoch, {epochs} epochs, "
          f"{jax.devices()[0].platform}")
    print(f"{'space':<8} {'state MB':>9} {'epoch s':>8} {'save s':>8} {'fraction':>9}")
    for name, options in spaces_and_options:
        overrides = [f"space.name={name}", f"space.options={options}", f"supernet.epochs={epochs}",
                     "checkpoint.every_seconds=null"]
        if name == "mlp":  # a wider state (about 3.5 M parameters) on the 8×8 digits
            overrides += ["data.name=digits", "retrain.space_options={}"]
        cfg = configs.load(CONFIG, overrides)
        with tempfile.TemporaryDirectory() as tmp:
            ctx = context.setup(cfg, Path(tmp) / "run", progress=False, echo=lambda *_: None)
            arrays, meta = supernet.init(ctx)
            steps_per_epoch = len(ctx.data.train) // cfg.supernet.batch_size
            ctx.checkpoints.policy.every_steps = steps_per_epoch
            state = RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
            spans = []  # (start, end) of every save: one per epoch
            save = ctx.checkpoints.save

            def timed_save(*args, save=save, spans=spans, **kwargs):
                start = time.perf_counter()
                step = save(*args, **kwargs)
                spans.append((start, time.perf_counter()))
                return step
            ctx.checkpoints.save = timed_save
            supernet.run(ctx, state)
            ctx.close()
            size = sum(x.nbytes for x in jax.tree.leaves(arrays)) / 1e6
        # The first epoch includes compilation: epochs are timed between consecutive saves.
        epoch = float(np.median([b[0] - a[1] for a, b in zip(spans, spans[1:])]))
        per_save = float(np.median([end - start for start, end in spans[1:]]))
        rows.append({"space": name, "state_mb": size, "epoch_s": epoch, "save_s": per_save,
                     "fraction": per_save / epoch})
        print(f"{name:<8} {size:>9.1f} {epoch:>8.2f} {per_save:>8.3f} {per_save / epoch:>9.2%}")
    return rows


if __name__ == "__main__":
    run()
