"""Spaces written inside the model (`nas.choices`, `spaces.register_model`), as a user's
plugin modules (tests/models): the tiny transformer of issue 26 and a module choice between
an MLP and an attention block. Derived space, canonical forms of conditional choices,
extract = supernet, costs from the model; a search through `nas search --plugin` (sandwich +
aging, and DrNAS), killed and resumed, exported and opened in a fresh process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas
import spaces
from launch import cli, plugins
from launch import data as datasets

MODELS = Path(__file__).resolve().parent / "models"


@pytest.fixture
def user_modules(monkeypatch):
    monkeypatch.chdir(MODELS)  # the working directory is on the plugins' import path
    plugins.load(["tinyformer", "mixed", "tokens"])


def test_the_tiny_transformer_is_40_lines_and_its_space_comes_from_the_model(user_modules):
    assert sum(1 for line in (MODELS / "tinyformer.py").read_text().splitlines() if line.strip()) <= 40
    space = spaces.get("tinyformer").bind((8, 6), 3)
    assert space.choices == {"embed": (16, 24, 32), "depth": (1, 2), "heads_0": (1, 2), "heads_1": (1, 2)}
    # heads_1 exists only at depth 2: 3 embeds × (2 heads at depth 1 + 2 × 2 at depth 2) networks.
    assert space.size() == 24 and space.distinct_size() == 3 * (2 + 4) == 18
    assert space.canonical({"embed": 16, "depth": 1, "heads_0": 2, "heads_1": 2})["heads_1"] == 1
    assert space.canonical({"embed": 16, "depth": 2, "heads_0": 2, "heads_1": 2})["heads_1"] == 2
    model = nas.supernet(space, seed=0)
    x = np.random.default_rng(1).normal(size=(4, 8, 6)).astype(np.float32)
    for arch in list(space.enumerate())[::3]:  # 8 of the 24, both depths, every embed and head count
        compact = nas.extract(model, arch)
        np.testing.assert_allclose(np.asarray(compact(x)), np.asarray(model(x, arch)), rtol=1e-5, atol=1e-5)
        assert space.params(arch) == nas.count_params(compact)
        assert space.flops(arch) == nas.count_macs(lambda z, c=compact: c(z), x[:1])
        # The canonical form is the same network: same outputs.
        np.testing.assert_allclose(np.asarray(model(x, space.canonical(arch))), np.asarray(model(x, arch)),
                                   rtol=1e-5, atol=1e-5)


def test_a_module_choice_between_an_mlp_and_an_attention_block_trains_and_extracts(user_modules):
    from launch.train import TrainConfig, train
    data = datasets.load("tokens", seed=0)
    space = spaces.get("mixed_blocks").bind(data.input_shape, data.num_classes)
    model = nas.supernet(space, seed=0)
    for arch in ({"block": "mlp"}, {"block": "attention"}):
        compact = nas.extract(model, arch)
        assert [k for k in compact.block.branches] == [arch["block"]]
        x_test = data.test.arrays()[0]
        np.testing.assert_allclose(np.asarray(compact(x_test)), np.asarray(model(x_test, arch)),
                                   rtol=1e-5, atol=1e-5)
    trained = train(model, data, TrainConfig(epochs=3, batch_size=32), arch={"block": "attention"},
                    progress=False)
    assert trained.test_accuracy > 0.6  # 3 balanced classes: chance is 1/3


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _steps(run: Path) -> list[int]:
    directory = run / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.exists() else []


def test_the_tiny_transformer_searches_resumes_after_sigkill_and_exports(tmp_path):
    config = tmp_path / "tinyformer.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "space": "tinyformer", "data": "tokens",
        "supernet": {"epochs": 2, "batch_size": 32},
        "search": {"evaluations": 8, "generation": 2, "population": 4, "sample": 2, "candidates": 2},
        "retrain": {"epochs": 2, "batch_size": 32}, "checkpoint": {"every_steps": 5, "every_seconds": None}}))
    search = [sys.executable, "-m", "launch.cli", "search", str(config), "--quiet",
              "--plugin", "tinyformer", "--plugin", "tokens", "--out"]
    whole = subprocess.Popen(search + [str(tmp_path / "whole")], cwd=MODELS, env=_env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = subprocess.Popen(search + [str(tmp_path / "killed")], cwd=MODELS, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while killed.poll() is None and (not _steps(tmp_path / "killed") or _steps(tmp_path / "killed")[-1] < 3):
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    resume = [sys.executable, "-m", "launch.cli", "resume", str(tmp_path / "killed"), "--quiet"]
    resumed = subprocess.run(resume, cwd=MODELS, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0 and "resumed from checkpoint" in resumed.stdout, resumed.stderr
    infos = [json.loads((tmp_path / run / "best" / "arch.json").read_text()) for run in ("whole", "killed")]
    assert infos[0]["choices"] == infos[1]["choices"] and infos[0]["metrics"] == infos[1]["metrics"]
    assert infos[0]["plugins"] == ["tinyformer", "tokens"]
    # A fresh process opens the export: the plugins arch.json names are imported again.
    evaluated = subprocess.run([sys.executable, "-m", "launch.cli", "eval", str(tmp_path / "killed")],
                               cwd=MODELS, env=_env(), capture_output=True, text=True)
    assert evaluated.returncode == 0 and "(equal)" in evaluated.stdout, evaluated.stderr


def test_the_tiny_transformer_searches_with_drnas(tmp_path, capsys, user_modules):
    config = tmp_path / "drnas.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "plugins": ["tinyformer", "tokens"], "space": "tinyformer", "data": "tokens",
        "supernet": {"method": "drnas", "epochs": 2, "batch_size": 32},
        "search": {"candidates": 1}, "retrain": {"epochs": 1, "batch_size": 32}}))
    assert cli.main(["search", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    state = json.loads((tmp_path / "run" / "search_state.json").read_text())
    assert set(state["alpha"]) == {"embed", "depth", "heads_0", "heads_1"}
    assert spaces.get("tinyformer").validate(state["arch"])


class _Chained(nas.Supernet):
    """heads_1 matters at depth 2, ffn_1 only while heads_1 is 2: a chain of conditions."""

    def __init__(self, space, *, rngs):
        self.space = space
        self.depth = space.choice("depth", [1, 2])
        space.choice("heads_1", [1, 2], when={"depth": [2]})
        space.choice("ffn_1", [4, 8], when={"heads_1": [2]})
        self.fc = nas.layers.Dense(space.input_shape[-1], space.num_classes, rngs=rngs)

    def forward(self, x, probs, train=False):
        return self.fc(x)


def test_chained_conditions_fold_every_unused_choice_and_bad_declarations_are_named():
    spaces.register_model("chained", _Chained, input_shape=(3,), num_classes=2, overwrite=True)
    space = spaces.get("chained")
    # depth 1: one network; depth 2: heads 1 (ffn unused) or heads 2 × ffn 4/8.
    assert space.distinct_size() == 1 + 1 + 2
    assert space.canonical({"depth": 1, "heads_1": 2, "ffn_1": 8}) == {"depth": 1, "heads_1": 1, "ffn_1": 4}

    def declaring(when):
        class Bad(nas.Supernet):
            def __init__(self, space, *, rngs):
                space.choice("kind", ["mlp", "attention"])
                space.choice("width", [8, 16], when=when)
        return Bad

    for when, message in (({"kind": "mlp"}, "must list options of 'kind'"),
                          ({"kind": ["conv"]}, "non-empty subset of its options"),
                          ({"depth": [1]}, "'depth', which is not declared before it")):
        spaces.register_model("bad_when", declaring(when), input_shape=(3,), num_classes=2, overwrite=True)
        with pytest.raises(ValueError, match=message):
            spaces.get("bad_when")

    class Reads(nas.Supernet):
        def __init__(self, space, *, rngs):
            space.choice("width", [8, 16])
            space.encode(None)

    spaces.register_model("reads_encode", Reads, input_shape=(3,), num_classes=2, overwrite=True)
    with pytest.raises(ValueError, match="space.encode is not available while the choices"):
        spaces.get("reads_encode")


def test_arrays_registers_a_copy_and_never_replaces_another_data_set():
    import jaxnas as jn
    x = np.zeros((20, 3), np.float32)
    y = np.arange(20) % 2
    jn.arrays("copied", x, y, x[:4], y[:4])
    x[:] = 7  # the caller's later edits do not reach the data set
    assert datasets.load("copied", val_fraction=0.0).train.arrays()[0].max() == 0
    jn.arrays("copied", x, y, x[:4], y[:4])  # a notebook cell run again
    with pytest.raises(ValueError, match="'digits' is already registered"):
        jn.arrays("digits", x, y, x[:4], y[:4])
