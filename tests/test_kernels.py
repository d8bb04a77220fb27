"""Tests for the numeric JAX kernels in ``kernels/`` (dense references on small problems)."""

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import kernels as K  # noqa: E402

# --------------------------------------------------------------------------- helpers


def neg_grad(loss):
    return lambda p: jax.tree.map(jnp.negative, jax.grad(loss)(p))


def flat_field(field, params):
    """The field as a map R^d -> R^d (dense reference only)."""
    _, unravel = ravel_pytree(params)
    return lambda th: ravel_pytree(field(unravel(th)))[0]


def dense_elementary(nodes, flat_fields, theta):
    """F(i) from full derivative tensors D^k f_c (jacfwd applied k times), contracted in numpy."""
    tensors, vals = {}, []
    for color, children in nodes:
        k = len(children)
        if (color, k) not in tensors:
            d = flat_fields[color]
            for _ in range(k):
                d = jax.jacfwd(d)
            tensors[color, k] = np.asarray(jax.jit(d)(theta))
        t = tensors[color, k]
        for c in children:
            t = t @ vals[c]
        vals.append(t)
    return vals


def assert_close(tree, ref, tol=1e-10):
    flat = ravel_pytree(tree)[0] if not isinstance(tree, np.ndarray | jax.Array) else tree
    ref = np.asarray(ref)
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(np.asarray(flat), ref, rtol=0, atol=tol * scale)


# trees: 0 = ., 1 = [.], 2 = [[.]], 3 = [., .], 4 = [[.], .], 5 = [[[.]]], 6 = [., ., .]
ONE_COLOR = [(0, ()), (0, (0,)), (0, (1,)), (0, (0, 0)), (0, (1, 0)), (0, (2,)), (0, (0, 0, 0))]
TWO_COLOR = [(0, ()), (1, ()), (1, (0,)), (0, (1, 2)), (1, (3, 0)), (0, (1, 1)), (1, (2,))]


def poly_loss(p):
    x0, (x1, x2) = p["u"], p["v"]
    return x0**2 * x1 + x1**3 * x2 / 3 + x0 * x2**2 + 0.5 * x0**4 - x1 * x2 + 0.1 * x2**4


def poly_loss2(p):
    x0, (x1, x2) = p["u"], p["v"]
    return jnp.sin(x0 * x1) + x2**3 * x0 + jnp.exp(0.3 * x1) * x2


POLY_PARAMS = {"u": jnp.array(0.7), "v": jnp.array([-0.4, 1.1])}

_X = jnp.linspace(-1.0, 1.0, 16).reshape(8, 2)
_Y = jnp.sin(3.0 * _X[:, :1]) + _X[:, 1:] ** 2


def mlp_apply(p, x):
    h = jnp.tanh(x @ p["W1"] + p["b1"])
    h = jnp.tanh(h @ p["W2"] + p["b2"])
    return h @ p["W3"] + p["b3"]


def mlp_loss(p):
    return jnp.mean((mlp_apply(p, _X) - _Y) ** 2)


def mlp_loss2(p):
    return jnp.mean(mlp_apply(p, _X) ** 2) + 0.01 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p))


def mlp_params(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 6)
    shapes = {"W1": (2, 5), "b1": (5,), "W2": (5, 5), "b2": (5,), "W3": (5, 1), "b3": (1,)}
    return {n: 0.6 * jax.random.normal(k, s) for k, (n, s) in zip(ks, shapes.items(), strict=True)}


# --------------------------------------------------------------------------- tree_util


def test_tree_util_vector_space():
    a = {"w": jnp.array([1.0, 2.0]), "b": (jnp.array(3.0), None)}
    b = {"w": jnp.array([0.5, -1.0]), "b": (jnp.array(2.0), None)}
    assert_close(K.tree_add(a, b), [5.0, 1.5, 1.0])  # flattening order: b, then w
    assert float(K.tree_vdot(a, b)) == pytest.approx(0.5 - 2.0 + 6.0)
    assert float(K.tree_norm(a)) == pytest.approx(np.sqrt(14.0))
    assert_close(K.tree_axpy(2.0, a, b), ravel_pytree(b)[0] + 2 * ravel_pytree(a)[0])
    assert_close(K.tree_scale(-1.0, a), -ravel_pytree(a)[0])
    assert_close(K.tree_sub(a, b), ravel_pytree(a)[0] - ravel_pytree(b)[0])
    assert_close(K.tree_zeros_like(a), np.zeros(3))
    lc = K.linear_combination([2.0, -1.0, 0.5], [a, b, a])
    assert_close(lc, 2.5 * ravel_pytree(a)[0] - ravel_pytree(b)[0])
    with pytest.raises(ValueError, match="coefficients"):
        K.linear_combination([1.0], [a, b])


