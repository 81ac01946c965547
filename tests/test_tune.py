"""`nas tune` through the CLI: results.csv / best/ of a 4-sample experiment, a SIGKILLed
driver resumed without repeating finished trials (the in-flight trial continuing from its
checkpoint), ASHA stopping a clearly worse trial, a failing trial reported with its error,
bad param spaces refused before Ray starts.

Every experiment is examples/quick.yaml shrunk by TINY (a few seconds of work per trial;
the rest is JAX start-up). A finished trial reports progress 1–2 (supernet epochs), 3–4
(search generations: 8 evaluations, 4 per generation) and 5 (the retrained pick). The
trials share a JAX compilation cache, so only the first compiles.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from launch import cli

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "examples" / "quick.yaml"
TINY = ["data.name=synthetic", "data.options={n_train: 640, n_test: 128, noise: 0.3}",
        "space.options={norm: batch, channels: [8, 16], kernels: [3], depths: [1]}",
        "supernet.method=uniform", "supernet.epochs=2", "supernet.batch_size=32",
        "supernet.learning_rate=0.05", "supernet.warmup_epochs=0",
        "search.evaluations=8", "search.generation=4", "search.population=8", "search.sample=2",
        "search.candidates=1", "search.calibration=64",
        "retrain.epochs=1", "retrain.batch_size=32", "retrain.warmup_epochs=0", "retrain.learning_rate=0.05"]
SETS = [arg for assignment in TINY for arg in ("--set", assignment)]
FINISHED_PROGRESS = 2 + 2 + 1  # supernet epochs + search generations + the final report


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # The suite's cache when `make test` gives one, else one for this module's trials.
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax_cache"))
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def _start(args, env, cwd) -> subprocess.Popen:
    # A session of its own: after the driver ends (or is killed) whatever Ray left behind
    # is ended by the group id.
    return subprocess.Popen([sys.executable, "-m", "launch.cli", "tune", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _end_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tune(args, env, cwd, timeout=600) -> str:
    process = _start(args, env, cwd)
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        _end_group(process)
    assert process.returncode == 0, out[-3000:]
    return out


def _table(directory: Path) -> list[dict]:
    with (directory / "results.csv").open() as f:
        return list(csv.DictReader(f))


def _reports(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _config(tmp_path: Path, tune: dict) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(QUICK.read_text()), "tune": tune}))
    return path


def test_quick_yaml_four_samples_writes_results_and_best(tmp_path, env):
    from launch.export import load

    out = tmp_path / "exp"
    text = _tune([str(QUICK), "--num-samples", "4", "--out", str(out), *SETS], env, tmp_path)
    assert "ray: started locally in" in text
    table = _table(out)
    assert len(table) == 4
    assert sorted(int(row["seed"]) for row in table) == [0, 1, 2, 3]  # no param space: seeds
    assert {row["status"] for row in table} <= {"finished", "stopped"}
    finished = [row for row in table if row["status"] == "finished"]
    assert finished and all(int(row["progress"]) == FINISHED_PROGRESS for row in finished)
    # best/ is the finished trial with the highest retrained validation accuracy, as its run recorded it.
    recorded = {row["trial"]: json.loads((Path(row["run_dir"]) / "best" / "arch.json").read_text())
                for row in finished}
    top = max(recorded, key=lambda trial: recorded[trial]["metrics"]["val_accuracy"])
    assert json.loads((out / "best" / "arch.json").read_text()) == recorded[top]
    exported = load(out / "best")
    assert exported.arch == recorded[top]["choices"]
    assert (out / "results.png").stat().st_size > 0


def test_killed_driver_resumes_without_repeating_finished_trials(tmp_path, env):
    # One trial at a time, in grid order: the first finishes, the second fails at once
    # (every arch exceeds 50 parameters), the third is killed mid-way.
    config = _config(tmp_path, {"scheduler": "fifo", "max_concurrent": 1,
                                "param_space": {"search.max_params": {"grid": [None, 50, None]}}})
    out = tmp_path / "exp"
    # A longer supernet phase (12 epochs of 5× the examples): the kill lands within it.
    sets = [*SETS, "--set", "data.options={n_train: 3200, n_test: 128, noise: 0.3}",
            "--set", "supernet.epochs=12"]
    finished_progress = 12 + 2 + 1
    process = _start([str(config), "--out", str(out), *sets], env, tmp_path)
    try:
        deadline = time.monotonic() + 400
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "ended before the kill"
            trials = sorted(out.glob("trial_*"))
            if len(trials) == 3 and (trials[0] / "run" / "best" / "arch.json").exists() \
                    and _reports(trials[2]):
                break
            time.sleep(0.1)
        time.sleep(1.2)  # the driver saves its experiment state (what --resume reads) each second
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        _end_group(process)
    finished, failed, killed = trials
    untouched = {p: p.read_bytes() for p in (finished / "result.json", finished / "run" / "metrics.jsonl",
                                             finished / "run" / "output.log")}
    before = _reports(killed)[-1]["progress"]

    text = _tune([str(config), "--out", str(out), "--resume", *sets], env, tmp_path)
    assert "3 trials: 2 finished, 0 stopped early, 1 failed" in text
    assert all(p.read_bytes() == content for p, content in untouched.items())  # not run again
    reports = _reports(killed)
    resumed = [r for r in reports if r["resumed_from"] > 0]
    assert resumed, "the killed trial restarted from scratch"
    start = resumed[0]["resumed_from"]
    assert 1 <= start <= before < finished_progress
    # Its step counter goes on from the checkpoint's (the run's own count of supernet epochs
    # and generations), up to a finished trial's.
    progress = [r["progress"] for r in resumed]
    assert start < progress[0] and progress == sorted(set(progress)) and progress[-1] == finished_progress
    assert "resumed from checkpoint" in (killed / "run" / "output.log").read_text()
    rows = [json.loads(line)["phase"] for line in (killed / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == ["supernet"] * 12 + ["search"] * 2 + ["retrain"]  # nothing logged twice

    table = {row["trial"]: row for row in _table(out)}
    assert [table[t.name]["status"] for t in trials] == ["finished", "error", "finished"]
    assert "search.max_params = 50" in table[failed.name]["error"]
    assert table[finished.name]["error"] == ""


def test_asha_stops_a_clearly_worse_trial(tmp_path, env):
    # lr 0 leaves the supernet at its initialisation (chance accuracy, ~0.1) while lr 0.05
    # reaches well above it in one epoch. One trial at a time: at ASHA's first rung (progress
    # 1, reduction factor 2) the cutoff is the median of the one recorded accuracy, the good
    # trial's, so the lr 0 trial stops there.
    config = _config(tmp_path, {"scheduler": "asha", "grace_period": 1, "reduction_factor": 2,
                                "max_concurrent": 1,
                                "param_space": {"supernet.learning_rate": {"grid": [0.05, 0.0]}}})
    out = tmp_path / "exp"
    _tune([str(config), "--out", str(out), *SETS], env, tmp_path)
    table = {float(row["supernet.learning_rate"]): row for row in _table(out)}
    assert table[0.05]["status"] == "finished" and int(table[0.05]["progress"]) == FINISHED_PROGRESS
    assert table[0.0]["status"] == "stopped" and int(table[0.0]["progress"]) == 1
    good = [r for r in _reports(Path(table[0.05]["run_dir"]).parent) if r["progress"] == 1][0]
    assert float(table[0.0]["accuracy"]) < good["accuracy"]


def test_split_as_trials_runs_each_sub_supernet_as_a_trial_from_the_trunk(tmp_path, env):
    # One split after the first of two supernet epochs (channels 8 | 16): a trunk trial trains
    # the supernet to the split, then each sub-supernet is a trial that starts from it.
    config = _config(tmp_path, {"scheduler": "fifo"})
    out = tmp_path / "exp"
    sets = [*SETS, "--set", "split={epochs: [1], batches: 1, as_trials: true}"]
    text = _tune([str(config), "--out", str(out), *sets], env, tmp_path)
    assert "2 sub-supernet trials from 1 trunk trial(s)" in text
    table = _table(out)
    assert sorted(int(row["sub_supernet"]) for row in table) == [0, 1]
    assert all(row["status"] == "finished" and int(row["progress"]) == FINISHED_PROGRESS for row in table)
    (trunk,) = out.glob("trunk/trial_*")
    assert {row["trunk"] for row in table} == {trunk.name}
    trunk_rows = (trunk / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["phase"] for r in trunk_rows] == ["supernet", "split"]
    assert not (trunk / "run" / "best").exists()
    picks = {}
    for row in table:
        run = Path(row["run_dir"])
        assert run.parent.parent.name == "sub_supernets"
        assert "resumed from checkpoint" in (run / "output.log").read_text()
        rows = (run / "metrics.jsonl").read_text().splitlines()
        assert rows[:2] == trunk_rows  # the trunk's epoch and split, not trained again
        assert [json.loads(r)["phase"] for r in rows[2:]] == ["supernet", "search", "search", "retrain"]
        info = json.loads((run / "best" / "arch.json").read_text())
        groups = info["search"]["split"]["splits"][0]["groups"]
        decision = info["search"]["split"]["splits"][0]["decision"]
        index = int(row["sub_supernet"])
        # Every candidate comes from this trial's sub-supernet and lies in its half.
        assert all(c["sub_supernet"] == index and c["choices"][decision] in groups[index]
                   for c in info["search"]["candidates"])
        picks[row["trial"]] = info
    top = max(picks, key=lambda trial: picks[trial]["metrics"]["val_accuracy"])
    assert json.loads((out / "best" / "arch.json").read_text()) == picks[top]


@pytest.mark.parametrize("tune, named", [
    ({"param_space": {"supernet.lr": {"choice": [0.1, 0.01]}}}, "unknown config key 'supernet.lr'"),
    ({"param_space": {"data.val_fraction": {"uniform": [0.1, 1.5]}}}, "1.5"),
    ({"param_space": {"search.controller": {"choice": ["aging", "annealing"]}}}, "'annealing'"),
    ({"param_space": {"search.controller": {"choise": ["aging"]}}}, "did you mean 'choice'"),
    ({"param_space": {"supernet.epochs": {"randint": [0, 3]}}}, "supernet.epochs = 0"),
    ({"schedular": "fifo"}, "did you mean 'scheduler'"),
    ({"resources": {"cpu": -1}}, "tune.resources.cpu = -1"),
    ({"param_space": {"split.only": {"grid": [0, 1]}}}, "tune.param_space.split.only: not tunable"),
])
def test_bad_param_space_exits_2_and_writes_nothing(tmp_path, capsys, tune, named):
    out = tmp_path / "exp"
    assert cli.main(["tune", str(_config(tmp_path, tune)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not out.exists()


def test_resume_checks_the_experiment(tmp_path, capsys):
    from launch.tune import check

    config = _config(tmp_path, {"param_space": {"seed": {"grid": [0, 1]}}})
    out = tmp_path / "exp"
    check.prepare(config, [], None, out, resume=False)
    assert cli.main(["tune", str(config), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert cli.main(["tune", str(config), "--out", str(out), "--resume", "--num-samples", "3"]) == 2
    assert "holds a different experiment" in capsys.readouterr().err
    assert cli.main(["tune", str(config), "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no experiment" in capsys.readouterr().err


def test_the_split_example_validates_as_sub_supernet_trials():
    from launch.tune import check
    record = check.experiment(ROOT / "examples" / "tune_splits.yaml", [], None)
    assert record["as_trials"] and record["search"]["split"]["epochs"] == [5, 10]
    assert not check.experiment(QUICK, [], None)["as_trials"]


def test_driver_never_imports_jax():
    code = ("import sys; import launch.tune.driver; "
            "print(sorted(m for m in ('jax', 'flax', 'nas', 'search', 'spaces', 'launch.config') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
