"""minGRU, minLSTM and LRU against float64 NumPy loops; the ASSOCIATIVE backend against the scan."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax import cells
from rnnjax.recurrence import scan_time_major
from rnnjax.recurrence.backends import Backend, Newton, linear_scan, resolve

INPUT, STEPS = 3, 6
TOL = dict(rtol=1e-5, atol=1e-6)


def assert_grads_close(got, want):
    """Equal to 1e-5 relative to each gradient's largest entry (float32 sums of many terms)."""

    def one(g, w):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(w))) + 1e-7)

    jax.tree.map(one, got, want)


def _squared(state):
    return jnp.sum(jnp.real(state) ** 2 + jnp.imag(state) ** 2)


CELLS = {
    "mingru": cells.MinGRUCell(5),
    "minlstm": cells.MinLSTMCell(5),
    "lru": cells.LRUCell(5, state_size=4, r_min=0.5, max_phase=3.0),
    "lru_gelu": cells.LRUCell(5, state_size=4, r_min=0.5, max_phase=3.0, activation="gelu"),
}


# --- the textbook equations, float64, one step at a time, no JAX ---------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _gelu(y):
    """jax.nn.gelu's default (tanh) form."""
    return 0.5 * y * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (y + 0.044715 * y**3)))


def _g(z):
    return np.where(z >= 0, z + 0.5, _sigmoid(z))


def _np_step(cell, params, h, x):
    p = {k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()}
    x = np.asarray(x, np.float64)
    if isinstance(cell, cells.LRUCell):
        lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
        bu = x @ (p["b_re"] + 1j * p["b_im"])
        h = lam * h + np.exp(p["gamma_log"]) * bu
        y = (h @ (p["c_re"] + 1j * p["c_im"])).real + x @ p["d"]
        return h, _gelu(y) if cell.activation == "gelu" else y
    z = x @ p["w_ih"] + (0.0 if p["b_ih"] is None else p["b_ih"])
    if isinstance(cell, cells.MinGRUCell):
        k, pre = np.split(z, 2, axis=-1)
        gate = _sigmoid(k)
        h = (1.0 - gate) * h + gate * _g(pre)
    else:
        k_f, k_i, pre = np.split(z, 3, axis=-1)
        f, i = _sigmoid(k_f), _sigmoid(k_i)
        h = f / (f + i) * h + i / (f + i) * _g(pre)
    return h, h


def _np_run(cell, params, xs, h0=None, reverse=False):
    h = np.zeros(jax.eval_shape(cell.initial_state).shape) if h0 is None else np.asarray(h0)
    h = h.astype(np.complex128 if isinstance(cell, cells.LRUCell) else np.float64)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    outputs = [None] * len(xs)
    for t in order:
        h, outputs[t] = _np_step(cell, params, h, xs[t])
    return np.stack(outputs) if len(xs) else np.zeros((0, cell.output_size)), h


def _setup(name, seed=0, steps=STEPS):
    cell = CELLS[name]
    k_params, k_x = jax.random.split(jax.random.key(seed))
    return cell, cell.init(k_params, INPUT), jax.random.normal(k_x, (steps, INPUT), jnp.float32)


# --- values ---------------------------------------------------------------------------------------


_OPTIONS = [  # (backend, reverse, length): the scan's cases are the associative one's yardstick
    ("scan", True, 4),
    ("associative", False, None),
    ("associative", True, 4),
    ("associative", False, 0),
]


