"""Exports: `nas export` copies a run's pick whole and adds a StableHLO artifact that plain
JAX runs; `nas eval` reproduces arch.json's accuracy in a fresh process; `pareto_pick`
walks the accuracy/size front of a search's history; bad input is one line, exit 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from launch import cli, export
from launch import config as configs

# One small search shared by the module: budgeted so the pick is a small network.
TINY = {
    "seed": 0, "space": {"name": "cnn1d", "options": {"norm": "batch"}},
    "data": {"name": "mnist1d", "val_fraction": 0.2},
    "supernet": {"method": "uniform", "epochs": 1, "batch_size": 256},
    "search": {"controller": "aging", "evaluations": 9, "generation": 3, "population": 6,
               "sample": 3, "candidates": 1, "max_params": 5000},
    "retrain": {"epochs": 2, "batch_size": 256, "space_options": {"norm": "none"}},
}
OUR_PACKAGES = ("nas", "spaces", "search", "sparse", "launch")


def _run_cli(*args) -> subprocess.CompletedProcess:
    """`nas ARGS` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "launch.cli", *map(str, args)],
                          capture_output=True, text=True, env=os.environ, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert cli.main(["search", str(config), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def exported_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "model"
    assert cli.main(["export", str(run), "--out", str(out), "--format", "stablehlo"]) == 0
    return out


def test_export_best_copies_the_pick_whole_with_a_stablehlo_signature(run, exported_dir):
    assert (exported_dir / "arch.json").read_text() == (run / "best" / "arch.json").read_text()
    assert any((exported_dir / "weights").iterdir())
    assert [p.name for p in exported_dir.parent.iterdir()] == ["model"]  # no temporary sibling
    signature = json.loads((exported_dir / "model.stablehlo.json").read_text())
    assert signature["input"] == {"shape": ["b", 40, 1], "dtype": "float32"}
    assert signature["num_classes"] == 10 and signature["output"]["shape"] == ["b", 10]
    assert "flatbuffers" in signature["requires"]
    assert set(export.PLATFORMS) == set(signature["platforms"])


def test_eval_in_a_fresh_process_reproduces_the_recorded_test_accuracy(exported_dir):
    result = _run_cli("eval", exported_dir, "--data", "mnist1d")
    assert result.returncode == 0, result.stderr
    line = next(s for s in result.stdout.splitlines() if s.startswith("test accuracy "))
    recorded = json.loads((exported_dir / "arch.json").read_text())["metrics"]["test_accuracy"]
    assert float(line.split()[2]) == recorded


def test_evaluate_uses_the_run_config_beside_best(run):
    cfg, source = export.data_config(run)
    assert source == run / "config.yaml" and (cfg.seed, cfg.data.val_fraction) == (0, 0.2)
    metrics = export.evaluate(run, configs.dataset(cfg))
    recorded = json.loads((run / "best" / "arch.json").read_text())["metrics"]
    assert metrics["test_accuracy"] == recorded["test_accuracy"]
    assert metrics["val_accuracy"] == recorded["val_accuracy"]
    assert (metrics["test_examples"], metrics["val_examples"]) == (1000, 800)


def _write_arch_json(directory, **fields):
    directory.mkdir(parents=True)
    (directory / "arch.json").write_text(json.dumps({"choices": {}, "space_config": {}, **fields}))


def test_eval_splits_come_from_the_run_config_or_from_arch_json(tmp_path):
    run = tmp_path / "run"
    _write_arch_json(run / "best" / "compact")
    raw = {"seed": 3, "data": {"name": "synthetic", "val_fraction": 0.3, "options": {"n_train": 50}}}
    (run / "config.yaml").write_text(configs.dump(configs.from_dict(raw)))
    cfg, source = export.data_config(run / "best" / "compact")
    assert source == run / "config.yaml"
    assert (cfg.seed, cfg.data.name, cfg.data.val_fraction, cfg.data.options) == (3, "synthetic", 0.3,
                                                                                 {"n_train": 50})
    cfg, _ = export.data_config(run / "best" / "compact", name="digits")  # another data set
    assert (cfg.seed, cfg.data.name, cfg.data.val_fraction, cfg.data.options) == (3, "digits", 0.3, {})

    alone = tmp_path / "alone"
    _write_arch_json(alone, data="digits", retrain={"seed": 5})
    cfg, source = export.data_config(alone)
    assert source is None and (cfg.seed, cfg.data.name) == (5, "digits")
    assert cfg.data.val_fraction == configs.DataConfig.val_fraction
    _write_arch_json(tmp_path / "unrecorded")
    with pytest.raises(ValueError, match="records no data set"):
        export.data_config(tmp_path / "unrecorded")


def test_stablehlo_runs_with_only_jax_and_numpy(exported_dir, tmp_path):
    x = np.random.default_rng(0).normal(size=(7, 40, 1)).astype(np.float32)  # export fixed no batch
    np.save(tmp_path / "x.npy", x)
    program = (
        "import sys\n"
        "import numpy as np\n"
        "import jax\n"
        "f = jax.export.deserialize(open(sys.argv[1], 'rb').read())\n"
        "np.save(sys.argv[3], np.asarray(f.call(np.load(sys.argv[2]))))\n"
        f"ours = {OUR_PACKAGES!r}\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ours)\n"
        "assert not leaked, leaked\n")
    result = subprocess.run([sys.executable, "-c", program, str(exported_dir / "model.stablehlo"),
                             str(tmp_path / "x.npy"), str(tmp_path / "logits.npy")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    logits = np.load(tmp_path / "logits.npy")
    np.testing.assert_allclose(logits, np.asarray(export.load(exported_dir)(x)), atol=1e-5)


def test_a_fixed_batch_size_is_part_of_the_signature(exported_dir, tmp_path):
    model = export.load(exported_dir).model
    path = export.to_stablehlo(model, tmp_path, batch_size=3)
    assert json.loads((tmp_path / "model.stablehlo.json").read_text())["input"]["shape"] == [3, 40, 1]
    import jax
    f = jax.export.deserialize(path.read_bytes())
    x = np.zeros((3, 40, 1), np.float32)
    np.testing.assert_allclose(np.asarray(f.call(x)), np.asarray(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        export.to_stablehlo(model, tmp_path, batch_size=0)


def _brute_force_front(points):
    """[(key, size, accuracy)] not dominated by any other point, smallest first."""
    def dominated(p):
        return any(q[1] <= p[1] and q[2] >= p[2] and (q[1] < p[1] or q[2] > p[2]) for q in points)
    return sorted((p for p in points if not dominated(p)), key=lambda p: (p[1], -p[2]))


def test_pareto_pick_walks_the_front_of_a_hand_made_history(tmp_path):
    raw = {"seed": 0, "space": {"name": "mlp", "options": {"max_depth": 2, "widths": [8, 16, 32]}},
           "data": {"name": "synthetic", "options": {"input_shape": [8], "n_train": 100, "n_test": 20}}}
    cfg = configs.from_dict(raw)
    (tmp_path / "config.yaml").write_text(configs.dump(cfg))
    data = configs.dataset(cfg)
    space = configs.space("mlp", raw["space"]["options"]).bind(data.input_shape, data.num_classes)
    rng = np.random.default_rng(0)
    archs = [space.canonical(space.sample(rng)) for _ in range(40)]
    # Coarse accuracies make ties; repeated archs are told again with their first score.
    history = [[a, [float(rng.integers(0, 6)) / 5]] for a in archs]
    history += [history[3], history[7]]
    (tmp_path / "search_state.json").write_text(json.dumps({"name": "aging", "history": history}))

    first = {}
    for arch, row in history:
        first.setdefault(json.dumps(arch, sort_keys=True), (arch, row[0]))
    points = [(k, space.params(a), acc) for k, (a, acc) in first.items()]
    expected = _brute_force_front(points)
    assert len(expected) >= 2
    picked = [export.pareto_pick(tmp_path, n) for n in range(1, len(expected) + 1)]
    assert [(json.dumps(m.arch, sort_keys=True), m.params, m.supernet_val_accuracy)
            for m in picked] == expected
    for n in (0, len(expected) + 1):
        with pytest.raises(ValueError, match=f"has {len(expected)} members"):
            export.pareto_pick(tmp_path, n)


def test_pareto_pick_of_the_search_run_is_its_smallest_evaluated_network(run):
    state = json.loads((run / "search_state.json").read_text())
    member = export.pareto_pick(run, 1)
    space = export.load(run).space
    assert member.params == min(space.params(a) for a, _ in state["history"])


@pytest.mark.parametrize("args, message", [
    (["export", "{tmp}/missing", "--out", "{tmp}/d"], "'{tmp}/missing' does not exist"),
    (["export", "{run}", "--out", "{tmp}/d", "--pick", "pareto:0"], "neither best nor pareto:N"),
    (["export", "{run}", "--out", "{tmp}/d", "--pick", "paretto:2"], "neither best nor pareto:N"),
    (["export", "{run}", "--out", "{tmp}/d", "--pick", "pareto:999"], "pick 1 to"),
    (["export", "{run}", "--out", "{tmp}", "--pick", "best"], "already exists"),
    (["export", "{tmp}", "--out", "{tmp}/d"], "neither an export"),
    (["export", "{run}", "--out", "{tmp}/d", "--format", "onnx"], "invalid choice: 'onnx'"),
    (["eval", "{tmp}/missing"], "does not exist"),
    (["eval", "{run}", "--data", "mnist2d"], "did you mean"),
])
def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys, args, message):
    fill = {"tmp": tmp_path, "run": run}
    assert cli.main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**fill) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_an_argmax_run_has_no_front(tmp_path):
    (tmp_path / "config.yaml").write_text(configs.dump(configs.from_dict({})))
    (tmp_path / "search_state.json").write_text(json.dumps({"arch": {}, "alpha": {}}))
    with pytest.raises(ValueError, match="searched by argmax"):
        export.pareto_pick(tmp_path, 1)

