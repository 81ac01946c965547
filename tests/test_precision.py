"""Mixed precision (`nas.precision`, config `precision.compute`): bfloat16 compute with float32
parameters, optimizer states, BatchNorm statistics, α and loss, in every space and phase."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nas
import spaces
from launch import config as configs
from launch import export
from launch.data import load as load_data
from launch.train import TrainConfig, train
from nas import precision
from search import engine, gradient, oneshot, proxies, samplers

# Every shipped space at a small size: (options, input shape).
SMALL = {
    "mlp": ({"max_depth": 2, "widths": (16, 32)}, (16,)),
    "cnn1d": ({"channels": (8, 16), "kernels": (3, 5), "depths": (1, 2), "norm": "batch"}, (16, 1)),
    "convnet": ({"widths": (8,), "strides": (1,), "stem_channels": 8, "head_channels": 16,
                 "kernels": (3, 5), "expands": (3,), "depths": (1, 2)}, (8, 8, 3)),
    "vit": ({"embed_dims": (16, 24), "depths": (1, 2), "num_heads": (1, 2), "head_dim": 8,
             "patch_size": 4}, (8, 8, 3)),
    "nb201": ({"channels": 4, "cells_per_stage": 1, "ops": ("skip_connect", "nor_conv_3x3")},
              (8, 8, 3)),
}


def _space(name):
    options, shape = SMALL[name]
    return spaces.get(name, **options).bind(shape, 10)


def _products(jaxpr, found):
    """(primitive, operand dtypes) of every matmul and convolution in `jaxpr`, nested ones too."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            found.append((eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars)))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    _products(inner if hasattr(inner, "eqns") else inner.jaxpr, found)
                elif hasattr(sub, "eqns"):
                    _products(sub, found)
    return found


def test_that_every_shipped_space_is_tested_here():
    # One module per shipped space in spaces/ (other tests register spaces of their own).
    from pathlib import Path
    shipped = {p.stem for p in Path(spaces.__file__).parent.glob("*.py")} - {"__init__", "core", "module"}
    assert set(SMALL) == shipped and shipped <= set(spaces.names())


# bfloat16 keeps 8 significant bits (ε = 2⁻⁸ ≈ 0.004): a compact model and its supernet differ
# by up to 0.02 of the logit scale (measured on the default spaces: convnet; every product
# rounds its output, over differently shaped tensors), so 0.05 leaves room and still catches a
# wrong slice or a float32 layer on one side.
TOLERANCE_BF16 = 0.05


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_bfloat16_supernet_step_runs_every_shipped_space_and_extract_matches_it(name):
    """One sampled training step (the supernet phase's own) in bfloat16: every matmul and
    convolution of forward and backward takes bfloat16 operands, while the parameters, the
    optimizer state, the BatchNorm statistics (moved by the step) and the loss stay float32.
    Then, as tests/test_supernets.py checks in float32, the compact model of a hard arch
    (bfloat16 too) gives the trained supernet's logits, within bfloat16 rounding."""
    space = _space(name)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(1.0, 2.0, size=(8,) + space.input_shape), jnp.float32)
    y = jnp.asarray(np.arange(8) % 10, jnp.int32)
    tx = optax.adamw(1e-3)
    model = nas.supernet(space, seed=0, dtype="bfloat16")
    graphdef, params, rest = engine.split(model)
    step = oneshot.make_step(graphdef, space, tx, "uniform")
    args = (params, rest, tx.init(params), x, y, jax.random.key(0))
    products = _products(jax.make_jaxpr(step)(*args).jaxpr, [])
    assert products and {d for _, d in products} == {("bfloat16", "bfloat16")}, set(products)
    *state, loss = step(*args)
    assert {str(a.dtype) for a in jax.tree.leaves(state) if jnp.issubdtype(a.dtype, jnp.floating)} \
        == {"float32"}
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))

    nnx.update(model, state[0], state[1])
    x = rng.normal(size=(4,) + space.input_shape).astype(np.float32)
    for seed in range(2):
        arch = space.sample(seed=seed)
        sub = nas.extract(model, arch)
        assert precision.compute_dtype_of(sub) == "bfloat16"
        masked, compact = np.asarray(model(x, arch)), np.asarray(sub(x))
        assert masked.dtype == compact.dtype == np.float32
        diff = np.abs(masked - compact).max()
        assert diff <= TOLERANCE_BF16 * max(1.0, np.abs(masked).max()), (name, arch, diff)


def test_a_bfloat16_gradient_step_keeps_alpha_and_its_optimizer_in_float32():
    space = _space("mlp")
    graphdef, params, rest = engine.split(nas.supernet(space, seed=0, dtype="bfloat16"))
    tx, alpha_tx = optax.sgd(0.01), optax.adam(1e-3)
    step = gradient.make_step(graphdef, samplers.get("drnas"), tx, alpha_tx)
    alpha = gradient.init_alpha(space, jax.random.key(1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16)), jnp.float32)
    y = jnp.asarray(np.arange(8) % 10, jnp.int32)
    out = step(params, rest, tx.init(params), alpha, alpha_tx.init(alpha), x, y, x, y, jax.random.key(2),
               jnp.float32(0.5))
    *state, metrics = out
    assert {str(a.dtype) for a in jax.tree.leaves(state) if jnp.issubdtype(a.dtype, jnp.floating)} \
        == {"float32"}
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["alpha_loss"]))
    assert any(np.abs(np.asarray(a) - np.asarray(b)).max() > 0
               for a, b in zip(jax.tree.leaves(state[3]), jax.tree.leaves(alpha)))


