"""Gradient-matching splits: distances, min cut against brute force, the decision a
constructed conflict makes split, restricted samplers and domains, and a split run's
sub-supernets equal to their parent right after the split."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nas
import spaces
from nas import layers
from search import engine, oneshot, samplers, splits

# ---------------------------------------------------------------- min cut


def brute_force_cut(d: np.ndarray, smallest: int = 1) -> float:
    """The largest Σ_{i∈A, j∉A} D_ij over every subset A with ≥ `smallest` options on each side."""
    k = len(d)
    best = -math.inf
    for size in range(smallest, k - smallest + 1):
        for group in itertools.combinations(range(k), size):
            inside = np.isin(np.arange(k), group)
            best = max(best, sum(d[i, j] for i in range(k) for j in range(k) if inside[i] and not inside[j]))
    return best


def _random_distance(rng, k):
    a = rng.uniform(0, 2, (k, k))
    d = (a + a.T) / 2
    np.fill_diagonal(d, 0)
    return d


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 8])
def test_min_cut_equals_brute_force(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        d = _random_distance(rng, k)
        group, cut = splits.min_cut(d)
        smallest = 1 if k < 4 else 2
        assert cut == pytest.approx(brute_force_cut(d, smallest), rel=1e-12)
        assert group[0] and smallest <= group.sum() <= k - smallest
        assert splits.cut_value(d, group) == pytest.approx(cut)
        # With a filter, the best partition it accepts.
        accepted = [g for g in itertools.combinations(range(1, k), k // 2)]
        def accepts(g):
            return tuple(np.flatnonzero(~g)) in accepted
        filtered = splits.min_cut(d, accepts)
        if filtered is not None:
            best = max(splits.cut_value(d, ~np.isin(np.arange(k), a)) for a in accepted
                       if k - len(a) >= smallest)
            assert filtered[1] == pytest.approx(best)
    assert splits.min_cut(d, lambda g: False) is None


def test_min_cut_beyond_exhaustive_is_a_local_optimum_near_the_best():
    rng = np.random.default_rng(0)
    k = splits.EXHAUSTIVE + 2
    for _ in range(3):
        d = _random_distance(rng, k)
        group, cut = splits.min_cut(d)
        assert 2 <= group.sum() <= k - 2
        for i in range(k):  # no single option's move improves the cut
            if (group == group[i]).sum() > 2:
                moved = group.copy()
                moved[i] = not moved[i]
                assert splits.cut_value(d, moved) <= cut + 1e-9
        assert cut >= 0.95 * brute_force_cut(d, 2)


def test_a_lone_outlier_does_not_take_a_sub_supernet():
    d = np.full((5, 5), 0.1)
    d[4, :4] = d[:4, 4] = 1.9  # option 4 far from all others
    np.fill_diagonal(d, 0)
    group, _ = splits.min_cut(d)
    assert 2 <= group.sum() <= 3
    assert splits.min_cut(d[:3, :3] + np.diag([0, 0, 0]))[0].sum() in (1, 2)  # 3 options: 1 | 2


def test_two_clusters_are_separated():
    # Options 0, 2, 4 against 1, 3: near within, far across.
    side = np.array([0, 1, 0, 1, 0])
    d = np.where(side[:, None] == side[None, :], 0.1, 1.9)
    np.fill_diagonal(d, 0)
    group, cut = splits.min_cut(d)
    assert group.tolist() == [True, False, True, False, True]
    assert cut == pytest.approx(6 * 1.9)


def test_distances_match_numpy():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 30)).astype(np.float32)
    cosine = np.asarray(splits.distances(jnp.asarray(g), "cosine"))
    l2 = np.asarray(splits.distances(jnp.asarray(g), "l2"))
    for i in range(4):
        for j in range(4):
            cos = g[i] @ g[j] / np.linalg.norm(g[i]) / np.linalg.norm(g[j])
            assert cosine[i, j] == pytest.approx(1 - cos, abs=1e-5)
            assert l2[i, j] == pytest.approx(np.sum((g[i] - g[j]) ** 2), rel=1e-4, abs=1e-4)
    with pytest.raises(ValueError, match="unknown split distance 'l1'"):
        splits.distances(jnp.asarray(g), "l1")


# ---------------------------------------------------------------- a constructed conflict

SIGNS = (1.0, 1.0, -1.0, -1.0)  # options of `conflict`: the first two against the last two
SCALES = (1.0, 2.0, 3.0)        # options of `agree`: the same direction, other magnitudes


class ConflictNet(nas.Supernet):
    """logits = s·a·(x W) + b_o: decision `conflict` sets the sign s (its options pull the
    shared W in opposite directions) and adds its option's own bias b_o; decision `agree`
    sets a positive scale a. At W = 0, b = 0 every option sees the same softmax residual,
    so the options' gradients of W are exactly parallel or opposed."""

    def __init__(self, space, *, rngs: nnx.Rngs):
        self.space = space
        self.shared = layers.Dense(space.input_shape[0], space.num_classes, rngs=rngs, use_bias=False)
        self.shared.kernel[...] = jnp.zeros_like(self.shared.kernel[...])
        self.own_bias = nnx.Param(jnp.zeros((len(SIGNS), space.num_classes)))

    def forward(self, x, probs, train: bool = False):
        sign = probs["conflict"] @ jnp.asarray(SIGNS)
        scale = probs["agree"] @ jnp.asarray(SCALES)
        return sign * scale * self.shared(x) + probs["conflict"] @ self.own_bias[...]


