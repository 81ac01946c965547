"""Bad input and faults a real user meets: each test reproduces one defect of the fault
trial (a silent wrong result, a traceback, or a user's file lost) and checks the clear
one-line error, the fallback or the refusal that replaced it."""
import json
import os
import subprocess
import sys
import types
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import spaces
from launch import cli, export
from launch import config as configs
from launch import data as datasets
from launch.checkpoints import Checkpoints, CorruptCheckpoint, RunState
from launch.metrics import MetricsLog

TINY_MLP = {"seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits"},
            "supernet": {"epochs": 1, "batch_size": 64},
            "search": {"evaluations": 6, "generation": 2, "population": 4, "sample": 2, "candidates": 1},
            "retrain": {"epochs": 1, "batch_size": 64}}


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


# ---------------------------------------------------------------- 1, 2: checkpoints

ARRAYS = {"w": jnp.arange(50_000, dtype=jnp.float32), "opt": (jnp.zeros(3), {"count": jnp.int32(3)}),
          "key": jax.random.key_data(jax.random.key(0))}
TEMPLATE = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), ARRAYS)


def _two_steps(directory: Path, record_last: bool) -> None:
    """Steps 1 and 2 of a run; with `record_last` False the process 'dies' before step 2's
    files.json is written (as after SIGKILL)."""
    ck = Checkpoints(directory, every_seconds=None)
    ck.save(RunState(ARRAYS, {"step": 1}))
    ck.save(RunState(jax.tree.map(lambda a: a + 1, ARRAYS), {"step": 2}))
    if record_last:
        ck.close()
    else:
        ck.manager.wait_until_finished()
        ck.manager.close()


def _flip_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def test_an_altered_newest_step_is_caught_before_its_files_are_recorded(tmp_path):
    _two_steps(tmp_path, record_last=False)
    assert not (tmp_path / "2" / "files.json").exists()
    largest = max((p for p in (tmp_path / "2" / "arrays").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    _flip_middle(largest)
    said = []
    state, step = Checkpoints(tmp_path, every_seconds=None).restore(TEMPLATE, warn=said.append)
    assert step == 1 and state.meta == {"step": 1}  # the checksum record stays out of the meta
    np.testing.assert_array_equal(state.arrays["w"], ARRAYS["w"])
    assert "array ['w'] was altered" in said[0] and "falling back" in said[0], said


@pytest.mark.parametrize("record", ["{not json", '{"arrays/_METADATA": 5}', "[1, 2]"])
def test_an_unreadable_files_record_falls_back_to_the_step_before(tmp_path, record):
    _two_steps(tmp_path, record_last=True)
    (tmp_path / "2" / "files.json").write_text(record)
    said = []
    state, step = Checkpoints(tmp_path, every_seconds=None).restore(TEMPLATE, warn=said.append)
    assert step == 1 and f"its record {tmp_path / '2' / 'files.json'} is unreadable" in said[0], said


def test_every_step_damaged_is_one_line_naming_the_steps(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = configs.from_dict(TINY_MLP)
    run.mkdir()
    (run / "config.yaml").write_text(configs.dump(cfg))
    _two_steps(run / "checkpoints", record_last=True)
    for step in ("1", "2"):
        (run / "checkpoints" / step / "files.json").write_text("{")
    with pytest.raises(CorruptCheckpoint):
        Checkpoints(run / "checkpoints", every_seconds=None, read_only=True).restore(
            TEMPLATE, warn=lambda _: None)
    code, _, err = _main(capsys, "resume", run, "--quiet")
    assert code == 2
    assert "nas: error: no readable checkpoint in" in err and "(steps 2, 1 are damaged)" in err, err


# ---------------------------------------------------------------- 3, 4: numbers and ranges

@pytest.mark.parametrize("override, field", [
    ("supernet.learning_rate=.nan", "supernet.learning_rate"),
    ("retrain.learning_rate=.inf", "retrain.learning_rate"),
    ("supernet.warmup_epochs=.inf", "supernet.warmup_epochs"),
    ("retrain.warmup_epochs=1e300", "retrain.warmup_epochs"),
    ("seed=100000000000000000000000", "seed"), ("seed=-1", "seed"),
    ("space.options={widths: [16, -4]}", "widths")])
def test_config_numbers_out_of_range_are_refused_up_front(override, field):
    with pytest.raises(ValueError, match=field):
        configs.from_dict(TINY_MLP, [override])


def test_nas_train_refuses_a_nan_learning_rate(capsys, tmp_path):
    code, _, err = _main(capsys, "train", "--space", "mlp", "--sample", "0", "--data", "digits",
                         "--lr", "nan", "--out", tmp_path / "out")
    assert code == 2 and not (tmp_path / "out").exists()
    _one_error_line(err, "retrain.learning_rate = nan", "finite")


def _npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.normal(size=(60, 5)), "y_train": np.arange(60) % 3,
            "x_test": rng.normal(size=(12, 5)), "y_test": np.arange(12) % 3}
    np.savez(path, **{**base, **arrays})
    return path


def test_inputs_and_labels_that_would_train_silently_wrong_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5))
    x[7, 2] = np.nan
    cases = {
        "non-finite values (NaN or ±inf; the first in row 7)": {"x_train": x},
        "holds label 9223372036854775808": {"y_train": np.full(60, 2**63, np.uint64)},
        "y_test holds class(es) [3]": {"y_test": np.arange(12) % 4},
        "the test split is empty": {"x_test": np.zeros((0, 5)), "y_test": np.zeros(0, int)},
    }
    for message, arrays in cases.items():
        path = _npz(tmp_path / "d.npz", **arrays)
        with pytest.raises(ValueError) as caught:
            datasets.load("npz", path=str(path))
        assert message in str(caught.value), (message, str(caught.value))