def test_compute_dtypes_are_named_checked_and_read_back():
    model = nas.supernet(_space("mlp"), seed=0)
    assert precision.compute_dtype_of(model) == "float32"
    assert precision.compute_dtype_of(precision.set_compute_dtype(model, "bfloat16")) == "bfloat16"
    assert all(m.dtype == jnp.bfloat16 for _, m in nnx.iter_modules(model)
               if isinstance(m, precision.Computes))
    assert precision.compute_dtype_of(nnx.Dict({})) == "float32"   # no nas layer: float32
    model.head.dtype = jnp.dtype("float32")
    with pytest.raises(ValueError, match="several dtypes"):
        precision.compute_dtype_of(model)
    for bad in ("float16", "bf16"):
        with pytest.raises(ValueError, match=f"compute dtype '{bad}' is not supported; choose one of "
                                             r"\['float32', 'bfloat16'\]"):
            nas.supernet(_space("mlp"), dtype=bad)


def test_the_precision_config_names_the_field_the_value_and_what_is_allowed():
    assert configs.from_dict({}).precision.compute == "float32"
    assert configs.from_dict({"precision": {"compute": "bfloat16"}}).precision.compute == "bfloat16"
    with pytest.raises(ValueError, match=r"config precision.compute = 'float16' is not allowed; choose "
                                         r"one of \['float32', 'bfloat16'\]"):
        configs.from_dict({"precision": {"compute": "float16"}})
    with pytest.raises(ValueError, match="did you mean 'precision.compute'"):
        configs.from_dict({"precision": {"dtype": "bfloat16"}})


def test_a_bfloat16_export_records_its_dtype_and_computes_in_it(tmp_path):
    space = _space("cnn1d")
    arch = space.sample(seed=3)
    compact = nas.extract(nas.supernet(space, seed=0, dtype="bfloat16"), arch)
    x = np.random.default_rng(0).normal(size=(5, 16, 1)).astype(np.float32)
    export.save(tmp_path / "e", compact, {"choices": arch, "space_config": space.to_dict()})
    loaded = export.load(tmp_path / "e")
    assert loaded.info["compute_dtype"] == "bfloat16"
    assert precision.compute_dtype_of(loaded.model) == "bfloat16"
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(compact(x)))
    path = export.to_stablehlo(loaded.model, tmp_path / "hlo")
    artifact = jax.export.deserialize(path.read_bytes())
    assert "bf16" in artifact.mlir_module() and artifact.out_avals[0].dtype == jnp.float32
    # XLA may fold the final cast to float32 into the last product: bfloat16 rounding apart.
    np.testing.assert_allclose(np.asarray(artifact.call(x)), np.asarray(compact(x)), rtol=0.02, atol=0.01)
    assert (tmp_path / "hlo" / export.SIGNATURE_FILE).read_text().count('"compute_dtype": "bfloat16"') == 1
    # An export of another version with a dtype this one does not know is refused by name.
    info = loaded.info | {"compute_dtype": "float8"}
    (tmp_path / "e" / "arch.json").write_text(__import__("json").dumps(info))
    with pytest.raises(ValueError, match="compute_dtype 'float8' is not one of"):
        export.load(tmp_path / "e")


def test_proxies_score_in_the_compute_dtype_asked_for():
    space = _space("mlp")
    archs = [space.sample(seed=s) for s in range(3)]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 16)).astype(np.float32), np.arange(16) % 10
    full = proxies.score_population("grad_norm", space, archs, x, y, chunk=4)
    half = proxies.score_population("grad_norm", space, archs, x, y, chunk=4, dtype="bfloat16")
    assert not np.array_equal(full, half)   # the bfloat16 forward ran
    np.testing.assert_allclose(half, full, rtol=0.05)


def test_bfloat16_training_reaches_float32_accuracy():
    """One fixed mlp arch on digits, 15 epochs: bfloat16 compute ends within 2 points of float32
    on the test split (the 3-seed search comparison is in docs/speed.md)."""
    data = load_data("digits", seed=0)
    space = spaces.get("mlp").bind(data.input_shape, data.num_classes)
    arch = {"depth": 2, "width_0": 64, "width_1": 32, "width_2": 16, "width_3": 16, "activation": "relu"}
    cfg = TrainConfig(epochs=15, batch_size=64, learning_rate=3e-3)
    accuracy = {}
    for dtype in ("float32", "bfloat16"):
        model = nas.supernet(space.fix(arch), seed=0, dtype=dtype)
        result = train(model, data, cfg, progress=False)
        assert precision.compute_dtype_of(result.model) == dtype
        accuracy[dtype] = result.test_accuracy
    assert accuracy["float32"] > 0.9
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) <= 0.02, accuracy
