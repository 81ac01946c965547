"""Sparse joint search: searchable sparsity levels, DST supernet steps, pruning, `nas search`."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from flax import nnx

import nas
import spaces
import sparse
from launch import cli
from launch import config as configs
from launch import data as datasets
from launch.export import load as load_export
from launch.prune import prune
from launch.train import SparseTraining, TrainConfig, accuracy, train
from search import engine, oneshot
from search.population import PopulationEvaluator
from spaces.core import Space
from sparse import masks as masklib
from sparse.levels import Levels, SliceCounts


def _mlp_space():
    return spaces.get("mlp", max_depth=2, widths=(16, 32), activations=("relu",)).bind((40,), 10)


def test_levels_are_nested_magnitude_masks():
    params = {"a": {"kernel": jax.random.normal(jax.random.PRNGKey(0), (6, 10))},
              "b": {"kernel": jax.random.normal(jax.random.PRNGKey(1), (10, 3))}}
    levels = Levels((("a.kernel", "sparsity"), ("b.kernel", "sparsity")), (0.5, 0.8, 0.9))
    ranks = levels.ranks(params)
    previous = None
    for k, s in enumerate(levels.options):
        probs = {"sparsity": np.eye(3, dtype=np.float32)[k]}
        out = levels.apply(params, probs, ranks)
        for layer in ("a", "b"):
            w, kept = np.asarray(params[layer]["kernel"]), np.asarray(out[layer]["kernel"])
            nonzero = kept != 0
            assert nonzero.sum() == round(w.size * (1 - s))
            assert np.abs(w[nonzero]).min() >= np.abs(w[~nonzero]).max()
            if previous is not None:
                assert not np.any(nonzero & ~previous[layer])
        previous = {layer: np.asarray(out[layer]["kernel"]) != 0 for layer in ("a", "b")}
    soft = levels.apply(params, {"sparsity": np.array([0.2, 0.3, 0.5], np.float32)}, ranks)
    hard = [levels.apply(params, {"sparsity": np.eye(3, dtype=np.float32)[k]}, ranks) for k in range(3)]
    expected = 0.2 * hard[0]["a"]["kernel"] + 0.3 * hard[1]["a"]["kernel"] + 0.5 * hard[2]["a"]["kernel"]
    np.testing.assert_allclose(soft["a"]["kernel"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="ascending"):
        Levels((), (0.9, 0.5))


def test_space_sparsity_choices_round_trip_and_param_shapes():
    space = spaces.get("cnn1d").bind((40, 1), 10).with_sparsity([0.9, 0.8])
    assert space.choices["sparsity"] == (0.8, 0.9)
    arch = space.sample(3)
    assert space.sparsity_of(arch, "head.kernel") == arch["sparsity"]
    assert "sparsity" not in space.structure(arch)
    assert space.params(arch) == space.without_sparsity().params(space.structure(arch))
    assert spaces.from_dict(space.to_dict()) == space
    per_layer = _mlp_space().with_sparsity([0.5], ["head.kernel"])
    assert per_layer.sparsity_of({"sparsity:head.kernel": 0.5}, "head.kernel") == 0.5
    with pytest.raises(ValueError, match="already has"):
        space.with_sparsity([0.5])
    # closed-form shapes of the shipped spaces = the abstractly built compact model
    for bound in (spaces.get("cnn1d").bind((40, 1), 10), spaces.get("mlp").bind((64,), 10)):
        for seed in range(8):
            arch = bound.sample(seed)
            generic = Space._param_shapes.__wrapped__(bound, tuple(arch.items()))
            assert bound.param_shapes(arch) == dict(generic)
            assert sum(math.prod(s) for s in bound.param_shapes(arch).values()) == bound.params(arch)


def test_sparse_supernet_step_keeps_zeros_and_exact_counts():
    space = _mlp_space()
    model = nas.supernet(space, seed=0)
    graphdef, params, rest = engine.split(model)
    names = masklib.kernel_names(params)
    updater = sparse.updaters.get("rigl", sparsity=0.8, total_steps=40, update_every=3)
    tx = sparse.wrap(optax.adam(1e-2), updater, names)
    opt = tx.init(params)
    levels_space = space.with_sparsity([0.8, 0.9])
    levels = Levels(tuple((n, "sparsity") for n in names), (0.8, 0.9))
    step = oneshot.make_step(graphdef, levels_space, tx, "sandwich", num_random=1, levels=levels)
    counts = {n: int(opt.masks[n].sum()) for n in names}
    data = datasets.load("synthetic", input_shape=(40,), n_train=256, n_test=32)
    changed = 0
    for t in range(12):
        before = {n: np.asarray(opt.masks[n]) for n in names}
        params, rest, opt, loss = step(params, rest, opt, *data.train.read(np.arange(32)),
                                       jax.random.PRNGKey(t))
        assert np.isfinite(float(loss))
        leaves = masklib.named_leaves(params)
        for n in names:
            mask = np.asarray(opt.masks[n])
            assert mask.sum() == counts[n]
            assert not np.any(np.asarray(leaves[n])[~mask])
            changed += int(np.any(mask != before[n]))
    assert changed > 0
    assert step._cache_size() == 1


def test_population_with_levels_equals_arch_by_arch():
    space = _mlp_space()
    model = nas.supernet(space, seed=1)
    graphdef, params, rest = engine.split(model)
    names = masklib.kernel_names(params)
    searched = space.with_sparsity([0.5, 0.9])
    levels = Levels(tuple((n, "sparsity") for n in names), (0.5, 0.9))
    data = datasets.load("synthetic", input_shape=(40,), n_train=64, n_test=64)
    archs = [searched.sample(s) for s in range(6)]
    evaluator = PopulationEvaluator(graphdef, params, rest, searched, *data.test.arrays(),
                                    chunk=4, levels=levels)
    got = evaluator.evaluate(archs)
    for arch, acc in zip(archs, got):
        at = levels.apply(params, searched.one_hot(arch), levels.ranks(params))
        x_test, y_test = data.test.arrays()
        logits, _ = engine.apply(graphdef, at, rest, jnp.asarray(x_test), searched.one_hot(arch), False)
        assert acc == pytest.approx(float(np.mean(np.argmax(logits, -1) == y_test)))


def test_train_sparse_keeps_given_masks_and_prune_meets_the_budget():
    data = datasets.load("synthetic", input_shape=(40,), n_train=512, n_test=128, data_seed=3)
    space = _mlp_space()
    arch = {"depth": 2, "width_0": 32, "width_1": 32, "activation": "relu"}
    model = nas.supernet(space.fix(arch), seed=0)
    cfg = TrainConfig(epochs=3, batch_size=64, optimizer="sgd", learning_rate=0.05, warmup_epochs=0)
    dense = train(model, data, cfg, progress=False)
    names = ["hidden.0.kernel", "hidden.1.kernel", "head.kernel"]
    sizes = {n: math.prod(masklib.named_leaves(nnx.state(model, nnx.Param))[n].shape) for n in names}
    keep = int(0.2 * sum(sizes.values()))
    result = prune(dense.model, data, names, keep, rate=0.6, grid=11, calibration=64,
                   finetune=TrainConfig(epochs=1, batch_size=64))
    kept = sum(int(m.sum()) for m in result.masks.values())
    assert kept <= keep and kept >= 0.9 * keep
    assert [r["budget"] for r in result.rounds][-1] == keep
    assert result.rounds[0]["kept"] >= result.rounds[1]["kept"]
    leaves = masklib.named_leaves(nnx.state(result.model, nnx.Param))
    for n in names:
        assert not np.any(np.asarray(leaves[n])[~result.masks[n]])
    assert result.test_accuracy == pytest.approx(accuracy(result.model, *data.test.arrays()))
    # fixed masks survive further training exactly (static updater, momentum included)
    fixed = SparseTraining("static", masks=result.masks)
    again = train(result.model, data, cfg, progress=False, sparse=fixed)
    leaves = masklib.named_leaves(nnx.state(again.model, nnx.Param))
    for n in names:
        np.testing.assert_array_equal(again.masks[n], result.masks[n])
        assert not np.any(np.asarray(leaves[n])[~result.masks[n]])


def test_sparse_config_errors():
    with pytest.raises(ValueError, match="supernet.method = 'darts'"):
        configs.from_dict({"supernet": {"method": "darts"}, "sparse": {"sparsity": 0.9}})
    with pytest.raises(ValueError, match="either sparse.sparsity"):
        configs.from_dict({"sparse": {"sparsity": 0.9, "levels": [0.8]}})
    with pytest.raises(ValueError, match="need a sparse search"):
        configs.from_dict({"search": {"objectives": ["accuracy", "nonzero"]}})
    with pytest.raises(ValueError, match="sparse.allocation"):
        configs.from_dict({"sparse": {"sparsity": 0.9, "allocation": "optimal"}})
    assert configs.sparse_levels(configs.from_dict({"sparse": {"levels": [0.9, 0.8]}})) == [0.8, 0.9]


SPARSE_TINY = {
    "seed": 0, "space": {"name": "cnn1d", "options": {"norm": "batch"}},
    "data": {"name": "mnist1d", "val_fraction": 0.2},
    "supernet": {"method": "sandwich", "epochs": 1, "batch_size": 128},
    "search": {"controller": "aging", "evaluations": 16, "generation": 4, "population": 8,
               "sample": 4, "candidates": 1, "max_nonzero": 3000},
    "retrain": {"epochs": 1, "space_options": {"norm": "none"}},
    "sparse": {"levels": [0.8, 0.9], "update_every": 10, "prune_rate": 0.6, "finetune_epochs": 1,
               "final_epochs": 1, "grid": 12, "calibration": 128},
}


def test_sparse_search_exports_exact_zeros_within_the_budget(tmp_path):
    config = tmp_path / "sparse.yaml"
    config.write_text(yaml.safe_dump(SPARSE_TINY))
    run = tmp_path / "run"
    assert cli.main(["search", str(config), "--out", str(run), "--quiet"]) == 0
    info = json.loads((run / "best" / "arch.json").read_text())
    space, arch, model = load_export(run / "best")
    counted = masklib.count_nonzero(nnx.state(model, nnx.Param))
    assert sum(counted.values()) == info["nonzero_params"] <= 3000
    for name, layer in info["sparsity"]["layers"].items():
        assert counted[name] == layer["nonzero"]
    assert info["sparsity"]["target"]["sparsity"] in (0.8, 0.9)
    # The pick is charged (and pruned to) the nonzeros its slice of the trained supernet's masks
    # holds at its level, which can be a little denser than the level's nominal sparsity.
    assert info["sparsity"]["prunable_sparsity"] >= info["sparsity"]["target"]["sparsity"] - 0.01
    history = json.loads((run / "search_state.json").read_text())["history"]
    searched = spaces.get("cnn1d", norm="batch").bind((40, 1), 10).with_sparsity([0.8, 0.9])
    for entry in history:
        entry_arch = entry[0]
        shapes = searched.param_shapes(entry_arch)
        nonzero = sum(round(math.prod(s) * (1 - entry_arch["sparsity"])) if n.endswith("kernel")
                      else math.prod(s) for n, s in shapes.items())
        assert nonzero <= 3000
    data = datasets.load("mnist1d", seed=0, val_fraction=0.2)
    reported = info["metrics"]["test_accuracy"]
    assert accuracy(model, *data.test.arrays()) == pytest.approx(reported, abs=1e-9)
    assert "dense_test_accuracy" in info["search"]["candidates"][0]
    # compressed storage holds the same weights; the compact export has the same outputs
    stored = sparse.storage.load(run / "best" / "sparse_weights.npz")
    for name, value in masklib.named_leaves(nnx.state(model, nnx.Param)).items():
        np.testing.assert_array_equal(stored[name], np.asarray(value))
    _, _, compact = load_export(run / "best" / "compact")
    assert info["export"]["compact"]["params"] == nas.count_params(compact) <= info["params"]
    np.testing.assert_allclose(*(f(data.test.read(np.arange(64))[0]) for f in (compact, model)), atol=1e-5)


def _evaluated_nonzero(model, setup, space, arch):
    """Nonzeros of the sub-network the search evaluates at `arch`: prunable kernels
    counted by their exact zeros, every other parameter dense."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    masked = params
    if setup.levels is not None:
        masked = setup.levels.apply(params, space.one_hot(arch), setup.levels.ranks(params))
    sub = nas.extract(nnx.merge(graphdef, masked, rest), space.structure(arch))
    total = 0
    for name, leaf in masklib.named_leaves(nnx.state(sub, nnx.Param)).items():
        total += int(np.count_nonzero(np.asarray(leaf))) if name in setup.names else leaf.size
    return total


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
@pytest.mark.parametrize("searched", [False, True])
def test_charged_nonzeros_are_those_of_the_evaluated_sub_network(distribution, searched):
    from launch.costs import sparse_setup
    sparse_cfg = {"distribution": distribution, **({"levels": [0.5, 0.8]} if searched
                                                   else {"sparsity": 0.5})}
    cfg = configs.from_dict({"space": {"name": "mlp"}, "sparse": sparse_cfg})
    base = spaces.get("mlp", max_depth=2, widths=(16, 32, 64), activations=("relu",)).bind((40,), 10)
    model = nas.supernet(base, seed=0)
    space, setup = sparse_setup(cfg, base, model)
    # A DST supernet at the lowest level: random masks of the distribution's densities, with
    # the prefix (what small archs use, trained every sandwich step) holding the larger weights.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    shapes = masklib.shapes_of(params, setup.names)
    low = min(configs.sparse_levels(cfg))
    dst = masklib.random_masks(jax.random.key(1), shapes, masklib.densities(shapes, low, distribution))

    def trained(name, weight):
        prefix = 1.0 + 3.0 * (np.arange(weight.shape[-1]) < 16)
        return weight * dst[name] * jnp.asarray(prefix, weight.dtype)
    model = nnx.merge(graphdef, masklib.map_named(trained, params, setup.names), rest)
    setup.measure(nnx.state(model, nnx.Param))
    structures = (space.extremes(space.params)[:2])
    levels = configs.sparse_levels(cfg) if searched else [None]
    for structure in structures:
        for level in levels:
            arch = {**structure, **({"sparsity": level} if searched else {})}
            charged = setup.nonzero(space, arch)
            evaluated = _evaluated_nonzero(model, setup, space, arch)
            assert abs(charged - evaluated) <= 0.01 * evaluated, (structure, level, charged, evaluated)