def test_check_same_structure_and_float_params():
    with pytest.raises(ValueError) as err:
        K.check_same_structure({"a": 1.0}, (1.0,), "my thing")
    msg = str(err.value)
    assert "my thing" in msg and "'a'" in msg and "PyTreeDef((*,))" in msg
    with pytest.raises(ValueError, match="shapes"):
        K.check_same_structure({"a": jnp.zeros(2)}, {"a": jnp.zeros(3)})
    K.check_float_params({"a": jnp.zeros(2), "b": None})
    with pytest.raises(TypeError, match=r"\['b'\].*int.*Fix"):
        K.check_float_params({"a": jnp.zeros(2), "b": jnp.array([1, 2])})
    with pytest.raises(TypeError):
        K.elementary_differentials([(0, ())], [lambda p: p], {"b": jnp.array([1, 2])})
    with pytest.raises(TypeError, match="not an array"):
        K.check_float_params({"act": jnp.tanh})


def test_validate_nodes_and_orders():
    assert K.node_orders(ONE_COLOR) == [1, 2, 3, 3, 4, 4, 4]
    with pytest.raises(ValueError, match="earlier"):
        K.validate_nodes([(0, (0,))])
    with pytest.raises(ValueError, match="color 2"):
        K.validate_nodes([(2, ())], [lambda p: p])


# --------------------------------------------------------------------------- elementary


@pytest.mark.parametrize(
    "loss,params,nodes",
    [
        (poly_loss, POLY_PARAMS, ONE_COLOR),
        (mlp_loss, mlp_params(), ONE_COLOR[:6]),
    ],
    ids=["poly", "mlp"],
)
def test_elementary_vs_dense(loss, params, nodes):
    field = neg_grad(loss)
    theta = ravel_pytree(params)[0]
    ref = dense_elementary(nodes, [flat_field(field, params)], theta)
    got = jax.jit(lambda p: K.elementary_differentials(nodes, [field], p))(params)
    assert len(got) == len(nodes)
    for g, r in zip(got, ref, strict=True):
        K.check_same_structure(g, params, "node value")
        assert_close(g, r)
    if loss is poly_loss:  # eager (un-jitted) evaluation gives the same
        for g, r in zip(K.elementary_differentials(nodes[:3], [field], params), ref, strict=False):
            assert_close(g, r)


@pytest.mark.parametrize(
    "losses,params",
    # the MLP case (~5 s) runs with -m slow; one-color MLP trees stay in the fast suite
    [((poly_loss, poly_loss2), POLY_PARAMS),
     pytest.param((mlp_loss, mlp_loss2), mlp_params(1), marks=pytest.mark.slow)],
    ids=["poly", "mlp"],
)
def test_elementary_two_colors_vs_dense(losses, params):
    fields = [neg_grad(L) for L in losses]
    theta = ravel_pytree(params)[0]
    ref = dense_elementary(TWO_COLOR, [flat_field(f, params) for f in fields], theta)
    got = jax.jit(lambda p: K.elementary_differentials(TWO_COLOR, fields, p))(params)
    for g, r in zip(got, ref, strict=True):
        assert_close(g, r)
    # a Mapping of colours works too
    got_map = jax.jit(
        lambda p: K.elementary_differentials(TWO_COLOR[:3], dict(enumerate(fields)), p)
    )(params)
    assert_close(got_map[-1], ref[2])


