"""Samplers against independent references: bisection, Monte Carlo, scipy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from search import samplers


def _simplex_projection_by_bisection(z, iters=200):
    lo, hi = z.min() - 1.0, z.max()
    for _ in range(iters):
        tau = (lo + hi) / 2
        if np.maximum(z - tau, 0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(z - (lo + hi) / 2, 0)


@pytest.mark.parametrize("seed", range(8))
def test_sparsemax_is_the_simplex_projection(seed):
    z = np.random.default_rng(seed).normal(scale=2.0, size=6).astype(np.float64)
    got = np.asarray(samplers.sparsemax(jnp.asarray(z, jnp.float32)))
    np.testing.assert_allclose(got, _simplex_projection_by_bisection(z), atol=1e-5)
    assert got.sum() == pytest.approx(1.0, abs=1e-5)


def test_sparsemax_can_zero_options_softmax_cannot():
    z = jnp.array([3.0, 0.0, -1.0])
    np.testing.assert_allclose(samplers.sparsemax(z), [1.0, 0.0, 0.0])
    assert (np.asarray(jax.nn.softmax(z)) > 0).all()


def test_dirichlet_kl_matches_monte_carlo():
    alpha = jnp.array([0.3, -0.5, 1.2])
    conc = np.asarray(samplers.dirichlet_concentration(alpha), np.float64)
    np.testing.assert_allclose(conc, [1.3, np.exp(-0.5), 2.2], rtol=1e-6)
    x = stats.dirichlet(conc).rvs(size=200_000, random_state=0)
    x = np.clip(x, 1e-12, None)
    x /= x.sum(1, keepdims=True)
    mc = np.mean(stats.dirichlet(conc).logpdf(x.T) - stats.dirichlet(np.ones(3)).logpdf(x.T))
    assert float(samplers.dirichlet_kl(jnp.asarray(conc))) == pytest.approx(mc, abs=0.01)
    assert float(samplers.dirichlet_kl(jnp.ones(3))) == pytest.approx(0.0, abs=1e-6)


def test_drnas_samples_lie_on_the_simplex_with_the_dirichlet_mean_and_gradients():
    sampler = samplers.get("drnas")
    alpha = {"a": jnp.array([0.5, 0.0, -0.3])}
    draws = jax.vmap(lambda k: sampler.sample(alpha, k, 0.0)["a"])(
        jax.random.split(jax.random.key(0), 20_000))
    np.testing.assert_allclose(draws.sum(1), 1.0, atol=1e-5)
    conc = np.asarray(samplers.dirichlet_concentration(alpha["a"]))
    np.testing.assert_allclose(draws.mean(0), conc / conc.sum(), atol=0.01)
    grad = jax.grad(lambda a: sampler.sample({"a": a}, jax.random.key(1), 0.0)["a"][0])(alpha["a"])
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    penalty = sampler.penalty(alpha)
    assert float(penalty) == pytest.approx(1e-3 * float(samplers.dirichlet_kl(jnp.asarray(conc))))


def test_gdas_forward_is_one_hot_and_follows_softmax_frequencies():
    sampler = samplers.get("gdas")
    alpha = {"a": jnp.array([1.0, 0.0, -1.0, 0.5])}
    draws = jax.vmap(lambda k: sampler.sample(alpha, k, 0.5)["a"])(
        jax.random.split(jax.random.key(0), 20_000))
    assert set(np.unique(np.asarray(draws)).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(draws).sum(1), 1.0)
    # Gumbel-max: P(option i) = softmax(α)_i, whatever the temperature.
    np.testing.assert_allclose(draws.mean(0), jax.nn.softmax(alpha["a"]), atol=0.01)


def test_gdas_backward_is_the_soft_gradient():
    key, alpha, tau = jax.random.key(3), jnp.array([0.2, -0.1, 0.4]), 2.0
    weights = jnp.array([1.0, 2.0, 3.0])
    straight = jax.grad(lambda a: samplers.gumbel_hard(key, a, tau) @ weights)(alpha)
    g = jax.random.gumbel(key, alpha.shape)
    soft = jax.grad(lambda a: jax.nn.softmax((a + g) / tau) @ weights)(alpha)
    np.testing.assert_allclose(straight, soft, rtol=1e-5)


def test_gdas_temperature_schedule():
    assert float(samplers.gdas_temperature(0.0)) == pytest.approx(10.0)
    assert float(samplers.gdas_temperature(1.0)) == pytest.approx(0.1, rel=1e-5)
    assert float(samplers.gdas_temperature(0.5)) == pytest.approx(5.05, rel=1e-5)
    assert float(samplers.gdas_temperature(2.0)) == pytest.approx(0.1, rel=1e-5)


def test_darts_is_softmax_and_registry_errors():
    alpha = {"a": jnp.array([0.1, 0.7]), "b": jnp.array([0.0, 0.0, 1.0])}
    probs = samplers.get("darts").sample(alpha, jax.random.key(0), 0.0)
    for k in alpha:
        np.testing.assert_allclose(probs[k], np.exp(alpha[k]) / np.exp(alpha[k]).sum(), rtol=1e-6)
    assert set(samplers.names()) == {"darts", "darts_sparsemax", "drnas", "gdas"}
    with pytest.raises(ValueError, match="did you mean 'gdas'"):
        samplers.get("gda")


def test_gdas_mixture_through_a_supernet_is_exactly_the_sampled_arch():
    import nas
    import spaces
    space = spaces.get("cnn1d")
    model = nas.supernet(space, seed=0)
    alpha = {k: jnp.asarray(np.random.default_rng(0).normal(size=len(o)), jnp.float32)
             for k, o in space.choices.items()}
    probs = samplers.get("gdas").sample(alpha, jax.random.key(4), 0.3)
    x = np.random.default_rng(1).normal(size=(3, 40, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, probs)),
                                  np.asarray(model(x, space.from_probs(probs))))


def _nb201_edge_loss(train):
    from flax import nnx

    from spaces import nb201
    edge = nb201.Edge(4, nb201.OPS, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(2)
    if not train:
        edge.bn.mean[...] = jnp.asarray(rng.normal(size=4), jnp.float32)
        edge.bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=4), jnp.float32)
    graphdef, state = nnx.split(edge)
    x = jnp.asarray(rng.normal(size=(8, 6, 6, 4)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(8, 6, 6, 4)), jnp.float32)

    def loss(p, state):
        return jnp.sum(nnx.merge(graphdef, state, copy=True)(x, p, train) * weights)
    return lambda p: loss(p, state), lambda p: jax.grad(loss)(p, state)



@pytest.mark.parametrize("train", [True, False])
def test_nb201_edge_gradient_is_the_soft_mixture_derivative_at_every_one_hot(train):
    # GDAS backpropagates the gradient at its one-hot sample into the soft
    # probabilities; at a parameter-free op the convs' gradient once came out 0.
    loss, grad_of = _nb201_edge_loss(train)
    eps = 1e-3
    for chosen in range(5):
        hard = jnp.eye(5)[chosen]
        grad = np.asarray(grad_of(hard))
        # One-sided differences along each option: the derivative the soft mixture has.
        finite = np.array([(float(loss(hard + eps * jnp.eye(5)[k])) - float(loss(hard))) / eps
                           for k in range(5)])
        scale = np.abs(finite).max()
        np.testing.assert_allclose(grad, finite, atol=0.03 * scale, err_msg=f"one-hot {chosen}")
        assert np.all(np.abs(grad[2:4]) > 1e-3 * scale), f"conv options starved at one-hot {chosen}"


def test_nb201_supernet_at_a_parameter_free_one_hot_gives_every_conv_option_a_gradient():
    import nas
    import spaces
    space = spaces.get("nb201", channels=4, cells_per_stage=1).bind((8, 8, 3), 10)
    model = nas.supernet(space, seed=0)
    x = np.random.default_rng(1).normal(size=(6, 8, 8, 3)).astype(np.float32)
    y = np.arange(6) % 10

    def loss(probs):
        logits = model(x, probs)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y])

    # The gradient at a one-hot is what GDAS's straight-through hands the soft probabilities.
    grads = jax.grad(loss)(space.one_hot({k: "skip_connect" for k in space.choices}))
    conv = np.asarray([space.choices["edge_1_0"].index(op) for op in ("nor_conv_1x1", "nor_conv_3x3")])
    assert all(float(jnp.abs(grads[e][conv]).min()) > 1e-3 for e in grads)
