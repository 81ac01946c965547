"""`nas search` end to end: run dir contents, the export reloads and reproduces its
reported accuracy, a finished run repeats nothing, budgets hold, bad configs write nothing."""
import json

import numpy as np
import pytest
import yaml

from launch import cli
from launch import data as datasets
from launch.export import load as load_export
from launch.train import accuracy

TINY = {
    "seed": 0, "space": {"name": "cnn1d", "options": {"norm": "batch"}},
    "data": {"name": "mnist1d", "val_fraction": 0.2},
    "supernet": {"method": "sandwich", "epochs": 2, "batch_size": 128},
    "search": {"controller": "aging", "evaluations": 24, "generation": 4, "population": 8,
               "sample": 4, "candidates": 2},
    "retrain": {"epochs": 2, "space_options": {"norm": "none"}},
}


def _write(tmp_path, body, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def test_search_writes_a_complete_run_dir_and_a_reloadable_export(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["search", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet",
                     "--set", "search.max_params=5000"]) == 0
    for name in ("config.yaml", "metrics.jsonl", "trajectory.png", "pareto.png", "report.txt",
                 "search_state.json", "best/arch.json", "retrain/0/arch.json", "retrain/1/arch.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    assert any((run / "best" / "weights").iterdir())
    info = json.loads((run / "best" / "arch.json").read_text())
    assert info["space"] == "cnn1d" and info["params"] <= 5000
    assert info["space_config"]["config"]["norm"] == "none"  # searched with BN, retrained plain
    assert set(info["metrics"]) >= {"test_accuracy", "val_accuracy"}
    assert {"supernet_seconds", "search_seconds", "retrain_seconds"} <= set(info["cost"])
    phases = [json.loads(line)["phase"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert phases.count("supernet") == 2 and phases.count("retrain") == 2
    assert "search cost" in capsys.readouterr().out
    supernet = yaml.safe_load((run / "config.yaml").read_text())["supernet"]
    assert (supernet["learning_rate"], supernet["weight_decay"]) == (0.01, 1e-4)  # AdamW's, shown

    space, arch, model = load_export(run / "best")
    assert arch == info["choices"]
    data = datasets.load("mnist1d", seed=0, val_fraction=0.2)
    assert accuracy(model, *data.test.arrays()) == pytest.approx(
        info["metrics"]["test_accuracy"], abs=1e-9)

    # Same config again: the finished run is restored, nothing is repeated, the report is shown.
    lines_before = (run / "metrics.jsonl").read_text()
    assert cli.main(["search", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet",
                     "--set", "search.max_params=5000"]) == 0
    out = capsys.readouterr().out
    assert "(supernet, search, retrain, export done)" in out and "search cost" in out
    assert (run / "metrics.jsonl").read_text() == lines_before


def test_gradient_search_discretises_by_argmax(tmp_path, capsys):
    body = dict(TINY, supernet={"method": "gdas", "epochs": 1, "batch_size": 64},
                search={"controller": "auto", "candidates": 1})
    run = tmp_path / "grad"
    assert cli.main(["search", str(_write(tmp_path, body)), "--out", str(run), "--quiet"]) == 0
    state = json.loads((run / "search_state.json").read_text())
    info = json.loads((run / "best" / "arch.json").read_text())
    assert info["search"]["controller"] == "argmax"
    expected = {k: space_options[int(np.argmax(state["alpha"][k]))]
                for k, space_options in info["space_config"]["choices"].items()}
    assert info["choices"] == expected
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "alpha_entropy" in records[0]
    assert "α: argmax holds" in capsys.readouterr().out
    supernet = yaml.safe_load((run / "config.yaml").read_text())["supernet"]
    assert (supernet["learning_rate"], supernet["weight_decay"]) == (0.025, 3e-4)  # DARTS' SGD


@pytest.mark.parametrize("overrides, message", [
    (["search.controler=aging"], "did you mean 'search.controller'"),
    (["search.max_params=10"], "the smallest arch of 'cnn1d' has"),
    (["supernet.batch_size=100000"], "supernet.batch_size = 100000 exceeds"),
    (["space.name=cnn"], "space.name = 'cnn' is not allowed"),
    (["retrain.space_options={norm: group}"], "norm must be 'none' or 'batch'"),
    (["search.controller=agin"], "search.controller = 'agin' is not allowed"),
    (["search.population=4", "search.sample=8"], "aging: sample (8) must be ≤ population (4)"),
    (["sparse.sparsity=0.5", "sparse.method=nm", "sparse.options={mm: 8}"],
     "has no option 'mm' (did you mean 'm'?)"),
    (["space.options={nrom: batch}"], "has no option 'nrom' (did you mean 'norm'?)"),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, overrides, message):
    run = tmp_path / "never"
    args = ["search", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()


def test_a_different_config_in_an_existing_run_dir_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 99\n")
    (run / "checkpoints" / "1").mkdir(parents=True)  # work done under that config
    assert cli.main(["search", str(_write(tmp_path, TINY)), "--out", str(run), "--quiet"]) == 2
    assert "holds a different config" in capsys.readouterr().err


def test_encodings_of_one_network_among_the_top_candidates_are_retrained_once():
    import spaces
    from launch.phases.retrain import top_candidates
    space = spaces.get("mlp", max_depth=2, widths=[8, 16]).bind((8,), 10)
    shallow = {"depth": 1, "width_0": 16, "width_1": 8, "activation": "relu"}
    other = {"depth": 2, "width_0": 8, "width_1": 8, "activation": "tanh"}
    third = {"depth": 2, "width_0": 16, "width_1": 8, "activation": "tanh"}
    # Two encodings of one network (width_1 is unused at depth 1) among the best archs.
    evaluated = [(other, 0.5), ({**shallow, "width_1": 16}, 0.8), (shallow, 0.9), (third, 0.4)]
    assert top_candidates(space, evaluated, 2) == [(shallow, 0.9), (other, 0.5)]
    assert top_candidates(space, evaluated, 5) == [(shallow, 0.9), (other, 0.5), (third, 0.4)]