def test_the_conflicting_decision_is_split_between_its_opposed_options():
    space = spaces.Space.from_choices({"conflict": ("a", "b", "c", "d"), "agree": (1, 2, 3)},
                                      name="conflict").bind((6,), 3)
    model = ConflictNet(space, rngs=nnx.Rngs(0))
    graphdef, params, rest = engine.split(model)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 32), jnp.int32)
    # Not uniform: a uniform `conflict` mixing would cancel the sign and every gradient.
    mixing = {"conflict": jnp.asarray([0.4, 0.3, 0.2, 0.1]), "agree": jnp.full((3,), 1 / 3)}
    found = []
    for name in space.names:
        shared = jnp.all(splits.option_support(graphdef, name, params, rest, x, y, mixing), axis=0)
        d = np.asarray(splits.option_distances(graphdef, name, "cosine", params, rest, x, y, mixing, shared))
        found.append(splits.candidate(name, space.choices[name], d))
    # Only W is shared by `conflict`'s options: each own bias row moves under its option alone.
    shared = np.asarray(jnp.all(splits.option_support(graphdef, "conflict", params, rest, x, y, mixing), 0))
    assert shared.sum() == 6 * 3
    # A filter that refuses the best partition: the next best is taken.
    refused = splits.candidate("conflict", space.choices["conflict"], np.asarray(found[0].matrix),
                               lambda a, b: sorted([a, b]) != [["a", "b"], ["c", "d"]])
    assert refused.groups != [["a", "b"], ["c", "d"]] and refused.cut < 8
    conflict, agree = found
    # The own biases are left out: only the shared W's gradients are compared, which are
    # exactly parallel (distance 0) or opposed (distance 2).
    np.testing.assert_allclose(np.asarray(conflict.matrix),
                               1 - np.outer(SIGNS, SIGNS), atol=1e-5)
    # `agree`'s options scale W's gradient but not the biases' (all used under the mixed
    # `conflict`): nearly parallel, never opposed.
    assert np.max(agree.matrix) < 0.1
    chosen = splits.choose(found)
    assert chosen.decision == "conflict"
    assert chosen.groups == [["a", "b"], ["c", "d"]]
    assert chosen.cut == pytest.approx(8.0, abs=1e-4)

    tree = splits.SplitTree()
    parents = tree.split_round([(chosen, found)], epoch=3)
    assert parents == [0, 0]
    assert tree.leaves == [{"conflict": ["a", "b"]}, {"conflict": ["c", "d"]}]
    assert tree.space(space, 1).choices["conflict"] == ("c", "d")
    assert tree.eligible(space, 0) == ["agree"]
    assert splits.SplitTree.from_dict(tree.to_dict()) == tree
    assert "split the whole space on conflict → ['a', 'b'] | ['c', 'd']" in tree.describe()


def test_choose_with_nothing_left_names_the_reason():
    with pytest.raises(ValueError, match="no decision is left to split"):
        splits.choose([])


# ---------------------------------------------------------------- restricted sampling

ALLOWED = np.array([True, False, True, True, False])


