"""Bad input gets a ValueError that names the argument, what was expected and what came."""

import jax
import jax.numpy as jnp
import pytest

import rnnjax
from rnnjax import cells

LAYER = rnnjax.LSTM(4, num_layers=2, bidirectional=True)
PARAMS = LAYER.init(jax.random.key(0), 3)
X = jnp.ones((2, 5, 3))


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: LAYER(PARAMS, jnp.ones((5, 3))),
            r"x must have shape \[B, T, F\].*got shape \(5, 3\)",
        ),
        (lambda: LAYER(PARAMS, jnp.ones((2, 5, 7))), r"x must have 3 features.*\(2, 5, 7\)"),
        (
            lambda: LAYER(PARAMS, jnp.ones((2, 5, 3), jnp.int32)),
            r"x must have a floating dtype.*int32",
        ),
        (lambda: LAYER(PARAMS, X, jnp.array([5, 6])), r"lengths must lie in \[0, T=5\].*\[5, 6\]"),
        (lambda: LAYER(PARAMS, X, jnp.array([-1, 2])), r"lengths must lie in \[0, T=5\]"),
        (lambda: LAYER(PARAMS, X, jnp.array([1, 2, 3])), r"lengths must have shape \(2,\).*\(3,\)"),
        (lambda: LAYER(PARAMS, X, jnp.array([1.0, 2.0])), r"lengths must have an integer dtype"),
        (
            lambda: LAYER(PARAMS, X, None, (jnp.zeros((4, 2, 4)), jnp.zeros((2, 2, 4)))),
            r"initial_state must have shapes \[\(4, 2, 4\), \(4, 2, 4\)\].*\(2, 2, 4\)",
        ),
        (
            lambda: rnnjax.GRU(4)(
                rnnjax.GRU(4).init(jax.random.key(0), 3), X, None, jnp.zeros((1, 4))
            ),
            r"initial_state must have shapes \[\(1, 2, 4\)\].*got \[\(1, 4\)\]",
        ),
        (lambda: LAYER(PARAMS[:2], X), r"params must be a tuple of 4 cell parameter sets.*got 2"),
        (
            lambda: rnnjax.RNN(4, nonlinearity="sigmoid"),
            r"nonlinearity must be one of \('tanh', 'relu'\), got 'sigmoid'",
        ),
        (lambda: rnnjax.LSTM(4, proj_size=4), r"proj_size must be in \[0, hidden_size=4\), got 4"),
        (lambda: rnnjax.GRU(0), r"hidden_size must be a positive int, got 0"),
        (lambda: rnnjax.GRU(4, num_layers=0), r"num_layers must be a positive int, got 0"),
        (lambda: rnnjax.GRU(4, dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: rnnjax.LSTM(4, bias=False, forget_bias=1.0), r"forget_bias needs bias=True"),
        (lambda: LAYER.init(jax.random.key(0), 0), r"input_size must be a positive int, got 0"),
        (
            lambda: cells.GRUCell(4, recurrent_init="he").init(jax.random.key(0), 3),
            r"recurrent_init must be one of \('uniform', 'orthogonal', 'glorot_uniform', "
            r"'identity'\).*'he'",
        ),
        (
            lambda: rnnjax.unroll(cells.GRUCell(4), None, jnp.ones((2, 5, 3))),
            r"xs must be one sequence of shape \[T, I\] \(batch with jax.vmap\), got shape \(2, 5",
        ),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_time_major_error_names_the_layout():
    layer = rnnjax.GRU(4, batch_first=False)
    with pytest.raises(ValueError, match=r"\[T, B, F\] \(batch_first=False\)"):
        layer(layer.init(jax.random.key(0), 3), jnp.ones((5, 3)))


def test_zero_length_sequences_are_valid():
    outputs, (h, c) = LAYER(PARAMS, X, jnp.array([0, 0]))
    assert float(jnp.abs(outputs).max()) == 0.0
    assert float(jnp.abs(h).max()) == 0.0 and float(jnp.abs(c).max()) == 0.0


def test_lengths_under_jit_are_not_value_checked_but_work():
    outputs, _ = jax.jit(LAYER)(PARAMS, X, jnp.array([5, 2]))
    assert float(jnp.abs(outputs[1, 2:]).max()) == 0.0
