"""The accelerator check: one command, ≤ 8 minutes on one H100, that measures what the GPU/TPU
defaults are set from (`make bench-device`, or `python -m benchmarks.device [--quick]`).

1. Supernet step (the sandwich rule a search trains with: max, min and 2 random archs per
   batch, AdamW) on `vit` (AutoFormer-T widths on 32×32 images) and `convnet` in float32
   and bfloat16 (`precision.compute`): median step time, the step's FLOPs from XLA's own cost
   analysis of the compiled program, the achieved FLOP/s and the MFU against the device's
   peak (`PEAK_FLOPS`; "unknown" for other devices, CPUs among them).
2. Population scoring with inherited weights (`search.population`): archs per second for
   each chunk size (archs per vmapped call; `population_chunk` decides it in a search).
3. Split training after a split (`split.training`): joint (one vmapped step over the
   sub-supernets) against sequential, steps per second (`benchmarks.splits`).
4. Data-parallel sampled steps per second over 1, 2, 4, … local devices (`benchmarks.scale`).
5. Input pipeline throughput (`benchmarks.data`): examples per second of the streamed
   batches alone (ArrayRecord shards of 32×32×3 images, random crop and flip) per number of
   worker processes.

Writes every number to JSON (`--out`, default `device_bench.json`) and prints a table.
`--quick` runs the same code at small sizes (a few tens of seconds on a CPU), which is what
the test suite runs to keep this command working.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nas
import spaces
from benchmarks import scale, splits
from search import engine, oneshot
from search.parallel import round_up
from search.population import PopulationEvaluator

# Dense peak FLOP/s per device kind (lower-cased substring of `device_kind`), from the vendors'
# data sheets. float32 on NVIDIA GPUs is the TF32 tensor-core peak: XLA's default matmul
# precision runs float32 products as TF32 there. TPUs publish no float32 peak.
PEAK_FLOPS = {
    "h100 pcie": {"bfloat16": 756e12, "float32": 378e12},
    "h100": {"bfloat16": 989e12, "float32": 494.5e12},
    "h200": {"bfloat16": 989e12, "float32": 494.5e12},
    "a100": {"bfloat16": 312e12, "float32": 156e12},
    "tpu v4": {"bfloat16": 275e12, "float32": None},
    "tpu v5 lite": {"bfloat16": 197e12, "float32": None},
    "tpu v5e": {"bfloat16": 197e12, "float32": None},
}
DTYPES = ("float32", "bfloat16")
CHUNKS = (1, 8, 32, 64, 128)

# Sizes: (space options, input shape, batch). Full: AutoFormer-T's vit widths and an OFA-like
# convnet on 32×32 images; quick: CPU-sized.
FULL = {
    "vit": ({"embed_dims": (192, 216, 240), "depths": (10, 11, 12), "num_heads": (3, 4),
             "mlp_ratios": (3.5, 4.0), "head_dim": 64, "patch_size": 4}, (32, 32, 3), 256),
    "convnet": ({"widths": (24, 40, 80, 160), "strides": (1, 2, 2, 2), "stem_channels": 24,
                 "head_channels": 640}, (32, 32, 3), 256),
}
QUICK = {
    "vit": ({"embed_dims": (16, 24), "depths": (1, 2), "num_heads": (1, 2), "head_dim": 8,
             "patch_size": 4}, (8, 8, 3), 8),
    "convnet": ({"widths": (8,), "strides": (1,), "stem_channels": 8, "head_channels": 16,
                 "kernels": (3, 5), "expands": (3,), "depths": (1, 2)}, (8, 8, 3), 8),
}


def peak_flops(device=None) -> dict:
    """{"bfloat16": FLOP/s or None, "float32": …} of `device` (default: the first), None where
    unknown."""
    kind = (device or jax.devices()[0]).device_kind.lower()
    for name, peaks in PEAK_FLOPS.items():
        if name in kind:
            return dict(peaks)
    return {dtype: None for dtype in DTYPES}


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled program (`jax.jit(f).lower(...).compile()`) as XLA's cost
    analysis counts them."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jaxlibs: one dict per program
        analysis = analysis[0]
    return float(analysis["flops"])


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None when the peak is unknown)."""
    return None if peak is None else flops / seconds / peak


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _space(sizes: dict, name: str):
    options, shape, batch = sizes[name]
    return spaces.get(name, **options).bind(shape, 10), batch