@pytest.mark.parametrize("name", samplers.names())
def test_restricted_samplers_are_the_samplers_of_the_kept_options(name):
    sampler = samplers.get(name)
    alpha = jnp.asarray([0.3, 2.0, -0.5, 0.1, 1.5])
    kept = jnp.asarray(alpha[ALLOWED])
    keys = jax.random.split(jax.random.key(0), 4000)
    allowed = {"c": jnp.asarray(ALLOWED)}
    restricted = jax.vmap(lambda k: sampler.sample({"c": alpha}, k, 0.5, allowed)["c"])(keys)
    alone = jax.vmap(lambda k: sampler.sample({"c": kept}, k, 0.5)["c"])(keys)
    assert np.all(np.asarray(restricted)[:, ~ALLOWED] == 0)
    np.testing.assert_allclose(np.asarray(restricted).sum(1), 1, atol=1e-5)
    # Same distribution over the kept options (deterministic samplers: the same values).
    np.testing.assert_allclose(np.asarray(restricted)[:, ALLOWED].mean(0), np.asarray(alone).mean(0),
                               atol=0.03)
    grad = jax.grad(lambda a: jnp.sum(sampler.sample({"c": a}, keys[0], 0.5, allowed)["c"] * jnp.arange(5.0))
                    + sampler.penalty({"c": a}, allowed))(alpha)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.asarray(grad)[~ALLOWED] == 0)
    assert float(sampler.penalty({"c": alpha}, allowed)) == pytest.approx(
        float(sampler.penalty({"c": kept})), rel=1e-5)


def test_sparsemax_of_the_allowed_entries_alone():
    z = jnp.asarray([0.9, 5.0, 0.7, 0.2, 4.0])
    got = np.asarray(samplers.sparsemax(z, jnp.asarray(ALLOWED)))
    np.testing.assert_allclose(got[ALLOWED], np.asarray(samplers.sparsemax(z[ALLOWED])), atol=1e-6)
    assert np.all(got[~ALLOWED] == 0)


def test_a_domain_draws_only_its_kept_options_uniformly():
    space = spaces.get("cnn1d").bind((40, 1), 10)
    sub = space.restrict("channels_0", [16, 32]).restrict("kernel_2", [5])
    dom = jax.tree.map(jnp.asarray, oneshot.domain(space, sub))
    draws = np.asarray(jax.vmap(lambda k: oneshot.draw_index_vector(k, dom))(
        jax.random.split(jax.random.key(0), 3000)))
    names = list(space.names)
    channels = np.bincount(draws[:, names.index("channels_0")], minlength=4)
    assert channels[0] == channels[2] == 0 and abs(channels[1] - channels[3]) < 200
    assert set(draws[:, names.index("kernel_2")]) == {1}
    assert set(draws[:, names.index("depth_1")]) == {0, 1, 2}
    # The whole space's domain draws exactly what random_index_vector draws.
    whole = jax.tree.map(jnp.asarray, oneshot.domain(space))
    key = jax.random.key(5)
    sizes = [len(o) for o in space.choices.values()]
    np.testing.assert_array_equal(oneshot.draw_index_vector(key, whole),
                                  oneshot.random_index_vector(key, sizes))
    high, low = sub.extremes(sub.params)[1], sub.extremes(sub.params)[0]
    assert sub.validate(space.from_indices(np.asarray(dom.max_arch))) == high
    assert sub.validate(space.from_indices(np.asarray(dom.min_arch))) == low


# ---------------------------------------------------------------- a split run's sub-supernets

def _context(tmp_path, method, training="sequential"):
    from launch import config as configs
    from launch.context import setup
    cfg = configs.from_dict({
        "seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits", "val_fraction": 0.2},
        "supernet": {"method": method, "epochs": 2, "batch_size": 64},
        "search": {"controller": "aging" if method == "sandwich" else "argmax"},
        "split": {"epochs": [1], "batches": 2, "training": training}})
    return setup(cfg, tmp_path / method, progress=False, echo=lambda text: None)


def _logits(ctx, own, arch, x):
    logits, _ = engine.apply(ctx.graphdef, own["params"], own["rest"], x, ctx.space.one_hot(arch),
                             train=False)
    return np.asarray(logits)