def test_a_training_loss_that_turns_non_finite_stops_instead_of_exporting_nan():
    import nas
    from launch.train import Diverged, TrainConfig, check_finite, train
    assert check_finite(1.5, "x", 0.1) == 1.5
    data = datasets.load("digits", seed=0)
    model = nas.supernet(spaces.get("mlp", max_depth=1, widths=[16], activations=["relu"]).bind(
        data.input_shape, data.num_classes))
    with pytest.raises(Diverged, match=r"training, epoch 1: the mean training loss is (nan|inf)"):
        train(model, data, TrainConfig(epochs=2, batch_size=64, learning_rate=1e30, warmup_epochs=0),
              progress=False)


def test_metrics_rows_are_strict_json_and_a_torn_last_row_is_dropped(tmp_path):
    log = MetricsLog(tmp_path)
    log.log("supernet", 1, loss=float("nan"), other=[1.0, float("inf")])
    log.log("supernet", 2, loss=0.5)
    log.close()
    refuse = {"parse_constant": lambda name: pytest.fail(f"non-strict JSON constant {name}")}
    rows = [json.loads(line, **refuse) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss"] is None and rows[0]["other"] == [1.0, None]
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"phase": "supernet", "st')  # the crash tore this row
    resumed = MetricsLog(tmp_path)
    assert [r["step"] for r in resumed.records] == [1, 2]
    resumed.truncate(2)  # a resume keeps both rows: the torn one goes, and the next row is whole
    resumed.log("supernet", 3, loss=0.25)
    resumed.close()
    assert [r["step"] for r in MetricsLog(tmp_path).records] == [1, 2, 3]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not a metrics row"):
        MetricsLog(tmp_path)


# ---------------------------------------------------------------- 5: broken files

def test_broken_npz_files_are_named(tmp_path):
    good = _npz(tmp_path / "good.npz")
    cases = {"empty.npz": b"", "truncated.npz": good.read_bytes()[:200],
             "text.npz": b"x_train,y_train\n1,2\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{tmp_path / name}'? is not a readable .npz archive"):
            datasets.load("npz", path=str(tmp_path / name))
    np.save(tmp_path / "plain.npy", np.zeros((3, 2)))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="holds a single array"):
        datasets.load("npz", path=str(tmp_path / "plain.npz"))