def _game_losses():
    def l1(p):
        x, y = p
        return jnp.sum(x**2 * y[:2]) + jnp.sin(x[0] * y[2]) + 0.2 * x[1] ** 3

    def l2(p):
        x, y = p
        return jnp.dot(x, y[:2]) * y[2] - jnp.cos(y[0] + x[1]) + 0.1 * jnp.sum(y**4)

    return l1, l2


def test_block_game_field():
    l1, l2 = _game_losses()

    def f_x(p):
        x, y = p
        return (-jax.grad(lambda xx: l1((xx, y)))(x), jnp.zeros_like(y))

    def f_y(p):
        x, y = p
        return (jnp.zeros_like(x), -jax.grad(lambda yy: l2((x, yy)))(y))

    params = (jnp.array([0.3, -0.8]), jnp.array([0.5, 1.2, -0.7]))
    theta = ravel_pytree(params)[0]
    fields = [f_x, f_y]
    ref = dense_elementary(TWO_COLOR, [flat_field(f, params) for f in fields], theta)
    got = jax.jit(lambda p: K.elementary_differentials(TWO_COLOR, fields, p))(params)
    for g, r in zip(got, ref, strict=True):
        assert isinstance(g, tuple) and len(g) == 2
        assert_close(g, r)
    # the simultaneous-gradient field as one colour: [.] = f'(f)
    joint = lambda p: jax.tree.map(jnp.add, f_x(p), f_y(p))
    ref1 = dense_elementary([(0, ()), (0, (0,))], [flat_field(joint, params)], theta)
    got1 = jax.jit(lambda p: K.elementary_differentials([(0, ()), (0, (0,))], [joint], p))(params)
    assert_close(got1[1], ref1[1])


@pytest.mark.parametrize(
    "losses,params,nodes",
    [
        ((poly_loss,), POLY_PARAMS, ONE_COLOR),
        ((poly_loss, poly_loss2), POLY_PARAMS, TWO_COLOR),
        # ~4 s; the one-color MLP trees (test_elementary_vs_dense[mlp]) stay fast
        pytest.param((mlp_loss, mlp_loss2), mlp_params(2), TWO_COLOR, marks=pytest.mark.slow),
    ],
    ids=["poly", "poly2", "mlp2"],
)
def test_gradient_path_sign(losses, params, nodes):
    fields = [neg_grad(L) for L in losses]
    generic = jax.jit(lambda p: K.elementary_differentials(nodes, fields, p))(params)
    grads = jax.jit(lambda p: K.gradient_elementary_differentials(nodes, losses, p))(params)
    for order, f, g in zip(K.node_orders(nodes), generic, grads, strict=True):
        assert_close(K.tree_scale((-1.0) ** order, g), ravel_pytree(f)[0])


def test_loss_contraction():
    losses = (poly_loss, poly_loss2)
    params = POLY_PARAMS
    theta, unravel = ravel_pytree(params)

    @jax.jit
    def compute(p):
        grads = K.gradient_elementary_differentials(TWO_COLOR, losses, p)
        out = []
        for color, children in TWO_COLOR:
            fn = lambda q, c=color, ch=children: K.loss_contraction(c, ch, losses, q, grads)
            out.append(jax.value_and_grad(fn)(p))
        return grads, out

    grads, out = compute(params)
    flat_vals = [ravel_pytree(g)[0] for g in grads]
    for i, (color, children) in enumerate(TWO_COLOR):
        # value: dense D^k L contracted with the children
        d = lambda th, c=color: losses[c](unravel(th))
        for _ in children:
            d = jax.jacfwd(d)
        t = np.asarray(d(theta))
        for c in children:
            t = t @ flat_vals[c]
        value, grad = out[i]
        assert float(value) == pytest.approx(float(t), rel=1e-10, abs=1e-12)
        # gradient with children held fixed is G(i)
        assert_close(grad, flat_vals[i])
    assert float(K.loss_contraction(0, (), losses, params, [])) == pytest.approx(
        float(poly_loss(params))
    )
    with pytest.raises(ValueError, match="scalar"):
        K.loss_contraction(0, (), [lambda p: p["v"]], params, [])


