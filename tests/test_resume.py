"""Exact resume through the CLI, in subprocesses: a search stopped by SIGTERM (exit 0 after
its checkpoint) and later killed by SIGKILL at a random checkpoint, each time continued
with `nas resume`, ends with the same best/arch.json, the same metrics rows and
bit-identical final parameters as the same search uninterrupted (the dense one retrains
the params baseline and predictor rounds; also a search that splits its supernet,
stopped after the split, and one streaming augmented PNGs through worker processes).
A truncated checkpoint file is named and the step before it is used."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
import yaml

from launch.export import load

BASE = {
    "seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits", "val_fraction": 0.2},
    "supernet": {"method": "sandwich", "epochs": 2, "batch_size": 64},
    "search": {"controller": "aging", "evaluations": 12, "generation": 4, "population": 8,
               "sample": 4, "candidates": 2},
    "retrain": {"epochs": 1, "batch_size": 64},
    "checkpoint": {"every_steps": 3, "every_seconds": None},
}
CONFIGS = {
    # The candidates: the params baseline's two, then two rounds of one by a predictor whose
    # pool grows by the neighbours of the best measured network.
    "dense": {**BASE, "search": {**BASE["search"], "baseline": True, "predictor": "ridge", "round": 1,
                                 "features": ["naswot", "params", "score"]}},
    "sparse": {**BASE, "search": {**BASE["search"], "candidates": 1},
               "sparse": {"levels": [0.5, 0.8], "update_every": 5, "prune_rate": 0.6,
                          "finetune_epochs": 1, "final_epochs": 1, "grid": 8, "calibration": 64}},
    "gradient": {**BASE, "supernet": {"method": "gdas", "epochs": 2, "batch_size": 64},
                 "search": {"controller": "auto", "candidates": 1}},
    # Saves only where a run must (the split, each phase's end, between sub-supernets'
    # searches): the first stop falls right after the split, so the run resumes into its tree.
    "split": {**BASE, "split": {"epochs": [1], "batches": 2},
              "checkpoint": {"every_steps": 1000, "every_seconds": None}},
    # Streamed from PNG files by two worker processes, augmented and normalised per channel.
    "streamed": {**BASE, "data": {"name": "image_folder", "path": "DIGIT_FOLDER", "val_fraction": 0.2,
                                  "normalize": True, "workers": 2,
                                  "augment": {"crop_padding": 1, "flip": True}},
                 "search": {**BASE["search"], "candidates": 1}},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: one CPU device, and a shared persistent compilation
    cache, so runs after the first load their executables instead of compiling them."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "2",
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla-cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _nas(*args) -> list[str]:
    return [sys.executable, "-m", "launch.cli", *args]


def _committed_steps(run: Path) -> list[int]:
    directory = run / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _run_until(args, env, run: Path, step: int, sig: int) -> subprocess.CompletedProcess:
    """Start `nas args`, send `sig` once checkpoint `step` is committed, wait for the exit."""
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and (not _committed_steps(run) or _committed_steps(run)[-1] < step):
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(sig)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def _final_state(run: Path):
    """(best arch.json without timings, metrics rows without timings, best weights, supernet arrays)."""
    info = json.loads((run / "best" / "arch.json").read_text())
    info.pop("cost")
    rows = [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}  # timings
            for line in (run / "metrics.jsonl").read_text().splitlines()]
    _, _, model = load(run / "best")
    from flax import nnx
    weights = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model))}
    step = _committed_steps(run)[-1]
    with warnings.catch_warnings():  # no target shardings: the arrays are only compared
        warnings.simplefilter("ignore")
        supernet = ocp.PyTreeCheckpointer().restore((run / "checkpoints" / str(step) / "arrays").absolute())
    return info, rows, weights, supernet


@pytest.fixture(scope="module")
def references(tmp_path_factory, env, digit_folder):
    """name → (config, run): the config run once uninterrupted (its checkpoint count tells
    where to stop the others), on first use, so a test worker runs only the references of
    the tests it was given."""
    done = {}

    def reference(name: str):
        if name not in done:
            directory = tmp_path_factory.mktemp(f"ref-{name}")
            config = directory / f"{name}.yaml"
            config.write_text(yaml.safe_dump(CONFIGS[name]).replace("DIGIT_FOLDER", str(digit_folder)))
            run = directory / "run"
            finished = subprocess.run(_nas("search", str(config), "--out", str(run), "--quiet"), env=env,
                                      capture_output=True, text=True)
            assert finished.returncode == 0, finished.stderr
            done[name] = (config, run)
        return done[name]
    return reference


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sigterm_then_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(references, env,
                                                                              tmp_path, name):
    config, reference = references(name)
    saves = _committed_steps(reference)[-1]
    rng = np.random.default_rng(sum(map(ord, name)))
    run = tmp_path / "run"
    stopped = _run_until(_nas("search", str(config), "--out", str(run), "--quiet"), env, run,
                         rng.integers(1, 5 if name == "streamed" else saves // 2), signal.SIGTERM)
    assert stopped.returncode == 0, stopped.stderr
    assert f"nas resume {run}" in stopped.stdout
    # Killed once it has saved at least one checkpoint of its own, before the run's end (the
    # streamed run inside its supernet phase: 30 steps, a save every 3).
    last = 9 if name == "streamed" else saves - 1
    second = rng.integers(_committed_steps(run)[-1] + 1, last)
    killed = _run_until(_nas("resume", str(run), "--quiet"), env, run, second, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    finished = subprocess.run(_nas("resume", str(run), "--quiet"), env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "resumed from checkpoint" in finished.stdout

    info, rows, weights, supernet = _final_state(run)
    ref_info, ref_rows, ref_weights, ref_supernet = _final_state(reference)
    assert info == ref_info
    assert rows == ref_rows  # no row repeated, none lost
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        np.testing.assert_array_equal(weights[key], ref_weights[key], err_msg=key)
    flat = dict(ocp.tree.to_flat_dict(supernet))
    ref_flat = dict(ocp.tree.to_flat_dict(ref_supernet))
    assert flat.keys() == ref_flat.keys()
    for key in flat:
        np.testing.assert_array_equal(np.asarray(flat[key]), np.asarray(ref_flat[key]), err_msg=str(key))
    if name == "streamed":  # the export scales raw images itself: nas eval reproduces arch.json
        evaluated = subprocess.run(_nas("eval", str(run)), env=env, capture_output=True, text=True)
        assert evaluated.returncode == 0, evaluated.stderr
        assert evaluated.stdout.count("(equal)") == 2, evaluated.stdout
    cost = json.loads((run / "best" / "arch.json").read_text())["cost"]
    assert cost["processes"] == 3
    assert cost["total_seconds"] == pytest.approx(
        cost["supernet_seconds"] + cost["search_seconds"] + cost["retrain_seconds"], abs=0.3)


def test_a_truncated_checkpoint_is_named_and_the_step_before_is_used(references, tmp_path):
    from launch import config as configs
    from launch import run as runs
    from launch.context import setup
    config, reference = references("dense")
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    latest = _committed_steps(run)[-1]
    victim = max((p for p in (run / "checkpoints" / str(latest) / "arrays").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size)
    half = victim.stat().st_size // 2
    victim.write_bytes(victim.read_bytes()[:half])
    said = []
    ctx = setup(configs.load(run / "config.yaml"), run, progress=False, echo=said.append)
    try:
        state = runs.restore(ctx)
    finally:
        ctx.close()
    assert any(f"checkpoint {run / 'checkpoints' / str(latest)} is unreadable (file {victim} holds "
               f"{half:,} bytes" in line and "falling back to the previous step" in line
               for line in said), said
    assert f"resumed from checkpoint {latest - 1}" in said[-1]
    assert state.done("retrain") and not state.done("export")  # the step before: the retrain's end
    assert _committed_steps(run)[-1] == latest - 1  # the damaged step is gone