def test_broken_exports_configs_and_search_states_name_their_file(tmp_path, capsys):
    for label, described in (("lacking name", {"choices": {}}), ("unknown space", {"name": "tinyformer",
                                                                                  "choices": {}})):
        directory = tmp_path / label.replace(" ", "_")
        directory.mkdir()
        (directory / "arch.json").write_text(json.dumps({"choices": {}, "space_config": described}))
        with pytest.raises(ValueError, match=str(directory / "arch.json")):
            export.load(directory)
    code, _, err = _main(capsys, "eval", tmp_path / "unknown_space", "--data", "digits")
    assert code == 2 and "'tinyformer', which is not registered" in err
    config = tmp_path / "latin1.yaml"
    config.write_bytes("seed: 0  # café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"config file '{config}' is not UTF-8"):
        configs.load(config)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(configs.dump(configs.from_dict(TINY_MLP)))
    (run / "search_state.json").write_text('{"history": [[{"depth": 1')
    with pytest.raises(ValueError, match=f"{run / 'search_state.json'}' is damaged"):
        export.pareto_pick(run, 1)


# ---------------------------------------------------------------- 6-10: the user's files

def test_a_search_into_a_users_folder_or_a_locked_run_dir_is_refused(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MLP))
    mine = tmp_path / "mine"
    (mine / "tensorboard").mkdir(parents=True)
    (mine / "tensorboard" / "events").write_text("the user's")
    (mine / "report.txt").write_text("the user's")
    code, _, err = _main(capsys, "search", config, "--out", mine, "--quiet")
    assert code == 2
    _one_error_line(err, "is not empty and not a run directory")
    assert (mine / "tensorboard" / "events").read_text() == "the user's"
    assert sorted(p.name for p in mine.iterdir()) == ["report.txt", "tensorboard"]

    from launch.context import _lock
    run = tmp_path / "run"
    run.mkdir()
    held = _lock(run)  # another process's search in this run dir
    try:
        code, _, err = _main(capsys, "search", config, "--out", run, "--quiet")
        assert code == 2
        _one_error_line(err, "is in use by another nas process")
        assert not (run / "config.yaml").exists()
    finally:
        held.close()