def test_nested_jvp_scalar_and_dtype_cast():
    f = lambda p: jnp.sum(p["x"] ** 3) * p["y"]
    params = {"x": jnp.array([1.0, 2.0]), "y": jnp.array(0.5)}
    v = {"x": jnp.array([1.0, 0.0], jnp.float32), "y": jnp.array(0.0, jnp.float32)}
    w = {"x": jnp.array([0.0, 1.0]), "y": jnp.array(1.0)}
    assert float(K.nested_jvp(f, params, [])) == pytest.approx(4.5)
    # D^2 f[v, v] = 6 x_1 y = 3 ; D^2 f[v, w] = 3 x_1^2 = 3 ; D^3 f[v, v, w] = 6 x_1 = 6
    assert float(K.nested_jvp(f, params, [v, v])) == pytest.approx(3.0)
    assert float(K.nested_jvp(f, params, [v, w])) == pytest.approx(3.0)
    assert float(K.nested_jvp(f, params, [v, v, w])) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="direction 0"):
        K.nested_jvp(f, params, [{"x": jnp.ones(2)}])


def test_equinox_filtered_params():
    model = eqx.nn.MLP(2, 1, width_size=4, depth=1, activation=jnp.tanh, key=jax.random.PRNGKey(3))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        m = eqx.combine(p, static)
        return jnp.mean((jax.vmap(m)(_X) - _Y) ** 2)

    nodes = ONE_COLOR[:5]
    generic = jax.jit(lambda p: K.elementary_differentials(nodes, [neg_grad(loss)], p))(params)
    grads = jax.jit(lambda p: K.gradient_elementary_differentials(nodes, [loss], p))(params)
    for order, f, g in zip(K.node_orders(nodes), generic, grads, strict=True):
        assert_close(K.tree_scale((-1.0) ** order, g), ravel_pytree(f)[0])
    # [.] = f'(f) = H grad L for f = -grad L
    hv = jax.jit(lambda p, v: K.hvp(loss, p, v))(params, grads[0])
    assert_close(generic[1], ravel_pytree(hv)[0])


def test_elementary_jit_and_vmap():
    nodes = TWO_COLOR
    losses = (poly_loss, poly_loss2)
    fields = [neg_grad(L) for L in losses]
    batch = jax.tree.map(lambda x: jnp.stack([x, -x, 0.5 * x]), POLY_PARAMS)
    run = jax.jit(lambda p: K.elementary_differentials(nodes, fields, p))
    run_g = lambda p: K.gradient_elementary_differentials(nodes, losses, p)
    vm, vg = jax.vmap(run)(batch), jax.jit(jax.vmap(run_g))(batch)
    signs = [(-1.0) ** order for order in K.node_orders(nodes)]
    for s in range(3):
        single = run(jax.tree.map(lambda x, s=s: x[s], batch))
        for i, sign in enumerate(signs):
            ref = ravel_pytree(single[i])[0]
            assert_close(jax.tree.map(lambda x, s=s: x[s], vm[i]), ref)
            assert_close(jax.tree.map(lambda x, s=s, sg=sign: sg * x[s], vg[i]), ref)


# --------------------------------------------------------------------------- hvp / spectrum