def supernet_step(space, batch: int, dtype: str, repeats: int, peak: float | None) -> dict:
    """Median time, XLA FLOPs, achieved FLOP/s and MFU of one sandwich step of `space`'s supernet
    computing in `dtype`."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch,) + space.input_shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, space.num_classes, batch), jnp.int32)
    graphdef, params, rest = engine.split(nas.supernet(space, seed=0, dtype=dtype))
    tx = optax.adamw(1e-3)
    step = oneshot.make_step(graphdef, space, tx, "sandwich")
    args = (params, rest, tx.init(params), x, y, jax.random.key(0))
    compiled = jax.jit(step).lower(*args).compile()  # timed and costed: one program
    seconds = _median_seconds(lambda: compiled(*args), repeats)
    flops = compiled_flops(compiled)
    return {"space": space.name, "dtype": dtype, "batch": batch, "rule": "sandwich",
            "step_ms": seconds * 1e3, "flops_per_step": flops, "achieved_flops": flops / seconds,
            "mfu": mfu(flops, seconds, peak)}


def population(space, examples: int, repeats: int, chunks=CHUNKS) -> list[dict]:
    """Archs per second of inherited-weight scoring of max(chunks) random archs on `examples`
    validation examples, for each chunk size (archs per vmapped call), best of `repeats`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples,) + space.input_shape).astype(np.float32)
    y = rng.integers(0, space.num_classes, examples).astype(np.int32)
    graphdef, params, rest = engine.split(nas.supernet(space, seed=0))
    archs = [space.sample(seed=i) for i in range(max(chunks))]
    rows = []
    for chunk in chunks:
        evaluator = PopulationEvaluator(graphdef, params, rest, space, x, y, calib_x=x, chunk=chunk)
        evaluator.evaluate(archs[:1])  # compile
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            evaluator.evaluate(archs)
            best = min(best, time.perf_counter() - started)
        rows.append({"space": space.name, "chunk": chunk, "archs": len(archs), "examples": examples,
                     "archs_per_second": len(archs) / best})
    return rows


def split_training(settings, repeats: int, decisions=()) -> list[dict]:
    """Joint against sequential sub-supernet training after the splits (`benchmarks.splits`;
    `decisions`: the choices a split may cut, default every one)."""
    rows = []
    for method, rounds in settings:
        with tempfile.TemporaryDirectory() as tmp:
            rates = splits.split_rates(Path(tmp), method, rounds, repeats, decisions)
        rows.append({"method": method, "sub_supernets": 2 ** rounds, "joint_steps_per_second": rates["joint"],
                     "sequential_steps_per_second": rates["sequential"],
                     "joint_over_sequential": rates["joint"] / rates["sequential"]})
    return rows


def device_counts(available: int) -> list[int]:
    """1, 2, 4, … up to `available`, and `available` itself."""
    counts = [1 << i for i in range(available.bit_length()) if 1 << i <= available]
    return counts + ([available] if counts[-1] != available else [])


def scaling(repeats: int, batch: int) -> list[dict]:
    """Sampled supernet steps per second over 1..N local devices (`benchmarks.scale`), one global
    batch of `batch` rows (rounded up to a multiple of the device count)."""
    rows = []
    for count in device_counts(jax.local_device_count()):
        rate = scale.steps_per_second(repeats, num_devices=count, batch=round_up(batch, count))
        rows.append({"devices": count, "steps_per_second": rate})
    for row in rows:
        row["vs_one"] = row["steps_per_second"] / rows[0]["steps_per_second"]
    return rows


