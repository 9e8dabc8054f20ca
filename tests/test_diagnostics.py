"""rnnjax.diagnostics against per-step loops, finite differences and hand computation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import diagnostics as dg
from rnnjax.cells import Cell

LAYERS = {
    "rnn": lambda h: rnnjax.RNN(h),
    "lstm": lambda h: rnnjax.LSTM(h),
    "gru": lambda h: rnnjax.GRU(h),
}


def _data(key, batch=3, steps=7, features=2):
    x = jax.random.normal(key, (batch, steps, features))
    y = jax.random.normal(jax.random.fold_in(key, 1), (batch, steps))
    return x, y


def _loss(outputs, y):
    """A loss at every step, so that each h_t reaches it directly and through the recurrence."""
    return jnp.mean((jnp.sum(outputs, axis=-1) - y) ** 2)


def _per_step_reference(cell, params, x, y, t):
    """||dL/dh_t|| by a loop: steps before t fixed, h_t a free variable, steps after recomputed."""
    batch = x.shape[0]
    out, state = [], cell.initial_state(x.dtype)
    norms = []
    for b in range(batch):
        state = cell.initial_state(x.dtype)
        outs = []
        for s in range(t + 1):
            state, o = cell.step(params, state, x[b, s])
            outs.append(o)

        def loss_from(h_t, state=state, outs=outs, b=b):
            st = dg._gradients._with_hidden(state, h_t)
            tail = [h_t]
            for s in range(t + 1, x.shape[1]):
                st, o = cell.step(params, st, x[b, s])
                tail.append(o)
            seq = jnp.stack(outs[:-1] + tail)  # [T, H]
            # The batch loss's terms of example b (the others do not depend on its h_t).
            return jnp.sum((jnp.sum(seq, -1) - y[b]) ** 2) / y.size

        norms.append(jnp.linalg.norm(jax.grad(loss_from)(dg.hidden_of(state))))
    out.append(np.mean(norms))
    return out[0]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradient_norms_match_a_per_step_loop(name):
    with jax.enable_x64(True):
        layer = LAYERS[name](4)
        params = jax.tree.map(
            lambda p: jnp.asarray(p, jnp.float64), layer.init(jax.random.PRNGKey(0), 2)
        )
        x, y = _data(jax.random.PRNGKey(1), batch=2, steps=5)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        norms = dg.gradient_norms_through_time(layer, params, x, lambda o: _loss(o, y))
        assert norms.shape == (1, 5)
        expected = [_per_step_reference(layer.cell, params[0], x, y, t) for t in range(5)]
        np.testing.assert_allclose(norms[0], expected, rtol=1e-9)


def test_stack_matches_the_layer_and_the_top_layer_its_own_reference():
    layer = rnnjax.LSTM(3, num_layers=2, bidirectional=True)
    params = layer.init(jax.random.PRNGKey(0), 2)
    x, _ = _data(jax.random.PRNGKey(2), steps=5)
    outputs, inputs = dg.run_stack(layer, params, x)
    np.testing.assert_allclose(outputs, layer(params, x)[0], atol=1e-6)
    np.testing.assert_allclose(
        jnp.swapaxes(inputs[2], 0, 1),
        dataclasses.replace(layer, num_layers=1)(params[:2], x)[0],
        atol=1e-6,
    )
    norms = dg.gradient_norms_through_time(layer, params, x, lambda o: jnp.mean(o[:, -1] ** 2))
    assert norms.shape == (4, 5)
    # Only the last step's outputs enter the loss: at that step each top cell's gradient is the
    # direct term 2 h / (B * D * H) (nothing comes after it); the backward cell runs from that
    # step first, so its later states (earlier positions) never reach the loss.
    last = outputs[:, -1]
    for index, half in ((2, last[:, :3]), (3, last[:, 3:])):
        direct = jnp.mean(jnp.linalg.norm(2 * half / last.size, axis=-1))
        np.testing.assert_allclose(norms[index, -1], direct, rtol=1e-5)
    assert jnp.all(norms[3, :-1] == 0.0)
    assert jnp.all(norms[2, :-1] > 0.0) and jnp.all(norms[:2] > 0.0)


@dataclasses.dataclass(frozen=True)
class LinearCell(Cell):
    """h' = h W + x U: the step's Jacobian is W^T at every step."""

    hidden_size: int

    def init(self, key, input_size):
        k1, k2 = jax.random.split(key)
        w = jax.random.normal(k1, (self.hidden_size, self.hidden_size)) / self.hidden_size**0.5
        return {"w": 0.9 * w, "u": jax.random.normal(k2, (input_size, self.hidden_size))}

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params, x):
        return x @ params["u"]

    def recurrent_step(self, params, state, projected):
        h = state @ params["w"] + projected
        return h, h


def test_linear_cell_jacobian_is_w_and_lyapunov_exponents_are_log_eigenvalue_moduli():
    with jax.enable_x64(True):
        cell = LinearCell(5)
        params = jax.tree.map(
            lambda p: jnp.asarray(p, jnp.float64), cell.init(jax.random.PRNGKey(3), 2)
        )
        xs = jnp.ones((3000, 2), jnp.float64)
        jacobians, states = dg.step_jacobians(cell, params, xs)
        assert jacobians.shape == (3000, 5, 5) and states.shape == (3000, 5)
        np.testing.assert_allclose(jacobians[17], params["w"].T, atol=1e-12)
        spectral = np.linalg.svd(np.asarray(params["w"]), compute_uv=False)[0]
        np.testing.assert_allclose(dg.spectral_norms(jacobians[:3]), [spectral] * 3, rtol=1e-10)
        moduli = np.sort(np.abs(np.linalg.eigvals(np.asarray(params["w"]))))[::-1]
        # Complex pairs share a modulus; the QR method converges as 1/T.
        np.testing.assert_allclose(dg.lyapunov_exponents(jacobians), np.log(moduli), atol=5e-3)
        np.testing.assert_allclose(
            dg.lyapunov_exponents(jacobians, 1), np.log(moduli[:1]), atol=5e-3
        )


def test_lstm_jacobian_matches_finite_differences():
    with jax.enable_x64(True):
        cell = rnnjax.cells.LSTMCell(3)
        params = jax.tree.map(
            lambda p: jnp.asarray(p, jnp.float64), cell.init(jax.random.PRNGKey(4), 2)
        )
        xs = jax.random.normal(jax.random.PRNGKey(5), (4, 2), jnp.float64)
        jacobians, states = dg.step_jacobians(cell, params, xs)
        assert jacobians.shape == (4, 6, 6)  # [hidden, cell] flattened
        before = np.asarray(states[1])  # the state entering step 2

        def step(flat):
            state = rnnjax.LSTMState(jnp.asarray(flat[:3]), jnp.asarray(flat[3:]))
            new, _ = cell.step(params, state, xs[2])
            return np.concatenate([new.hidden, new.cell])

        eps = 1e-6
        numeric = np.stack(
            [(step(before + eps * e) - step(before - eps * e)) / (2 * eps) for e in np.eye(6)],
            axis=1,
        )
        np.testing.assert_allclose(jacobians[2], numeric, atol=1e-8)


def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_gate_saturation_and_state_norms_match_a_numpy_loop():
    cell = rnnjax.cells.LSTMCell(4)
    params = jax.tree.map(lambda p: 8 * p, cell.init(jax.random.PRNGKey(6), 2))  # saturating
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (3, 6, 2)))
    p = jax.tree.map(np.asarray, params)
    h, c = np.zeros((3, 4)), np.zeros((3, 4))
    counts = {g: np.zeros((6, 2)) for g in ("input", "forget", "output")}
    norms = []
    for t in range(6):
        z = x[:, t] @ p.w_ih + p.b_ih + p.b_hh + h @ p.w_hh
        gates = {"input": z[:, :4], "forget": z[:, 4:8], "output": z[:, 12:]}
        for name, pre in gates.items():
            s = _np_sigmoid(pre)
            counts[name][t] = [np.mean(s > 0.99), np.mean(s < 0.01)]
        i, f, g, o = (z[:, k * 4 : (k + 1) * 4] for k in range(4))
        c = _np_sigmoid(f) * c + _np_sigmoid(i) * np.tanh(g)
        h = _np_sigmoid(o) * np.tanh(c)
        norms.append(np.mean(np.linalg.norm(h, axis=-1)))
    got = dg.gate_saturation(cell, params, x)
    assert sum(counts[g].sum() for g in counts) > 0  # the test exercises saturation
    for name, fractions in counts.items():
        np.testing.assert_allclose(got[name]["above"], fractions[:, 0])
        np.testing.assert_allclose(got[name]["below"], fractions[:, 1])
    np.testing.assert_allclose(dg.state_norms(cell, params, x), norms, rtol=1e-5)


def test_gru_gate_saturation_matches_numpy():
    cell = rnnjax.cells.GRUCell(3)
    params = jax.tree.map(lambda p: 10 * p, cell.init(jax.random.PRNGKey(8), 2))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (2, 5, 2)))
    outputs, _ = rnnjax.Stack(cell=cell)((params,), x)
    p = jax.tree.map(np.asarray, params)
    h_before = np.concatenate([np.zeros((2, 1, 3)), np.asarray(outputs)[:, :-1]], axis=1)
    z = x @ p.w_ih[:, :6] + (p.b_ih + p.b_hh)[:6] + h_before @ p.w_hh[:, :6]
    got = dg.gate_saturation(cell, params, x)
    for name, part in (("reset", z[..., :3]), ("update", z[..., 3:])):
        s = _np_sigmoid(part)
        np.testing.assert_allclose(got[name]["above"], np.mean(s > 0.99, axis=(0, 2)))
        np.testing.assert_allclose(got[name]["below"], np.mean(s < 0.01, axis=(0, 2)))


def test_gate_diagnostics_see_through_the_bfloat16_policy():
    layer = rnnjax.with_compute_dtype(rnnjax.LSTM(4, num_layers=2), jnp.bfloat16)
    params = jax.tree.map(lambda p: 8 * p, layer.init(jax.random.PRNGKey(6), 2))  # saturating
    x, y = _data(jax.random.PRNGKey(1))
    out = jax.jit(lambda p: dg.summary(layer, p, x, lambda o: _loss(o, y), points=3))(params)
    assert {"l0d0/forget_above", "l1d0/input_below"} <= set(out)
    # The policy's gates are the float32 cell's to bf16's precision: a unit of B x H may cross a
    # threshold, no more.
    exact = dg.gate_saturation(rnnjax.cells.LSTMCell(4), params[0], x)
    mixed = dg.gate_saturation(layer.cell, params[0], x)
    assert sum(float(jnp.sum(exact[g]["above"] + exact[g]["below"])) for g in exact) > 0
    for gate, fractions in mixed.items():
        for side, values in fractions.items():
            np.testing.assert_allclose(values, exact[gate][side], atol=1 / (x.shape[0] * 4) + 1e-6)


def test_summary_names_and_bad_input():
    layer = rnnjax.GRU(3, num_layers=2)
    params = layer.init(jax.random.PRNGKey(0), 2)
    x, y = _data(jax.random.PRNGKey(1))
    out = jax.jit(lambda p: dg.summary(layer, p, x, lambda o: _loss(o, y), points=3))(params)
    assert {"l0d0/dLdh_t0", "l0d0/dLdh_t3", "l1d0/dLdh_t6", "l1d0/update_above"} <= set(out)
    assert all(v.shape == () and jnp.isfinite(v) for v in out.values())
    with pytest.raises(ValueError, match="gate_saturation needs an LSTMCell or GRUCell"):
        dg.gate_saturation(rnnjax.cells.ElmanCell(3), layer.init(jax.random.PRNGKey(0), 2)[0], x)
    with pytest.raises(ValueError, match=r"num must be in \[1, 3\]"):
        dg.lyapunov_exponents(jnp.zeros((2, 3, 3)), 4)
    with pytest.raises(ValueError, match="needs a batch_first layer"):
        dg.gradient_norms_through_time(rnnjax.GRU(3, batch_first=False), params[:1], x, _loss)
    with pytest.raises(ValueError, match="has a .hidden field"):
        dg.hidden_of((jnp.zeros(3), jnp.zeros(3)))