@pytest.mark.parametrize("method", ["sandwich", "drnas"])
def test_sub_supernets_equal_their_parent_right_after_the_split(tmp_path, method):
    from launch.checkpoints import RunState
    from launch.phases import supernet
    ctx = _context(tmp_path, method)
    arrays, meta = supernet.init(ctx)
    state = RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
    trainer = supernet._Trainer(ctx, meta)
    stepper = supernet._stepper(ctx, trainer, arrays, meta)
    key = jax.random.key(0)
    for step in range(3):  # trained a little: the parent is not at its initialisation
        x, y = next(trainer.batches)
        xv, yv = next(trainer.arch_batches) if ctx.gradient else (None, None)
        stepper.step(x, y, xv, yv, jax.random.fold_in(key, step), jnp.float32(0.1))
    stepper.write(arrays)
    parent = supernet._own(arrays, 0)
    supernet._split_round(ctx, state, trainer, stepper, arrays, step=trainer.steps_per_epoch)
    tree = supernet.tree(state)
    assert tree.size == 2 and len(tree.splits) == 1
    x = np.asarray(ctx.data.val.read(np.arange(32))[0])
    for i, sub_space in enumerate(supernet.sub_supernets(ctx, state)):
        child = supernet.own(ctx, state, i)
        for leaf, parent_leaf in zip(jax.tree.leaves(child), jax.tree.leaves(parent)):
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(parent_leaf))
        for arch in [sub_space.sample(s) for s in range(6)]:
            np.testing.assert_array_equal(_logits(ctx, child, arch, x), _logits(ctx, parent, arch, x))
        if ctx.gradient:  # the child's mixing is the parent's, renormalised over its options
            allowed = supernet.allowed(ctx, state, i)
            for name, logits in child["alpha"].items():
                kept = np.asarray(allowed[name])
                got = np.asarray(samplers.get("darts").sample({name: logits}, None, 0.0, allowed)[name])
                want = np.asarray(jax.nn.softmax(np.asarray(parent["alpha"][name])[kept]))
                np.testing.assert_allclose(got[kept], want, rtol=1e-6)
    groups = tree.splits[0]["groups"]
    assert [s.choices[tree.splits[0]["decision"]] for s in supernet.sub_supernets(ctx, state)] == \
        [tuple(g) for g in groups]


@pytest.mark.parametrize("method", ["sandwich", "gdas"])
def test_joint_training_steps_like_one_after_another(tmp_path, method):
    from launch.checkpoints import RunState
    from launch.phases import supernet
    finals = {}
    for training in ("joint", "sequential"):
        ctx = _context(tmp_path / training, method, training)
        arrays, meta = supernet.init(ctx)
        state = RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
        trainer = supernet._Trainer(ctx, meta)
        stepper = supernet._split_round(ctx, state, trainer, supernet._stepper(ctx, trainer, arrays, meta),
                                        arrays, step=trainer.steps_per_epoch)
        assert stepper.joint == (training == "joint") and stepper.count == 2
        for step in range(3):
            x, y = next(trainer.batches)
            xv, yv = next(trainer.arch_batches) if ctx.gradient else (None, None)
            stepper.step(x, y, xv, yv, jax.random.fold_in(jax.random.key(1), step), jnp.float32(0.2))
        stepper.write(arrays)
        finals[training] = jax.tree.map(np.asarray, supernet._own(arrays, None))
    for joint, sequential in zip(jax.tree.leaves(finals["joint"]), jax.tree.leaves(finals["sequential"])):
        np.testing.assert_allclose(joint, sequential, rtol=2e-4, atol=2e-5)


