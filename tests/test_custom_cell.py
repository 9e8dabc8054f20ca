"""The cell protocol: a peephole LSTM (Gers & Schmidhuber 2000) written as a user would write it.

The cell below is the README's example; everything built on cells must work for it unchanged. The
library has its own (``rnnjax.cells.PeepholeLSTMCell``, fusable); the two must agree.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from rnnjax import cells


class PeepholeParams(NamedTuple):
    w_ih: jax.Array  # [I, 4H]
    w_hh: jax.Array  # [H, 4H]
    b: jax.Array  # [4H]
    w_peep: jax.Array  # [3, H]: peepholes of the i, f and o gates


@dataclasses.dataclass(frozen=True)
class PeepholeLSTMCell(cells.LSTMCell):
    def init(self, key, input_size):
        k1, k2 = jax.random.split(key)
        p = super().init(k1, input_size)
        peep = jax.random.uniform(k2, (3, self.hidden_size), minval=-0.5, maxval=0.5)
        return PeepholeParams(p.w_ih, p.w_hh, p.b_ih + p.b_hh, peep)

    def project_inputs(self, params, x):
        return cells.affine(x, params.w_ih, params.b)

    def recurrent_step(self, params, state, projected):
        i, f, g, o = jnp.split(projected + state.hidden @ params.w_hh, 4, axis=-1)
        p_i, p_f, p_o = params.w_peep
        c = jax.nn.sigmoid(f + p_f * state.cell) * state.cell
        c = c + jax.nn.sigmoid(i + p_i * state.cell) * jnp.tanh(g)
        h = jax.nn.sigmoid(o + p_o * c) * jnp.tanh(c)
        return cells.LSTMState(h, c), h


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeepholeLSTM(rnnjax.Recurrent):
    @property
    def cell(self):
        return PeepholeLSTMCell(self.hidden_size, bias=self.bias)


def _reference(params, xs, length):
    """Float64 loop of the peephole equations."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    hidden = p.w_hh.shape[0]
    h, c = np.zeros(hidden), np.zeros(hidden)
    outputs = np.zeros((len(xs), hidden))
    for t in range(length):
        z = np.asarray(xs[t], np.float64) @ p.w_ih + p.b + h @ p.w_hh
        i, f, g, o = np.split(z, 4)
        c = sig(f + p.w_peep[1] * c) * c + sig(i + p.w_peep[0] * c) * np.tanh(g)
        h = sig(o + p.w_peep[2] * c) * np.tanh(c)
        outputs[t] = h
    return outputs, (h, c)


def test_peephole_cell_unroll_step_and_layer():
    cell = PeepholeLSTMCell(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (6, 3))
    outputs, state = rnnjax.unroll(cell, params, xs, length=4)
    want_out, (want_h, want_c) = _reference(params, xs, 4)
    np.testing.assert_allclose(outputs, want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.cell, want_c, rtol=1e-5, atol=1e-6)

    state = cell.initial_state()
    for x in xs[:4]:
        state, _ = cell.step(params, state, x)
    np.testing.assert_allclose(state.hidden, want_h, rtol=1e-5, atol=1e-6)

    layer = PeepholeLSTM(4, num_layers=2, bidirectional=True)
    layer_params = layer.init(jax.random.key(2), 3)
    batch = jax.random.normal(jax.random.key(3), (2, 6, 3))
    loss = lambda p: jnp.sum(layer(p, batch, jnp.array([6, 3]))[0] ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(layer_params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # A bidirectional layer's backward direction on the short sequence is the reference reversed.
    single = PeepholeLSTM(4, bidirectional=True)
    out, _ = single(layer_params[:2], batch, jnp.array([6, 3]))
    rev_out, _ = _reference(layer_params[1], batch[1, :3][::-1], 3)
    np.testing.assert_allclose(out[1, :3, 4:8], rev_out[:3][::-1], rtol=1e-5, atol=1e-6)


def test_stack_runs_any_cell_like_the_subclass():
    stack = rnnjax.Stack(cell=PeepholeLSTMCell(4), num_layers=2, bidirectional=True)
    subclass = PeepholeLSTM(4, num_layers=2, bidirectional=True)
    params = stack.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
    lengths = jnp.array([6, 2])
    got, want = stack(params, xs, lengths), subclass(params, xs, lengths)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert stack.hidden_size == 4 and hash(stack) == hash(
        rnnjax.Stack(cell=PeepholeLSTMCell(4), num_layers=2, bidirectional=True)
    )


def test_stack_refuses_a_non_cell_and_a_conflicting_hidden_size():
    import pytest

    with pytest.raises(ValueError, match="cell must be an rnnjax.cells.Cell"):
        rnnjax.Stack(cell="lstm")
    with pytest.raises(ValueError, match="hidden_size must be 0"):
        rnnjax.Stack(hidden_size=5, cell=PeepholeLSTMCell(4))


def test_the_user_cell_computes_the_library_peephole_lstm():
    user = PeepholeLSTMCell(4)
    params = user.init(jax.random.key(0), 3)
    library = cells.PeepholeLSTMCell(4)
    library_params = cells.PeepholeParams(*params)  # the same layout: w_ih, w_hh, b, w_peep
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
    lengths = jnp.array([6, 4])
    want = rnnjax.Stack(cell=user, bidirectional=True)((params, params), xs, lengths)
    assert not user.fusable and library.fusable  # the user's subclass overrides recurrent_step
    for backend in ("scan", "fused"):
        layer = rnnjax.Stack(cell=library, bidirectional=True, backend=backend)
        got = layer((library_params, library_params), xs, lengths)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
