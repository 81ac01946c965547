"""sparse/: masks, distributions, updaters and allocation against slow obvious references."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nas
import spaces
import sparse
from search import engine
from sparse import allocate, criteria, schedules, storage
from sparse import masks as masklib


def _params(seed=0, shapes=((12, 16), (16, 8), (8, 4))):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return {f"l{i}": {"kernel": jax.random.normal(k, s), "bias": jnp.zeros(s[-1])}
            for i, (k, s) in enumerate(zip(keys, shapes))}


def _loss(params, x):
    h = x
    for i in range(len(params)):
        h = h @ params[f"l{i}"]["kernel"] + params[f"l{i}"]["bias"]
        h = jnp.tanh(h) if i + 1 < len(params) else h
    return jnp.mean(jnp.square(h - 1.0))


# ------------------------------------------------------------------ masks

def test_names_select_and_order_on_a_supernet():
    model = nas.supernet(spaces.get("mlp"))
    graphdef, params, rest = engine.split(model)
    probs = model.space.uniform_probs()
    x = jnp.ones((2, 64))
    forward = lambda p: engine.apply(graphdef, p, rest, x, probs, False)[0]  # noqa: E731
    names = masklib.select(params, forward)
    assert names == [f"hidden.{i}.kernel" for i in range(4)] + ["head.kernel"]
    assert masklib.select(params, forward, first_layer=False, last_layer=False) == names[1:-1]
    with pytest.raises(ValueError, match="needs `forward`"):
        masklib.select(params, first_layer=False)
    with pytest.raises(ValueError, match="include"):
        masklib.select(params, include=["nothing_matches"])


def test_vit_kernels_are_attention_and_dense_only():
    _, params, _ = engine.split(nas.supernet(spaces.get("vit")))
    names = masklib.kernel_names(params)
    assert "blocks.0.attn.qkv" in names and "blocks.0.attn.proj" in names and "head.kernel" in names
    assert not any(n.endswith(("bias", "scale", "pos")) for n in names)


def test_erk_matches_closed_form_and_total():
    shapes = {"a": (3, 1, 16), "b": (3, 16, 32), "c": (32, 10), "d": (5, 32, 64)}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    for sparsity in (0.5, 0.8, 0.9, 0.98):
        density = masklib.densities(shapes, sparsity, "erk")
        kept = sum(sizes[n] * density[n] for n in shapes)
        assert kept == pytest.approx((1 - sparsity) * sum(sizes.values()))
        dense = [n for n in shapes if density[n] == 1.0]
        free = [n for n in shapes if n not in dense]
        raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
        scale = ((1 - sparsity) * sum(sizes.values()) - sum(sizes[n] for n in dense)) / sum(
            raw[n] * sizes[n] for n in free)
        for n in free:
            assert density[n] == pytest.approx(scale * raw[n]) and density[n] <= 1.0
    # the tiny first layer is made dense at 50 % and ε re-solved over the rest
    assert masklib.densities(shapes, 0.5, "erk")["a"] == 1.0
    er = masklib.densities({"x": (4, 6), "y": (6, 6)}, 0.5, "er")
    assert er["x"] / er["y"] == pytest.approx(((4 + 6) / 24) / ((6 + 6) / 36))
    assert list(masklib.densities(shapes, 0.7, "uniform").values()) == [pytest.approx(0.3)] * 4
    # by hand: raw 0.2 and 0.1, sizes 100 and 400, ε·60 = 50 kept
    hand = masklib.densities({"x": (10, 10), "y": (20, 20)}, 0.9, "erk")
    assert hand == {"x": pytest.approx(0.2 * 50 / 60), "y": pytest.approx(0.1 * 50 / 60)}
    with pytest.raises(ValueError, match="distribution"):
        masklib.densities(shapes, 0.5, "erdos")


def test_random_masks_exact_counts_and_summary():
    shapes = {"l0.kernel": (12, 16), "l1.kernel": (16, 8)}
    density = {"l0.kernel": 0.25, "l1.kernel": 0.5}
    masks = masklib.random_masks(jax.random.PRNGKey(3), shapes, density)
    assert int(masks["l0.kernel"].sum()) == 48 and int(masks["l1.kernel"].sum()) == 64
    params = _params(shapes=((12, 16), (16, 8)))
    report = masklib.summary(params, masks)
    assert report["prunable_params"] == 12 * 16 + 16 * 8 and report["prunable_nonzero"] == 112
    assert report["params"] == 12 * 16 + 16 + 16 * 8 + 8
    assert report["nonzero_params"] == 112 + 16 + 8
    assert report["layers"]["l1.kernel"]["sparsity"] == pytest.approx(0.5)
    applied = masklib.apply(params, masks)
    assert masklib.count_nonzero(applied)["l0.kernel"] == 48


def test_top_k_and_lamp_against_numpy():
    rng = np.random.default_rng(0)
    score = rng.normal(size=(7, 5))
    for k in (0, 1, 13, 35):
        mask = np.asarray(masklib.top_k_mask(jnp.asarray(score), k))
        assert mask.sum() == k
        if 0 < k < 35:
            assert score[mask].min() > score[~mask].max()
    w = rng.normal(size=(6, 4))
    flat = np.abs(w).ravel()
    expected = [flat[i] ** 2 / sum(v ** 2 for v in flat if v >= flat[i]) for i in range(flat.size)]
    np.testing.assert_allclose(np.asarray(criteria.lamp(jnp.asarray(w))).ravel(), expected, rtol=1e-5)


def test_n_of_m_exact_per_group():
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 5))
    for n, m in ((2, 4), (1, 4), (4, 8)):
        mask = np.asarray(criteria.n_of_m(w, n, m))
        groups = np.moveaxis(mask, 1, -1).reshape(3, 5, 16 // m, m)
        assert (groups.sum(-1) == n).all()
        absw = np.moveaxis(np.abs(np.asarray(w)), 1, -1).reshape(3, 5, 16 // m, m)
        kept = np.where(groups, absw, np.inf).min(-1)
        dropped = np.where(groups, -np.inf, absw).max(-1)
        assert (kept >= dropped).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        criteria.n_of_m(jnp.ones((6, 3)), 2, 4)


def test_drop_and_grow_picks_smallest_and_largest_gradient():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 8))
    mask = rng.random((8, 8)) < 0.4
    w = np.where(mask, w, 0.0)
    g = rng.normal(size=(8, 8))
    new = np.asarray(criteria.drop_and_grow(jnp.asarray(mask), jnp.asarray(w), jnp.abs(jnp.asarray(g)),
                                            5, jax.random.PRNGKey(0)))
    assert new.sum() == mask.sum()
    active = np.flatnonzero(mask.ravel())
    dropped = set(active[np.argsort(np.abs(w.ravel()[active]))[:5]])
    kept = set(active) - dropped
    free = [i for i in range(64) if i not in kept]
    grown = set(sorted(free, key=lambda i: -abs(g.ravel()[i]))[:5])
    assert set(np.flatnonzero(new.ravel())) == kept | grown


def test_schedules_match_formulas():
    assert float(schedules.cubic(0, 0, 100, 0.0, 0.9)) == pytest.approx(0.0)
    assert float(schedules.cubic(50, 0, 100, 0.0, 0.9)) == pytest.approx(0.9 + (0.0 - 0.9) * 0.125)
    assert float(schedules.cubic(150, 0, 100, 0.0, 0.9)) == pytest.approx(0.9)
    assert float(schedules.cosine(25, 100, 0.3, 0.0)) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    events = [t for t in range(0, 60) if bool(schedules.every(t, 10, 5, 33))]
    assert events == [5, 15, 25, 33]


def test_keeping_more_than_active_returns_the_current_mask():
    rng = np.random.default_rng(2)
    masks = {"a": jnp.asarray(rng.random((6, 5)) < 0.3), "b": jnp.asarray(rng.random((4, 4)) < 0.5)}
    scores = {n: jnp.asarray(rng.random(m.shape)) for n, m in masks.items()}
    active = {n: int(m.sum()) for n, m in masks.items()}
    for extra in (1, 7):
        got = criteria.keep_global(masks, scores, sum(active.values()) + extra)
        got_per_layer = criteria.keep_per_layer(masks, scores, {n: a + extra for n, a in active.items()})
        for n in masks:
            np.testing.assert_array_equal(got[n], masks[n])
            np.testing.assert_array_equal(got_per_layer[n], masks[n])
    # an updater asked for less sparsity than its masks hold (ERK rounding) leaves them as they are
    weights = {n: jnp.asarray(rng.normal(size=m.shape)) for n, m in masks.items()}
    for scope in ("global", "layer"):
        pruned = sparse.updaters.get("gmp", scope=scope).prune(masks, weights, 0.0)
        for n in masks:
            np.testing.assert_array_equal(pruned[n], masks[n])


QKV, PROJ, CONV = "blocks.0.attn.qkv", "blocks.0.attn.proj", "stem.kernel"


def test_kernel_axes_view_attention_as_matrices():
    assert masklib.kernel_axes(QKV, (8, 3, 2, 4)) == ((0,), (1, 2, 3), ())   # embed → 3·heads·dim
    assert masklib.kernel_axes(PROJ, (2, 4, 8)) == ((0, 1), (2,), ())        # heads·dim → embed
    assert masklib.kernel_axes(CONV, (3, 4, 8)) == ((1,), (2,), (0,))        # [k, in, out]
    assert masklib.kernel_axes("head.kernel", (4, 8)) == ((0,), (1,), ())
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv.*\(8, 3, 2\).*\[embed, 3, heads, head_dim\]"):
        masklib.kernel_axes(QKV, (8, 3, 2))
    with pytest.raises(ValueError, match=r"'b' of shape \(4,\).*\[k\.\.\., in, out\]"):
        masklib.kernel_axes("b", (4,))


def test_er_and_erk_use_each_kernels_matrix_view():
    shapes = {QKV: (8, 3, 2, 4), PROJ: (2, 4, 8), CONV: (3, 4, 8)}
    # by hand, sizes 192, 64, 96 (352 weights), 20 % kept = 70.4:
    # ERK raw: qkv 8 → 24: (8 + 24)/192 = 1/6; proj 8 → 8: 16/64 = 1/4; conv: (3 + 4 + 8)/96;
    # ε·(32 + 16 + 15) = 70.4
    erk = masklib.densities(shapes, 0.8, "erk")
    eps = 70.4 / 63
    assert erk == {QKV: pytest.approx(eps / 6), PROJ: pytest.approx(eps / 4),
                   CONV: pytest.approx(eps * 15 / 96)}
    # ER raw: qkv 1/6, proj 1/4, conv (4 + 8)/32 (window ignored); ε·(32 + 16 + 36) = 70.4
    er = masklib.densities(shapes, 0.8, "er")
    eps = 70.4 / 84
    assert er == {QKV: pytest.approx(eps / 6), PROJ: pytest.approx(eps / 4),
                  CONV: pytest.approx(eps * 12 / 32)}


def test_n_of_m_groups_attention_kernels_along_their_inputs():
    rng = np.random.default_rng(4)
    qkv = rng.normal(size=(8, 3, 2, 2)).astype(np.float32)   # 8 inputs: two groups of 4 per output
    proj = rng.normal(size=(4, 2, 8)).astype(np.float32)     # 4·2 = 8 inputs, a group spans two heads
    for name, w in ((QKV, qkv), (PROJ, proj)):
        fan_in = w.shape[0] if name == QKV else w.shape[0] * w.shape[1]
        matrix = np.abs(w.reshape(fan_in, -1))
        expected = np.zeros(matrix.shape, bool)
        for out in range(matrix.shape[1]):
            for start in range(0, fan_in, 4):
                group = [start + i for i in range(4)]
                for i in sorted(group, key=lambda i: -matrix[i, out])[:2]:
                    expected[i, out] = True
        got = np.asarray(criteria.n_of_m(jnp.asarray(w), 2, 4, name=name))
        np.testing.assert_array_equal(got.reshape(fan_in, -1), expected)
        values, positions = storage.pack_nm(w * got, 2, 4, name=name)
        np.testing.assert_array_equal(storage.unpack_nm(values, positions, w.shape, 4, name=name), w * got)
    nm = sparse.updaters.get("nm")
    assert nm.initial_masks(None, {QKV: jnp.ones((8, 3, 2, 2)), PROJ: jnp.ones((4, 2, 8))})[PROJ].all()
    with pytest.raises(ValueError, match=r"'blocks.0.attn.proj'.*6 inputs"):
        nm.initial_masks(None, {PROJ: jnp.ones((3, 2, 8))})


def test_rescale_uses_the_attention_fan_in():
    qkv_mask = np.zeros((4, 3, 2, 2), bool)
    qkv_mask[0, 0, 0, 0] = True            # unit (q, head 0, dim 0): 1 of 4 inputs
    qkv_mask[:, 1, 1, 1] = True            # unit (k, head 1, dim 1): dense
    proj_mask = np.zeros((2, 2, 5), bool)
    proj_mask[0, 0, 0] = True              # unit 0: 1 of 2·2 inputs
    proj_mask[:, :, 1] = True
    proj_mask[1, 1, 1] = False             # unit 1: 3 of 4
    params = {"attn": {"qkv": jnp.ones((4, 3, 2, 2)), "proj": jnp.ones((2, 2, 5))}}
    out = masklib.rescale(params, {"attn.qkv": qkv_mask, "attn.proj": proj_mask})["attn"]
    qkv, proj = np.asarray(out["qkv"]), np.asarray(out["proj"])
    assert qkv[0, 0, 0, 0] == pytest.approx(2.0) and qkv[0, 1, 1, 1] == pytest.approx(1.0)
    assert qkv[0, 2, 0, 1] == pytest.approx(1.0)   # no active input: left alone
    assert proj[0, 0, 0] == pytest.approx(2.0) and proj[0, 0, 1] == pytest.approx(math.sqrt(4 / 3))


# ------------------------------------------------------------------ updaters

OPTIMIZERS = {
    "sgd_momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-2),
    "chain_clip_nesterov": lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                               optax.sgd(0.05, momentum=0.9, nesterov=True)),
}


def _run(method, optimizer="sgd_momentum", steps=60, record=False, **options):
    params = _params()
    names = masklib.select(params)
    options = {"sparsity": 0.8, "total_steps": steps, "update_every": 10, **options}
    updater = sparse.updaters.get(method, **options)
    tx = sparse.wrap(OPTIMIZERS[optimizer](), updater, names)
    state = tx.init(params)

    @jax.jit
    def step(params, state, x):
        grads = jax.grad(_loss)(masklib.apply(params, state.masks), x)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, grads

    history = []
    for t in range(steps):
        x = jax.random.normal(jax.random.PRNGKey(t), (16, 12))
        before = (params, state)
        params, state, grads = step(params, state, x)
        if record:
            history.append((before, grads, (params, state)))
        for n in names:
            assert not np.any(np.asarray(params[n.split(".")[0]]["kernel"])[~np.asarray(state.masks[n])])
    return params, state, names, history


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("method", ["static", "set", "rigl", "gmp", "granet", "magnitude", "lamp", "nm"])
def test_masked_weights_stay_zero_for_any_optimizer(method, optimizer):
    params, state, names, _ = _run(method, optimizer)
    report = masklib.summary(params, state.masks)
    expected = 0.5 if method == "nm" else 0.8
    assert report["prunable_sparsity"] == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_keeps_counts_grows_at_zero_and_resets_moments(method):
    _, _, names, history = _run(method, "sgd_momentum", record=True)
    updates = 0
    for (_params, state), grads, (new_params, new_state) in history:
        changed = False
        for n in names:
            old, new = np.asarray(state.masks[n]), np.asarray(new_state.masks[n])
            assert old.sum() == new.sum()
            grown = new & ~old
            layer = n.split(".")[0]
            if grown.any():
                changed = True
                assert not np.any(np.asarray(new_params[layer]["kernel"])[grown])
                momentum = np.asarray(new_state.inner[0].trace[layer]["kernel"])
                assert not np.any(momentum[grown])
        if changed:
            updates += 1
            if method == "rigl":
                g = {n: np.abs(np.asarray(grads[n.split(".")[0]]["kernel"])) for n in names}
                for n in names:
                    old, new = np.asarray(state.masks[n]), np.asarray(new_state.masks[n])
                    grown = new & ~old
                    if grown.any():
                        # grown positions beat every inactive position left out
                        left = ~new
                        assert g[n][grown].min() >= g[n][left].max() - 1e-6
    assert updates >= 3


# mask-update steps: GraNet's at 10 prunes and regrows, at 40 (after its window) only regrows
@pytest.mark.parametrize("method,options,events", [("set", {}, (10, 20)), ("rigl", {}, (10, 20)),
                                                   ("granet", {"begin": 0.0, "end": 0.5}, (10, 40))])
def test_only_rigl_skips_the_optimizer_step_on_mask_updates(method, options, events):
    lr = 0.1
    params = _params()
    names = masklib.select(params)
    updater = sparse.updaters.get(method, sparsity=0.8, total_steps=60, update_every=10, **options)
    tx = sparse.wrap(optax.sgd(lr), updater, names)
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))
    for t in range(41):
        x = jax.random.normal(jax.random.PRNGKey(t), (16, 12))
        grads = jax.grad(_loss)(masklib.apply(params, state.masks), x)
        updates, new_state = step(params, state, grads)
        new_params = optax.apply_updates(params, updates)
        if t in events:
            changed = 0
            for n in names:
                layer = n.split(".")[0]
                old, new = np.asarray(state.masks[n]), np.asarray(new_state.masks[n])
                kept = old & new
                changed += int((old != new).sum())
                w, g = np.asarray(params[layer]["kernel"]), np.asarray(grads[layer]["kernel"])
                # plain SGD by hand: w − lr·g where the weight survives the update; RigL: no step
                expected = w[kept] if method == "rigl" else w[kept] - np.float32(lr) * g[kept]
                np.testing.assert_allclose(np.asarray(new_params[layer]["kernel"])[kept], expected,
                                           rtol=1e-6, atol=1e-7)
                assert not np.any(np.asarray(new_params[layer]["kernel"])[~new])
            assert changed > 0
        params, state = new_params, new_state


def test_gmp_follows_the_cubic_schedule_and_only_shrinks():
    steps = 100
    _, _, names, history = _run("gmp", steps=steps, record=True, begin=0.1, end=0.6)
    total = sum(np.size(history[0][0][1].masks[n]) for n in names)
    for t, (_, _, (_, state)) in enumerate(history):
        kept = sum(int(np.sum(state.masks[n])) for n in names)
        done = [e for e in range(t + 1) if bool(schedules.every(e, 10, 10, 60))]
        target = float(schedules.cubic(done[-1], 10, 60, 0.0, 0.8)) if done else 0.0
        assert kept == round(total * (1 - target))
    for (_, state), _, (_, new_state) in history:
        for n in names:
            assert not np.any(np.asarray(new_state.masks[n]) & ~np.asarray(state.masks[n]))


def test_granet_regenerates_per_layer_at_the_global_count():
    steps = 100
    _, _, names, history = _run("granet", steps=steps, record=True, begin=0.0, end=0.5)
    regrown_after_window = 0
    for t, ((_, state), _, (_, new_state)) in enumerate(history):
        if t > 50:
            for n in names:
                old, new = np.asarray(state.masks[n]), np.asarray(new_state.masks[n])
                assert old.sum() == new.sum()
                regrown_after_window += int((new & ~old).sum())
    assert regrown_after_window > 0
    final = history[-1][2][1]
    kept = sum(int(np.sum(final.masks[n])) for n in names)
    assert kept == round(sum(np.size(final.masks[n]) for n in names) * 0.2)
    sparse_start = sparse.updaters.get("granet", sparsity=0.9, total_steps=10, initial_sparsity=0.5)
    weights = masklib.kernels(_params(), ["l0.kernel", "l1.kernel"])
    masks = sparse_start.initial_masks(jax.random.PRNGKey(0), weights)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.5 * (12 * 16 + 16 * 8))


def test_reset_moments_matches_the_parameter_tree_of_any_state():
    params = _params()
    changed = {"l1.kernel": jnp.asarray(np.eye(16, 8, dtype=bool))}
    state = {"custom": (jnp.int32(3), jax.tree.map(jnp.ones_like, params)), "other": jnp.ones((16, 8))}
    out = sparse.reset_moments(state, params, changed)
    assert float(out["custom"][1]["l1"]["kernel"].sum()) == 16 * 8 - 8
    assert float(out["custom"][1]["l0"]["kernel"].sum()) == 12 * 16
    assert float(out["other"].sum()) == 16 * 8 and int(out["custom"][0]) == 3


def test_updater_options_are_checked():
    with pytest.raises(ValueError, match="did you mean 'rigl'"):
        sparse.updaters.get("rigel")
    with pytest.raises(ValueError, match="drop_fraction"):
        sparse.updaters.get("rigl", drop_fractoin=0.2)
    with pytest.raises(ValueError, match="sparsity must be in"):
        sparse.updaters.get("set", sparsity=1.5)
    with pytest.raises(ValueError, match="not a multiple of m=4"):
        sparse.updaters.get("nm").initial_masks(None, {"k": jnp.ones((3, 8))})
    with pytest.raises(ValueError, match="pytree of named leaves"):
        sparse.wrap(optax.sgd(0.1), sparse.updaters.get("static"), [""]).init(jnp.ones((3, 3)))


# ------------------------------------------------------------------ allocation

def _brute_force(distortion, levels, sizes, keep):
    kept = np.round(np.asarray(sizes)[:, None] * (1 - np.asarray(levels))[None, :])
    best = np.inf
    for combo in itertools.product(range(len(levels)), repeat=len(sizes)):
        if sum(kept[layer, k] for layer, k in enumerate(combo)) <= keep:
            best = min(best, sum(distortion[layer, k] for layer, k in enumerate(combo)))
    return best


def test_dp_equals_brute_force_on_random_instances():
    rng = np.random.default_rng(0)
    for _trial in range(40):
        layers, num_levels = rng.integers(1, 5), rng.integers(2, 6)
        levels = np.sort(rng.random(num_levels))
        sizes = rng.integers(1, 60, layers)
        kept = np.round(sizes[:, None] * (1 - levels[None, :]))
        keep = int(rng.integers(kept.min(1).sum(), sizes.sum() + 1))
        distortion = rng.random((layers, num_levels)) * (1 + rng.random((layers, 1)) * 10)
        chosen = sparse.allocate_dp(distortion, levels, sizes, keep, return_indices=True)
        total = distortion[np.arange(layers), chosen].sum()
        assert kept[np.arange(layers), chosen].sum() <= keep
        assert total == pytest.approx(_brute_force(distortion, levels, sizes, keep))
        values = sparse.allocate_dp(distortion, levels, sizes, keep)
        np.testing.assert_array_equal(values, levels[chosen])


def test_dp_quantised_budget_still_fits():
    rng = np.random.default_rng(1)
    levels, sizes = np.linspace(0, 0.99, 50), rng.integers(10_000, 90_000, 6)
    keep = int(sizes.sum() * 0.2)
    chosen = sparse.allocate_dp(rng.random((6, 50)), levels, sizes, keep, max_states=1000)
    assert np.round(sizes * (1 - chosen)).sum() <= keep
    with pytest.raises(ValueError, match="below the fewest"):
        sparse.allocate_dp(np.zeros((2, 2)), [0.0, 0.5], [10, 10], 3)
    with pytest.raises(ValueError, match="shape"):
        sparse.allocate_dp(np.zeros((3, 2)), [0.0, 0.5], [10, 10], 10)


def test_baselines_match_hand_cases_and_check_their_input():
    sizes = [100, 400]
    np.testing.assert_allclose(allocate.allocate_uniform(sizes, 250), [0.5, 0.5])
    weights = [np.full(100, 10.0), np.full(400, 1.0)]
    # one global threshold keeps the 100 large weights and 150 of the small ones
    np.testing.assert_allclose(allocate.allocate_global(sizes, 250, weights), [0.0, 1 - 150 / 400])
    # ERK by hand: raw 0.2 and 0.1, ε·60 = 50 kept
    np.testing.assert_allclose(allocate.allocate_erk(sizes, 50, [(10, 10), (20, 20)]),
                               [1 - 0.2 * 50 / 60, 1 - 0.1 * 50 / 60])
    # named shapes: attention kernels by their matrix view, qkv 8 → 24 (raw 1/6), proj 8 → 8 (1/4)
    attention = {"a.qkv": (8, 3, 2, 4), "a.proj": (2, 4, 8)}
    np.testing.assert_allclose(allocate.allocate_erk([192, 64], 48, attention),
                               [1 - 1 / 6, 1 - 1 / 4])
    with pytest.raises(ValueError, match="keep must be between 1 and the 500 weights of all layers, got 0"):
        allocate.allocate_uniform(sizes, 0)
    with pytest.raises(ValueError, match="must match sizes"):
        allocate.allocate_erk(sizes, 50, [(10, 10), (20, 10)])
    with pytest.raises(ValueError, match="needs distortion"):
        allocate.allocate("dp", np.linspace(0, 1, 11), sizes, 250)


ALLOCATION_SHAPES = {  # conv kernels [k..., in, out], dense [in, out]
    "mlp": [(40, 256), (256, 256), (256, 10)],
    "cnn1d": [(5, 1, 16), (5, 16, 32), (3, 32, 64), (64, 10)],
    "cnn2d": [(3, 3, 3, 8), (3, 3, 8, 16), (144, 64), (64, 10)],
}


def _erk_by_hand(shapes, keep):
    """ERK densities: raw (n_in + n_out + Σ window)/(n_in·n_out·Π window), one ε for the
    budget, a layer over density 1 made dense and ε solved again over the rest."""
    sizes = [math.prod(s) for s in shapes]
    raw = [(s[-2] + s[-1] + sum(s[:-2])) / math.prod(s) for s in shapes]
    dense = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        eps = (keep - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in free)
        over = {i for i in free if eps * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense |= over


def _lamp_by_hand(w):
    """LAMP score of each weight: w² over the sum of the squares of the weights at least as large."""
    squared = np.square(w.astype(np.float64)).ravel()
    order = np.argsort(squared)
    suffix = np.cumsum(squared[order][::-1])[::-1]
    scores = np.empty_like(squared)
    scores[order] = squared[order] / suffix
    return scores


def _global_sort(scores, keep):
    """Per-layer sparsity after keeping the `keep` highest scores of all layers pooled."""
    flat = np.concatenate([s.ravel() for s in scores])
    layer = np.concatenate([np.full(s.size, i) for i, s in enumerate(scores)])
    kept = np.bincount(layer[np.argsort(-flat, kind="stable")[:keep]], minlength=len(scores))
    return [1 - kept[i] / s.size for i, s in enumerate(scores)]


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7, 0.9, 0.98])
@pytest.mark.parametrize("net", sorted(ALLOCATION_SHAPES))
def test_every_allocation_keeps_the_asked_count(net, target):
    shapes = ALLOCATION_SHAPES[net]
    sizes = np.array([math.prod(s) for s in shapes])
    keep = int(round((1 - target) * sizes.sum()))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=s).astype(np.float32) for s in shapes]
    levels = allocate.grid_levels(101, target)
    distortion = np.cumsum(rng.random((len(shapes), len(levels))), axis=1)
    expected = {
        "uniform": [1 - keep / sizes.sum()] * len(shapes),
        "erk": [1 - d for d in _erk_by_hand(shapes, keep)],
        "global": _global_sort([np.abs(w) for w in weights], keep),
        "lamp": _global_sort([_lamp_by_hand(w) for w in weights], keep),
    }
    for method in allocate.METHODS:
        got = allocate.allocate(method, levels, sizes, keep, distortion=distortion, weights=weights,
                                shapes=shapes)
        kept = int(np.round(sizes * (1 - np.asarray(got))).sum())
        if method == "dp":
            assert kept <= keep and set(got) <= set(levels)
        else:
            assert abs(kept - keep) <= len(shapes) / 2, (method, kept, keep)
            np.testing.assert_allclose(got, expected[method], rtol=1e-9, atol=1e-12, err_msg=method)


def test_distortion_curves_equal_a_loop_of_pruned_forwards():
    params = _params()
    names = ["l0.kernel", "l1.kernel", "l2.kernel"]
    x = jax.random.normal(jax.random.PRNGKey(5), (32, 12))

    def logits(p, x):
        h = x
        for i in range(3):
            h = h @ p[f"l{i}"]["kernel"] + p[f"l{i}"]["bias"]
            h = jnp.tanh(h) if i < 2 else h
        return h
    levels = [0.0, 0.5, 0.9, 1.0]
    curves = allocate.distortion_curves(logits, params, names, levels, x)
    reference = np.asarray(logits(params, x))
    for i, name in enumerate(names):
        layer = name.split(".")[0]
        for k, level in enumerate(levels):
            w = np.asarray(params[layer]["kernel"])
            keep = int(round(w.size * (1 - level)))
            threshold_order = np.argsort(-np.abs(w).ravel(), kind="stable")
            pruned = np.zeros(w.size)
            pruned[threshold_order[:keep]] = w.ravel()[threshold_order[:keep]]
            p = jax.tree.map(lambda a: a, params)
            p[layer] = {**p[layer], "kernel": jnp.asarray(pruned.reshape(w.shape), jnp.float32)}
            out = np.asarray(logits(p, x))
            expected = np.mean(np.sum((out - reference) ** 2, -1))
            assert curves[i, k] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert np.all(curves[:, 0] < 1e-9)


# ------------------------------------------------------------------ storage and dead units

def test_nm_packing_and_coo_storage_round_trip(tmp_path):
    from sparse import storage
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 16, 8))
    nm = np.asarray(w * criteria.n_of_m(w, 2, 4))
    values, positions = storage.pack_nm(nm, 2, 4)
    assert values.shape == positions.shape == (3, 8, 4, 2) and positions.dtype == np.uint8
    np.testing.assert_array_equal(storage.unpack_nm(values, positions, nm.shape, 4), nm)
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        storage.pack_nm(np.asarray(w), 2, 4)
    unstructured = np.asarray(w) * (np.random.default_rng(0).random(w.shape) < 0.1)
    params = {"conv": {"kernel": nm, "bias": np.arange(8.0)}, "head": {"kernel": unstructured}}
    ratios = storage.save(tmp_path / "nm.npz", params, ["conv.kernel"], nm=(2, 4))
    # half the values (float32) plus one uint8 position each: (4·192 + 192) / (4·384)
    assert ratios["conv.kernel"] == pytest.approx((4 * 192 + 192) / (4 * 384))
    ratios = storage.save(tmp_path / "coo.npz", params, ["conv.kernel", "head.kernel"])
    assert ratios["head.kernel"] < 0.5
    for path in ("nm.npz", "coo.npz"):
        loaded = storage.load(tmp_path / path)
        for name, value in masklib.named_leaves(params).items():
            np.testing.assert_array_equal(loaded[name], value)


def test_coo_is_bcoos_layout_and_round_trips():
    from jax.experimental import sparse as jsparse
    weight = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (3, 5, 4)))
    weight = weight * (np.random.default_rng(1).random(weight.shape) < 0.3)
    data, indices = storage.to_coo(weight)
    reference = jsparse.BCOO.fromdense(jnp.asarray(weight))
    np.testing.assert_array_equal(data, reference.data)
    np.testing.assert_array_equal(indices, reference.indices)
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(storage.from_coo(data, indices, weight.shape), weight)
    np.testing.assert_array_equal(jsparse.BCOO((data, indices), shape=weight.shape).todense(), weight)


@pytest.mark.parametrize("name,options,shape", [("mlp", {}, (64,)), ("cnn1d", {"norm": "none"}, (40, 1)),
                                                ("cnn1d", {"norm": "batch"}, (40, 1))])
def test_dead_unit_removal_keeps_outputs_and_shrinks(name, options, shape):
    from flax import nnx

    from nas.surgery import remove_dead_units
    space = spaces.get(name, **options).bind(shape, 10)
    arch = space.sample(7)
    model = nas.supernet(space.fix(arch), seed=0)
    state = nnx.state(model, nnx.Param)
    rng = np.random.default_rng(0)
    first = masklib.select(state)[0]
    # a random 85 % sparse pattern plus one unit of the first layer with no outgoing weights
    chain = space.unit_chain(arch)

    def sparsify(n, w):
        w = w * jnp.asarray(rng.random(w.shape) > 0.85)
        if n == chain[1]["kernel"]:
            w = w.at[..., 0, :].set(0.0)
        return w
    nnx.update(model, masklib.map_named(sparsify, state, masklib.kernel_names(state)))
    x = np.random.default_rng(1).normal(size=(8,) + shape).astype(np.float32)
    smaller = remove_dead_units(model)
    assert nas.count_params(smaller) < nas.count_params(model)
    np.testing.assert_allclose(smaller(x), model(x), atol=1e-5)
    assert first in masklib.kernel_names(nnx.state(smaller, nnx.Param))


def test_rescale_keeps_each_units_fan_in_variance():
    w = jnp.ones((3, 4, 5))
    mask = np.zeros((3, 4, 5), bool)
    mask[0, :2, 0] = True                    # unit 0: 2 of 12 inputs
    mask[:, :, 1] = True                     # unit 1: dense
    params = {"conv": {"kernel": w}}
    out = np.asarray(masklib.rescale(params, {"conv.kernel": mask})["conv"]["kernel"])
    assert out[0, 0, 0] == pytest.approx(math.sqrt(12 / 2))
    assert out[0, 0, 1] == pytest.approx(1.0)
    assert out[0, 0, 2] == pytest.approx(1.0)  # no active input: left alone