@pytest.mark.parametrize("name,options", list(itertools.product(CELLS, _OPTIONS)))
def test_unroll_matches_float64_loop(name, options):
    backend, reverse, length = options
    cell, params, xs = _setup(name)
    h0 = jax.random.normal(jax.random.key(3), jax.eval_shape(cell.initial_state).shape)
    h0 = h0.astype(cell.initial_state().dtype)
    outputs, state = rnnjax.unroll(
        cell, params, xs, h0, length=length, reverse=reverse, backend=backend
    )
    n = STEPS if length is None else length
    want_out, want_state = _np_run(cell, params, np.asarray(xs)[:n], h0, reverse=reverse)
    np.testing.assert_allclose(outputs[:n], want_out, **TOL)
    np.testing.assert_array_equal(outputs[n:], 0.0)
    np.testing.assert_allclose(state, want_state, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_step_streams_what_both_backends_compute(name):
    cell, params, xs = _setup(name)
    state, streamed = cell.initial_state(), []
    for x in xs:
        state, y = cell.step(params, state, x)
        streamed.append(y)
    for backend in ("scan", "associative"):
        outputs, final = rnnjax.unroll(cell, params, xs, backend=backend)
        np.testing.assert_allclose(outputs, jnp.stack(streamed), **TOL)
        np.testing.assert_allclose(final, state, **TOL)


@pytest.mark.parametrize("name", ["mingru", "lru"])  # minLSTM's coefficients behave as minGRU's
def test_float32_associative_scan_stays_accurate_over_4096_steps(name):
    cell, params, xs = _setup(name, seed=2, steps=4096)
    want, _ = _np_run(cell, params, np.asarray(xs))
    errors = {}
    for backend in ("scan", "associative"):
        run = jax.jit(lambda p, x, b=backend: rnnjax.unroll(cell, p, x, backend=b)[0])
        outputs = run(params, xs)
        errors[backend] = float(np.max(np.abs(np.asarray(outputs, np.float64) - want)))
    # No drift beyond float32's own: the sequential float32 loop is the yardstick (the LRU's
    # |lambda| near 1 remembers its float32 rounding for ~1000 steps, in both).
    assert errors["associative"] <= max(2 * errors["scan"], 1e-5), errors
    assert errors["associative"] < 2e-4, errors


# --- gradients ------------------------------------------------------------------------------------


def _loss(cell, backend):
    def loss(params, xs, h0):
        outputs, state = rnnjax.unroll(cell, params, xs, h0, length=5, backend=backend)
        return jnp.sum(jnp.sin(outputs)) + _squared(state)

    return loss


@pytest.mark.parametrize("name", CELLS)
def test_associative_gradients_match_finite_differences(name):
    cell, params, xs = _setup(name, seed=1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(
            lambda p: None if p is None else jnp.asarray(p, jnp.float64), params
        )
        h0 = 0.5 * jnp.ones(
            jax.eval_shape(cell.initial_state).shape, cell.initial_state(jnp.float64).dtype
        )
        loss = jax.jit(_loss(cell, "associative"))
        check_grads(
            lambda p, x: loss(p, x, h0),
            (params64, jnp.asarray(xs, jnp.float64)),
            order=1,
            modes=["rev"],
            atol=1e-6,
            rtol=1e-6,
        )


@pytest.mark.parametrize("name", CELLS)
def test_associative_gradients_equal_the_scan(name):
    cell, params, xs = _setup(name, seed=4)
    h0 = jnp.full(jax.eval_shape(cell.initial_state).shape, 0.3, cell.initial_state().dtype)
    grads = [
        jax.jit(jax.grad(_loss(cell, b), argnums=(0, 1, 2)))(params, xs, h0)
        for b in ("scan", "associative")
    ]
    assert_grads_close(*grads)


# --- layers, resets, AUTO -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lru"])  # the complex state through a bidirectional layer
def test_stack_auto_is_associative_and_equals_scan_with_lengths(name):
    cell = CELLS[name]
    layers = [rnnjax.Stack(cell=cell, bidirectional=True, backend=b) for b in ("auto", "scan")]
    params = layers[0].init(jax.random.key(0), INPUT)
    x = jax.random.normal(jax.random.key(1), (3, STEPS, INPUT))
    lengths = jnp.array([6, 2, 0])

    def loss(params, layer):
        out, state = layer(params, x, lengths)
        return jnp.sum(out**2) + _squared(state), out

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, out_a), grad_a = value_and_grad(params, layers[0])
    (_, out_s), grad_s = value_and_grad(params, layers[1])
    np.testing.assert_allclose(out_a, out_s, **TOL)
    assert_grads_close(grad_a, grad_s)


@pytest.mark.parametrize("reverse", [False, True])
def test_associative_resets_equal_the_scan(reverse):
    cell, params, _ = _setup("lru")
    xs = jax.random.normal(jax.random.key(5), (STEPS, 2, INPUT))
    h0 = jnp.ones((2, cell.num_states), jnp.complex64)
    resets = jnp.zeros((STEPS, 2), bool).at[3, 0].set(True).at[1, 1].set(True)
    results = [
        scan_time_major(
            cell, params, xs, h0, jnp.array([6, 4]), resets=resets, reverse=reverse, backend=b
        )
        for b in ("scan", "associative")
    ]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), *results)