def test_nas_train_takes_an_exports_data_and_never_overwrites_an_export(tmp_path, capsys):
    first = tmp_path / "first"
    code, out, _ = _main(capsys, "train", "--space", "mlp", "--sample", "0", "--data", "digits",
                         "--epochs", "1", "--quiet", "--out", first)
    assert code == 0 and out.startswith("digits:")
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    code, _, err = _main(capsys, "train", "--arch", first, "--epochs", "1", "--quiet", "--out", first)
    assert code == 2 and before == {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    _one_error_line(err, "already exists")
    run = tmp_path / "run"
    run.mkdir()
    first.rename(run / "best")  # a run dir: --arch RUN means its best/
    code, out, _ = _main(capsys, "train", "--arch", run, "--epochs", "1", "--quiet")
    assert code == 0 and out.startswith("digits:"), out  # the export's data set, not mnist1d


def test_nas_export_copies_no_symlink(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    best = tmp_path / "run" / "best"
    best.mkdir(parents=True)
    (best / "arch.json").write_text(json.dumps({"choices": {}, "space_config": {}}))
    (best / "weights").mkdir()
    (best / "weights" / "data").write_text("w")
    os.symlink(secret, best / "link.txt")
    os.symlink(tmp_path, best / "weights" / "up")
    code, _, _ = _main(capsys, "export", tmp_path / "run", "--out", tmp_path / "copy")
    assert code == 0
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["arch.json", "weights", "weights/data"]
    elsewhere = tmp_path / "linked"
    elsewhere.mkdir()
    (elsewhere / "best").symlink_to(best)  # best/ itself a link: its files are the export's
    assert _main(capsys, "export", elsewhere, "--out", tmp_path / "copy2")[0] == 0
    assert sorted(str(p.relative_to(tmp_path / "copy2")) for p in (tmp_path / "copy2").rglob("*")) == copied


# ---------------------------------------------------------------- 11, 12: pool and ties

def test_the_budget_pool_of_a_small_space_is_every_feasible_network():
    from launch import costs
    from launch.phases import supernet
    space = spaces.get("mlp").bind((30,), 2)
    cfg = configs.from_dict({**TINY_MLP, "search": {**TINY_MLP["search"], "max_params": 5000}})
    ctx = types.SimpleNamespace(space=space, cfg=cfg, constraint=costs.constraint(space, cfg.search),
                                say=lambda _: None)
    pool = supernet.feasible_pool(ctx, space)
    brute = {tuple(space.canonical(a).items()) for a in space.enumerate() if space.params(a) <= 5000}
    got = [tuple(space.canonical(space.from_indices(row)).items()) for row in pool]
    assert len(got) == len(set(got)) == len(brute) == 316 and set(got) == brute


def test_pools_of_sub_supernets_stack_and_draws_stay_on_their_own_archs():
    from launch import costs
    from launch.phases import supernet
    from search import oneshot
    space = spaces.get("mlp").bind((30,), 2)
    cfg = configs.from_dict({**TINY_MLP, "search": {**TINY_MLP["search"], "max_params": 5000}})
    ctx = types.SimpleNamespace(space=space, cfg=cfg, constraint=costs.constraint(space, cfg.search),
                                say=lambda _: None)
    subs = [space.restrict("depth", [1]), space.restrict("depth", [2, 3, 4])]
    pools = [supernet.feasible_pool(ctx, sub) for sub in subs]
    assert len(pools[0]) != len(pools[1])
    domains = [jax.tree.map(jnp.asarray, oneshot.domain(space, sub, pool=pool, pool_rows=supernet.POOL_SIZE))
               for sub, pool in zip(subs, pools)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *domains)  # joint training stacks them
    assert stacked.pool.shape == (2, supernet.POOL_SIZE, len(space.names))
    keys = jax.random.split(jax.random.key(0), 4000)
    for pool, dom in zip(pools, domains):
        drawn = {tuple(map(int, row)) for row in jax.vmap(oneshot.draw_index_vector, (0, None))(keys, dom)}
        assert drawn <= {tuple(map(int, row)) for row in pool}
        assert len(drawn) >= 0.9 * len(pool)  # every one of ≤ ~600 archs drawn from 4000 tries


def test_ties_prefer_the_smaller_network():
    from launch.checkpoints import RunState
    from launch.phases import export as export_phase
    from launch.phases.retrain import top_candidates
    space = spaces.get("mlp", max_depth=1, widths=[8, 16, 32]).bind((8,), 10)
    archs = [{"depth": 1, "width_0": w, "activation": "relu"} for w in (32, 8, 16)]
    evaluated = [(archs[0], 0.9), (archs[1], 0.9), (archs[2], 0.8)]
    assert [a["width_0"] for a, _ in top_candidates(space, evaluated, 2, space.params)] == [8, 32]
    records = [{"choices": a, "val_accuracy": acc}
               for a, acc in ((archs[0], 0.9), (archs[2], 0.9), (archs[1], 0.7))]
    ctx = types.SimpleNamespace(space=space, sparse=None)
    state = RunState({}, {"retrain": {"results": records}})
    assert export_phase.chosen_index(ctx, state) == 1  # width 16 ties width 32 and is smaller


# ---------------------------------------------------------------- 14: tables

def test_a_table_export_takes_raw_rows_of_the_users_shape(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8))
    y = np.arange(300) % 2
    x = 1000.0 + 50.0 * (centres[y] + 0.5 * rng.normal(size=(300, 8)))  # far from standardized
    path = tmp_path / "table.npz"
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    out = tmp_path / "model"
    code, text, _ = _main(capsys, "train", "--space", "mlp", "--sample", "0", "--data", "npz",
                          "--data-path", path, "--standardize", "--epochs", "3", "--quiet", "--out", out)
    assert code == 0 and "input (8,)" in text and "standardized" in text
    loaded = export.load(out)
    stats = loaded.info["standardization"]
    np.testing.assert_allclose(stats["mean"], x[:240][np.random.default_rng(0).permutation(240)[48:]].mean(0),
                               rtol=1e-5)
    raw = x[240:].astype(np.float32)
    accuracy = float(np.mean(np.argmax(np.asarray(loaded(raw)), -1) == y[240:]))
    assert accuracy == loaded.info["metrics"]["test_accuracy"] and accuracy > 0.9
    code, text, _ = _main(capsys, "eval", out, "--data", "npz", "--data-path", path)
    assert code == 0 and f"test accuracy {accuracy!r}" in text and "(equal)" in text, text
    export.to_stablehlo(loaded.model, tmp_path, standardization=stats)
    artifact = jax.export.deserialize((tmp_path / export.STABLEHLO_FILE).read_bytes())
    np.testing.assert_allclose(artifact.call(raw), loaded(raw), rtol=1e-5, atol=1e-5)


def test_cnn1d_takes_signals_as_plain_rows():
    import nas
    space = spaces.get("cnn1d").bind((40,), 10)
    arch = space.sample(2)
    model = nas.supernet(space.fix(arch))
    assert model(jnp.zeros((3, 40))).shape == (3, 10)
    assert nas.count_params(model) == space.params(arch)


def test_a_budget_counts_the_exported_network():
    batch = spaces.get("cnn1d", norm="batch").bind((40, 1), 10)
    plain = spaces.get("cnn1d").bind((40, 1), 10)
    costed = batch.costed_as(plain)
    arch = batch.sample(0)
    assert costed.params(arch) == plain.params(arch) > batch.params(arch)
    assert costed.counted_param_shapes(arch) == plain.param_shapes(arch)
    assert costed != batch and costed.restrict("depth_0", [1]).params({**arch, "depth_0": 1}) == \
        plain.params({**arch, "depth_0": 1})


# ---------------------------------------------------------------- 16: what users read

def test_usage_errors_share_the_promised_prefix(capsys):
    code, _, err = _main(capsys, "train", "--sample", "0")
    assert code == 2
    _one_error_line(err, "train: --sample needs --space")


def test_a_proxy_runs_plot_names_its_proxy_and_counts_in_whole_epochs():
    from launch import plots
    from launch.phases.export import trajectory_title
    cfg = configs.from_dict({**TINY_MLP, "search": {**TINY_MLP["search"], "evaluator": "gradsign"}})
    assert trajectory_title(cfg, "mlp", "aging") == "mlp · gradsign at init · aging"
    fig = plots.trajectory_figure([{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)],
                                  [{"evaluations": e, "best_accuracy": 0.5} for e in (2, 4)])
    left, right = fig.axes[:2]
    for axis in (left, right):
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_importing_the_run_leaves_matplotlibs_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import launch.run, launch.plots; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MPLBACKEND": ""}).stdout
    assert out.strip() == "svg"


def test_crc_of_an_array_is_its_bytes_crc():
    from launch.checkpoints import array_checksums
    tree = {"a": jnp.arange(6, dtype=jnp.int32), "b": np.ones(2, np.float32)}
    assert array_checksums(tree) == {"['a']": zlib.crc32(np.arange(6, dtype=np.int32).tobytes()),
                                     "['b']": zlib.crc32(np.ones(2, np.float32).tobytes())}


# ---------------------------------------------------------------- plugins (issue 26, item 3)

PLUGIN = '''
import numpy as np

import spaces
from launch import data
from spaces.mlp import MLPSpace


class TinyMLP(MLPSpace):
    name = "tinymlp"

    def __init__(self, max_depth=2, widths=(8, 16), activations=("relu",), **kw):
        super().__init__(max_depth, widths, activations, **kw)


spaces.register("tinymlp", TinyMLP)


@data.register("toyblobs")
def blobs(n: int = 300):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.normal(size=(3, 6))[y] + 0.3 * rng.normal(size=(n, 6))).astype(np.float32)
    return x[:240], y[:240], x[240:], y[240:]
'''


def test_a_plugin_space_and_data_set_search_export_and_load_in_a_fresh_process(tmp_path, monkeypatch,
                                                                               capsys):
    (tmp_path / "toyplug.py").write_text(PLUGIN)
    config = tmp_path / "plugged.yaml"
    config.write_text(yaml.safe_dump({**TINY_MLP, "space": {"name": "tinymlp"}, "data": {"name": "toyblobs"},
                                      "supernet": {"epochs": 2, "batch_size": 32},
                                      "retrain": {"epochs": 2, "batch_size": 32}}))
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, "search", config, "--out", "run", "--quiet")
    assert code == 2 and "'tinymlp' is not allowed" in err  # not imported: unknown
    assert _main(capsys, "search", config, "--out", "run", "--quiet", "--plugin", "toyplug")[0] == 0
    assert configs.load(tmp_path / "run" / "config.yaml").plugins == ["toyplug"]
    assert json.loads((tmp_path / "run" / "best" / "arch.json").read_text())["plugins"] == ["toyplug"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    load = ("import numpy as np; from launch import export; exported = export.load('run'); "
            "print(exported.space.name, exported(np.zeros((2, 6), np.float32)).shape)")
    out = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["tinymlp", "(2,", "3)"], out.stderr
    evaluated = subprocess.run([sys.executable, "-m", "launch.cli", "eval", "run"], cwd=tmp_path, env=env,
                               capture_output=True, text=True)
    assert evaluated.returncode == 0 and "(equal)" in evaluated.stdout, evaluated.stderr
    elsewhere = subprocess.run([sys.executable, "-m", "launch.cli", "eval", str(tmp_path / "run")],
                               cwd=tmp_path.parent, env=env, capture_output=True, text=True)
    assert elsewhere.returncode == 2 and "cannot import 'toyplug'" in elsewhere.stderr, elsewhere.stderr