def quad_quartic_problem(d=20, top=10.0, seed=0):
    """Loss 0.5 th^T A th + 0.025 sum th^4 + sum sin th on params {"a": (5,), "b": (5, 3)}.

    Its Hessian A + diag(0.3 th^2 - sin th) (dense, in numpy, for reference only)
    has a well separated top eigenvalue near ``top``.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = (q * np.concatenate([[top], np.linspace(-2.0, 4.0, d - 1)])) @ q.T
    theta = 0.5 * rng.standard_normal(d)
    params = {"a": jnp.asarray(theta[:5]), "b": jnp.asarray(theta[5:].reshape(-1, 3))}
    a_j = jnp.asarray(a)

    def loss(p):
        th = jnp.concatenate([p["a"], p["b"].reshape(-1)])
        return 0.5 * th @ a_j @ th + 0.025 * jnp.sum(th**4) + jnp.sum(jnp.sin(th))

    hess = a + np.diag(0.3 * theta**2 - np.sin(theta))
    return loss, params, hess


def test_hvp_and_quadratic():
    loss, params, hess = quad_quartic_problem()
    v = K.tree_random_normal(jax.random.PRNGKey(1), params)
    vf = ravel_pytree(v)[0]
    hv, hv_op, quad = jax.jit(
        lambda p, v: (
            K.hvp(loss, p, v),
            K.hvp_operator(loss, p)(v),
            K.hessian_quadratic(loss, p, v),
        )
    )(params, v)
    assert_close(hv, hess @ vf)
    assert_close(hv_op, hess @ vf)
    assert float(quad) == pytest.approx(float(vf @ hess @ vf), rel=1e-10)
    assert_close(K.hvp(loss, params, v), hess @ vf)  # eager


def test_power_iteration_and_lanczos():
    loss, params, hess = quad_quartic_problem()
    eigs = np.linalg.eigvalsh(hess)
    top = eigs[np.argmax(np.abs(eigs))]
    key = jax.random.PRNGKey(0)

    @jax.jit
    def compute(p):
        return (
            K.top_hessian_eigenpair(loss, p, key, iters=80),
            K.top_hessian_eigenvalue(loss, p, key, iters=80),
            K.lanczos(loss, p, key, num_steps=8),
            K.lanczos(loss, p, key, num_steps=20),
            K.lanczos(loss, p, key, num_steps=50),  # clipped to d = 20
        )

    (lam, v), lam2, ritz, full, clipped = compute(params)
    assert float(lam) == pytest.approx(top, rel=1e-8)
    assert float(lam2) == pytest.approx(top, rel=1e-8)
    assert float(K.tree_norm(v)) == pytest.approx(1.0)
    assert ritz.shape == (8,) and clipped.shape == (20,)
    assert float(ritz[-1]) == pytest.approx(eigs[-1], rel=1e-8)
    np.testing.assert_allclose(np.asarray(full), eigs, atol=1e-9)
    np.testing.assert_allclose(np.asarray(clipped), eigs, atol=1e-9)


def test_lanczos_invariant_subspace_restart():
    """Rank-3 Hessian: the Krylov space is exhausted after 3 steps; restarts keep T exact."""
    u = jax.random.normal(jax.random.PRNGKey(5), (10, 3))
    loss = lambda p: 0.5 * jnp.sum((p["x"] @ u) ** 2)
    params = {"x": jnp.ones(10)}
    eigs = np.linalg.eigvalsh(np.asarray(u @ u.T))
    ritz = np.asarray(K.lanczos(loss, params, jax.random.PRNGKey(0), num_steps=10))  # eager
    assert np.all(np.isfinite(ritz))
    np.testing.assert_allclose(ritz, eigs, atol=1e-9)


def test_hutchinson_trace():
    loss, params, hess = quad_quartic_problem(seed=3)
    key = jax.random.PRNGKey(7)

    @jax.jit
    def compute(p):
        return (
            K.hutchinson_samples(loss, p, key, 400),
            K.hutchinson_trace(loss, p, key, 400),
            K.hutchinson_samples(loss, p, key, 400, batch_size=100),
        )

    samples, est, chunked = compute(params)
    stderr = float(jnp.std(samples)) / np.sqrt(400)
    assert float(est) == pytest.approx(float(jnp.mean(samples)))
    assert abs(float(est) - np.trace(hess)) < 4 * stderr
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(samples), rtol=1e-12)


def test_spectrum_vmap():
    loss, params, hess = quad_quartic_problem()
    key = jax.random.PRNGKey(0)
    batch = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), params)

    @jax.jit
    def compute(ps):
        per = lambda p: (
            K.top_hessian_eigenvalue(loss, p, key, 80),
            K.lanczos(loss, p, key, 8)[-1],
            K.hutchinson_trace(loss, p, key, 8),
            K.hvp(loss, p, p),
        )
        return jax.vmap(per)(ps)

    tops, lanczos_tops, traces, hvs = compute(batch)
    assert tops.shape == lanczos_tops.shape == traces.shape == (2,)
    assert float(lanczos_tops[0]) == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-8)
    assert float(tops[0]) == pytest.approx(float(lanczos_tops[0]), rel=1e-8)
    assert_close(jax.tree.map(lambda x: x[0], hvs), hess @ ravel_pytree(params)[0])


# --------------------------------------------------------------------------- per-example


def example_loss(p, ex):
    pred = jnp.tanh(ex["x"] @ p["w"] + p["b"])
    return (pred - ex["y"]) ** 2


def _per_example_problem():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(11), 3)
    params = {"w": jax.random.normal(k1, (3,)), "b": jnp.array(0.1)}
    batch = {"x": jax.random.normal(k2, (7, 3)), "y": jax.random.normal(k3, (7,))}
    return params, batch


def test_per_example_grads_and_noise_trace():
    params, batch = _per_example_problem()
    grad_fn = jax.jit(jax.grad(example_loss))
    loop = np.stack(
        [
            ravel_pytree(grad_fn(params, jax.tree.map(lambda x, i=i: x[i], batch)))[0]
            for i in range(7)
        ]
    )

    @jax.jit
    def compute(p):
        traces = [
            K.gradient_noise_covariance_trace(example_loss, p, batch, ddof=ddof, batch_size=bs)
            for ddof in (0, 1)
            for bs in (None, 3)
        ]
        return K.per_example_grads(example_loss, p, batch), traces

    pg, traces = compute(params)
    assert pg["w"].shape == (7, 3) and pg["b"].shape == (7,)
    got = np.stack([ravel_pytree(jax.tree.map(lambda x, i=i: x[i], pg))[0] for i in range(7)])
    np.testing.assert_allclose(got, loop, atol=1e-12)
    refs = [np.trace(np.cov(loop.T, ddof=ddof)) for ddof in (0, 0, 1, 1)]
    for tr, ref in zip(traces, refs, strict=True):
        assert float(tr) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="leading"):
        K.per_example_grads(example_loss, params, {"x": jnp.zeros((3, 2)), "y": jnp.zeros(4)})


# --------------------------------------------------------------------------- steepest


def test_steepest_directions():
    g = {"a": jnp.array([1.0, -3.0]), "b": (jnp.array([[0.5, 4.0], [-4.0, 0.0]]),)}
    flat = ravel_pytree(g)[0]
    l1, linf = float(jnp.sum(jnp.abs(flat))), float(jnp.max(jnp.abs(flat)))
    assert_close(K.sign_direction(g, scale="unit"), np.sign(flat))
    d = K.sign_direction(g)
    assert_close(d, l1 * np.sign(flat))
    assert float(K.tree_vdot(g, d)) == pytest.approx(l1**2)  # <g, d> = ||g||_*^2
    # l1: only the largest |g_j| (first of the tie 4.0 / -4.0 in flattening order)
    expect = np.zeros(6)
    expect[3] = 4.0
    assert_close(K.coordinate_direction(g), expect)
    assert float(K.tree_vdot(g, K.coordinate_direction(g))) == pytest.approx(linf**2)
    assert_close(K.coordinate_direction(g, scale="unit"), np.sign(expect))
    g2 = {"a": jnp.array([1.0, -3.0]), "b": (jnp.array([[0.5, 2.0], [-5.0, 0.0]]),)}
    expect2 = np.zeros(6)
    expect2[4] = -5.0
    d2 = K.coordinate_direction(g2)
    assert_close(d2, expect2)
    assert float(K.tree_vdot(g2, d2)) == pytest.approx(25.0)
    assert K.l2_direction(g) is g
    n = K.normalized_direction(g)
    assert float(K.tree_norm(n)) == pytest.approx(1.0)
    assert_close(n, flat / np.linalg.norm(flat))
    zero = K.tree_zeros_like(g)
    assert_close(K.normalized_direction(zero), np.zeros(6))
    assert_close(K.sign_direction(zero), np.zeros(6))
    with pytest.raises(ValueError, match="scale"):
        K.sign_direction(g, scale="normalised")
    # jit and vmap over a batch of gradients
    batch = jax.tree.map(lambda x: jnp.stack([x, -2 * x]), g)
    vd = jax.jit(jax.vmap(K.coordinate_direction))(batch)
    assert_close(jax.tree.map(lambda x: x[1], vd), -2 * expect)
    vs = jax.vmap(K.sign_direction)(batch)
    assert_close(jax.tree.map(lambda x: x[1], vs), 2 * l1 * np.sign(-flat))