def test_slice_counts_equal_brute_force_over_prefix_and_centred_slices():
    mask = np.random.default_rng(0).random((7, 5, 6, 9)) < 0.4   # [k, k, in, out] with k = 7 and 5
    counts = SliceCounts(mask, centred=(0, 1))
    for k0 in (1, 3, 5, 7):
        for k1 in (1, 3, 5):
            for cin in (0, 2, 6):
                for cout in (1, 9):
                    lo0, lo1 = (7 - k0) // 2, (5 - k1) // 2
                    expected = mask[lo0:lo0 + k0, lo1:lo1 + k1, :cin, :cout].sum()
                    assert counts((k0, k1, cin, cout)) == expected
    with pytest.raises(ValueError, match="does not fit"):
        counts((9, 5, 6, 9))


def test_pruning_rounds_remove_a_fifth_of_the_kept_weights_until_the_target():
    from launch.prune import round_budgets
    # The reference schedule: after round t a dense start keeps 0.8^t, then exactly the target.
    assert round_budgets(1000, 100) == [800, 640, 512, 410, 328, 262, 210, 168, 134, 107, 100]
    assert round_budgets(1000, 500, rate=0.5) == [500]
    assert round_budgets(1000, 1000) == [1000]
    with pytest.raises(ValueError, match="rate"):
        round_budgets(1000, 100, rate=1.0)


def test_a_budget_below_the_measured_sparsest_arch_is_one_clear_error():
    from launch.costs import check_measured_budget, sparse_setup
    cfg = configs.from_dict({"space": {"name": "mlp"},
                             "sparse": {"levels": [0.5, 0.8], "distribution": "uniform"},
                             "search": {"max_nonzero": 10**9}})
    base = spaces.get("mlp", max_depth=2, widths=(16, 32, 64), activations=("relu",)).bind((40,), 10)
    model = nas.supernet(base, seed=0)
    space, setup = sparse_setup(cfg, base, model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def prefix_heavy(name, weight):   # small archs' slices hold the largest weights
        return weight * jnp.asarray(1.0 + 3.0 * (np.arange(weight.shape[-1]) < 16), weight.dtype)
    setup.measure(masklib.map_named(prefix_heavy, params, setup.names))
    measured = min(setup.nonzero(space, a) for a in space.enumerate())
    check_measured_budget(space, cfg.search, setup)                      # a generous budget passes
    cfg.search.max_nonzero = measured - 1
    with pytest.raises(ValueError, match=f"search.max_nonzero = {measured - 1}: after supernet training"):
        check_measured_budget(space, cfg.search, setup)