def measure(quick: bool) -> dict:
    """Every section's numbers (see the module docstring)."""
    sizes, repeats = (QUICK, 1) if quick else (FULL, 10)
    device = jax.devices()[0]
    peaks = peak_flops(device)
    seconds = {}

    def timed(section, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        seconds[section] = time.perf_counter() - started
        return out

    def steps():
        rows = []
        for name in ("vit", "convnet"):
            space, batch = _space(sizes, name)
            rows += [supernet_step(space, batch, dtype, repeats, peaks[dtype]) for dtype in DTYPES]
        return rows

    vit, _ = _space(sizes, "vit")
    split_settings = [("sandwich", 1)] if quick else [("sandwich", 1), ("sandwich", 2), ("drnas", 1),
                                                      ("drnas", 2)]
    return {
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "local_devices": jax.local_device_count(), "peak_flops": peaks},
        "quick": quick, "jax": jax.__version__, "python": platform.python_version(),
        "supernet_steps": timed("supernet_steps", steps),
        "population": timed("population", population, vit, *((16, repeats, CHUNKS[:2]) if quick
                                                              else (512, repeats))),
        "splits": timed("splits", split_training, split_settings, repeats, ("depth_0",) if quick else ()),
        "devices": timed("devices", scaling, repeats, 16 if quick else scale.BATCH),
        "input_pipeline": timed("input_pipeline", input_pipeline, quick),
        "seconds": seconds,
    }


def input_pipeline(quick: bool) -> list[dict]:
    """Examples per second of the input pipeline per worker count, on generated shards."""
    from benchmarks import data as data_bench
    with tempfile.TemporaryDirectory() as tmp:
        path = data_bench.noise_set(2_000 if quick else 200_000, Path(tmp))
        return [{"workers": workers, "examples_per_second": data_bench.pipeline_rate(
                    path, workers, 5 if quick else 100)} for workers in ((0,) if quick else (0, 2, 4, 8))]


def _number(value, fmt: str) -> str:
    return "unknown" if value is None else format(value, fmt)


def table(result: dict) -> str:
    """The result as the printed table."""
    d = result["device"]
    peaks = ", ".join(f"{k} {_number(v and v / 1e12, '.1f')}" + (" TFLOP/s" if v else "")
                      for k, v in d["peak_flops"].items())
    lines = [f"device: {d['kind']} ({d['platform']}, {d['local_devices']} local), peak {peaks}"
             + ("  [--quick sizes]" if result["quick"] else ""),
             "", f"{'supernet step':<14} {'dtype':<9} {'batch':>5} {'ms':>9} {'GFLOP':>9} {'TFLOP/s':>8} "
             f"{'MFU':>8}"]
    for r in result["supernet_steps"]:
        lines.append(f"{r['space']:<14} {r['dtype']:<9} {r['batch']:>5} {r['step_ms']:>9.2f} "
                     f"{r['flops_per_step'] / 1e9:>9.2f} {r['achieved_flops'] / 1e12:>8.3f} "
                     f"{_number(r['mfu'], '8.3f'):>8}")
    lines += ["", f"{'population chunk':<17} {'archs':>6} {'archs/s':>9}"]
    lines += [f"{r['chunk']:<17} {r['archs']:>6} {r['archs_per_second']:>9.1f}" for r in result["population"]]
    lines += ["", f"{'split training':<15} {'subs':>4} {'joint/s':>8} {'sequential/s':>13} {'joint/seq':>9}"]
    lines += [f"{r['method']:<15} {r['sub_supernets']:>4} {r['joint_steps_per_second']:>8.2f} "
              f"{r['sequential_steps_per_second']:>13.2f} {r['joint_over_sequential']:>9.2f}"
              for r in result["splits"]]
    lines += ["", f"{'devices':<8} {'steps/s':>8} {'vs 1':>6}"]
    lines += [f"{r['devices']:<8} {r['steps_per_second']:>8.2f} {r['vs_one']:>6.2f}"
              for r in result["devices"]]
    lines += ["", f"{'input workers':<14} {'examples/s':>11}"]
    lines += [f"{r['workers']:<14} {r['examples_per_second']:>11,.0f}" for r in result["input_pipeline"]]
    lines += ["", "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items())]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU, tests)")
    parser.add_argument("--out", type=Path, default=Path("device_bench.json"), help="the JSON file written")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