def test_split_config_errors_name_the_field_and_value():
    from launch import config as configs
    base = {"supernet": {"epochs": 10}}
    cases = [
        ({"split": {"epochs": [10]}}, r"split.epochs = \[10\]: increasing supernet epochs in \[1, "
                                      r"supernet.epochs = 10\)"),
        ({"split": {"epochs": [5, 3]}}, r"split.epochs = \[5, 3\]"),
        ({"split": {"epochs": [3], "decisions": ["chanels_0"]}},
         r"'chanels_0' is not a choice of space 'cnn1d'.*channels_0"),
        ({"split": {"epochs": [3], "distance": "l1"}}, r"split.distance = 'l1' is not allowed"),
        ({"split": {"epochs": [3], "training": "parallel"}}, r"split.training = 'parallel'"),
        ({"split": {"epochs": [3], "batches": 0}}, r"split.batches = 0: must be ≥ 1"),
        ({"split": {"epochs": [3]}, "search": {"evaluator": "gradsign"}}, r"trains none"),
        ({"split": {"epochs": [3]}, "retrain": {"mode": "finetune"}}, r"retrain them from scratch"),
        ({"split": {"epochs": [3]}, "sparse": {"sparsity": 0.5}}, r"dense-only"),
        ({"split": {"epochs": [3, 6], "decisions": ["depth_0"]}},
         r"2 rounds of splits need as many splittable decisions; there are 1"),
        ({"split": {"only": 0}}, r"split.only = 0 needs split.epochs"),
        ({"split": {"epochs": [3, 6], "only": 4}}, r"split.only = 4: .* an int in \[0, 4\)"),
        ({"split": {"epochs": [3], "only": 1, "as_trials": True}}, r"`nas tune` sets split.only"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            configs.from_dict({**base, **extra})
    cfg = configs.from_dict({**base, "split": {"epochs": [3, 6], "decisions": ["depth_0", "channels_1"]}})
    assert cfg.split.epochs == [3, 6] and cfg.split.training == "auto"


def test_restart_gives_the_last_children_fresh_weights_and_adam_state_but_keeps_the_schedule(tmp_path):
    import optax

    from launch import config as configs
    from launch.checkpoints import RunState
    from launch.context import setup
    from launch.phases import supernet
    cfg = configs.from_dict({
        "seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits", "val_fraction": 0.2},
        "supernet": {"method": "sandwich", "epochs": 2, "batch_size": 64},
        "split": {"epochs": [1], "batches": 1, "restart": True}})
    ctx = setup(cfg, tmp_path / "run", progress=False, echo=lambda text: None)
    arrays, meta = supernet.init(ctx)
    state = RunState({supernet.NAME: arrays}, {supernet.NAME: meta, "phases_done": []})
    trainer = supernet._Trainer(ctx, meta)
    stepper = supernet._stepper(ctx, trainer, arrays, meta)
    for step in range(3):
        x, y = next(trainer.batches)
        stepper.step(x, y, None, None, jax.random.key(step), jnp.float32(0.1))
    stepper.write(arrays)
    parent = supernet._own(arrays, 0)
    supernet._split_round(ctx, state, trainer, stepper, arrays, step=trainer.steps_per_epoch)

    def states(opt, kind):
        return [s for s in jax.tree.leaves(opt, is_leaf=lambda n: isinstance(n, kind)) if isinstance(s, kind)]
    for i in range(2):
        child = supernet.own(ctx, state, i)
        assert not np.array_equal(np.asarray(jax.tree.leaves(child["params"])[0]),
                                  np.asarray(jax.tree.leaves(parent["params"])[0]))
        adam = states(child["opt"], optax.ScaleByAdamState)
        assert adam and all(int(s.count) == 0 for s in adam)
        assert all(float(jnp.abs(m).max()) == 0 for s in adam for m in jax.tree.leaves(s.mu))
        schedule = states(child["opt"], optax.ScaleByScheduleState)
        assert schedule and all(int(s.count) == 3 for s in schedule)


def test_split_only_trains_and_searches_its_sub_supernet_exactly_as_the_full_run(tmp_path):
    from launch import config as configs
    from launch.context import setup
    from launch.phases import search, supernet
    from launch.run import restore, run_search
    raw = {"seed": 0, "space": {"name": "mlp"}, "data": {"name": "digits", "val_fraction": 0.2},
           "supernet": {"method": "uniform", "epochs": 2, "batch_size": 64},
           "search": {"evaluations": 8, "generation": 4, "population": 8, "sample": 2, "candidates": 1},
           "retrain": {"epochs": 1, "batch_size": 64},
           "split": {"epochs": [1], "batches": 1, "training": "sequential"}}
    finals = {}
    for only in (None, 1):
        cfg = configs.from_dict({**raw, "split": {**raw["split"], "only": only}})
        run_dir = tmp_path / str(only)
        assert run_search(cfg, run_dir, progress=False, echo=lambda text: None) is not None
        ctx = setup(cfg, run_dir, progress=False, echo=lambda text: None, read_only=True)
        try:
            finals[only] = ctx, restore(ctx)
        finally:
            ctx.close()
    (full_ctx, full), (ctx, alone) = finals[None], finals[1]
    assert supernet.tree(alone).to_dict() == supernet.tree(full).to_dict()
    assert supernet.trained(ctx, alone) == [1] and supernet.trained(full_ctx, full) == [0, 1]
    # Sub-supernet 1 trained on the batches and keys it gets in the full run: bit for bit;
    # sub-supernet 0 stopped at the split (the parent's weights, which the full run moved on).
    for mine, theirs in zip(jax.tree.leaves(supernet.own(ctx, alone, 1)),
                            jax.tree.leaves(supernet.own(full_ctx, full, 1))):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree.leaves(supernet.own(ctx, alone, 0)["params"]),
        jax.tree.leaves(supernet.own(full_ctx, full, 0)["params"])))
    sub_space = supernet.sub_supernets(ctx, alone)[1]
    evaluated = search.evaluated(ctx, alone)
    assert len(evaluated) == 8 and set(alone.meta[search.NAME]["evaluated_sub"]) == {1}
    assert all(a[k] in sub_space.choices[k] for a, _ in evaluated for k in sub_space.names)
    steps = full.meta[supernet.NAME]["step"]
    assert alone.meta[supernet.NAME]["sub_supernet_steps"] == steps // 2 + steps // 2
    assert full.meta[supernet.NAME]["sub_supernet_steps"] == steps // 2 + 2 * (steps // 2)