def test_auto_picks_associative_for_linear_cells_and_never_newton():
    assert resolve("auto", CELLS["minlstm"]) is Backend.ASSOCIATIVE
    for platform in ("cpu", "gpu"):
        assert resolve("auto", cells.GRUCell(4), platform=platform) is not Backend.NEWTON
    assert resolve(Newton(tol=1e-4), cells.GRUCell(4)) is Backend.NEWTON


def test_lru_ring_initialisation():
    cell = cells.LRUCell(8, state_size=512, r_min=0.4, r_max=0.9, max_phase=0.5)
    params = cell.init(jax.random.key(0), 3)
    lam = cell.eigenvalues(params)
    assert 0.4 <= float(jnp.abs(lam).min()) and float(jnp.abs(lam).max()) <= 0.9 + 1e-6
    assert float(jnp.angle(lam).min()) >= 0.0 and float(jnp.angle(lam).max()) <= 0.5 + 1e-6
    np.testing.assert_allclose(
        jnp.exp(params.gamma_log), jnp.sqrt(1 - jnp.abs(lam) ** 2), rtol=1e-5
    )
    # |lambda|^2 uniform on [r_min^2, r_max^2]: its mean is the middle of that interval.
    assert abs(float(jnp.mean(jnp.abs(lam) ** 2)) - (0.16 + 0.81) / 2) < 0.03
    assert all(not jnp.iscomplexobj(p) for p in jax.tree.leaves(params))


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="backend='associative' needs a cell with a linear"):
        rnnjax.GRU(4, backend="associative")
    with pytest.raises(ValueError, match="backend='associative' needs a cell with a linear"):
        rnnjax.unroll(
            cells.LSTMCell(4),
            cells.LSTMCell(4).init(jax.random.key(0), 2),
            jnp.ones((3, 2)),
            backend="associative",
        )
    with pytest.raises(ValueError, match="r_min, r_max"):
        cells.LRUCell(4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="max_phase"):
        cells.LRUCell(4, max_phase=0.0)
    with pytest.raises(ValueError, match="activation must be one of .*'gelu'.* got 'relu'"):
        cells.LRUCell(4, activation="relu")
    with pytest.raises(ValueError, match="hidden_size"):
        cells.MinGRUCell(0)


@pytest.mark.parametrize("reverse", [False, True])
def test_linear_scan_blocked_and_associative_forms_equal_a_loop(reverse):
    # The layers take the blocked form on CPU and associative_scan on GPU/TPU: both are checked.
    a = jax.random.uniform(jax.random.key(0), (37, 2), minval=-1.0, maxval=1.0)
    b = jax.random.normal(jax.random.key(1), (37, 2))
    h, want = np.array([0.5, -1.0]), np.zeros((37, 2))
    for t in range(36, -1, -1) if reverse else range(37):
        h = np.asarray(a[t], np.float64) * h + np.asarray(b[t], np.float64)
        want[t] = h
    for chunk in (None, 1, 6, 37, 64):
        got = linear_scan(a, b, jnp.array([0.5, -1.0]), reverse=reverse, chunk=chunk)
        np.testing.assert_allclose(got, want, **TOL)
