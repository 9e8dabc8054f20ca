"""An independent float64 NumPy reference: the textbook equations, one step at a time, no JAX.

Parameters are read in rnnjax's ``CellParams`` layout (x @ W) and converted to float64.
"""

import numpy as np


def _f64(params):
    return {
        k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()
    }


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _split(z, n):
    return np.split(z, n, axis=-1)


def _bias(p, name, n):
    return np.zeros(n) if p[name] is None else p[name]


def elman_step(p, h, x, nonlinearity):
    g = p["w_hh"].shape[1]
    z = x @ p["w_ih"] + _bias(p, "b_ih", g) + h @ p["w_hh"] + _bias(p, "b_hh", g)
    return np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0.0)


def lstm_step(p, state, x):
    h, c = state
    g = p["w_hh"].shape[1]
    z = x @ p["w_ih"] + _bias(p, "b_ih", g) + h @ p["w_hh"] + _bias(p, "b_hh", g)
    i, f, gg, o = _split(z, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(gg)
    h = _sigmoid(o) * np.tanh(c)
    if p["w_hr"] is not None:
        h = h @ p["w_hr"]
    return h, c


def gru_step(p, h, x, reset_after):
    g = p["w_hh"].shape[1]
    hid = g // 3
    xi = _split(x @ p["w_ih"] + _bias(p, "b_ih", g), 3)
    b_hh = _split(_bias(p, "b_hh", g), 3)
    w_hr, w_hz, w_hn = _split(p["w_hh"], 3)
    r = _sigmoid(xi[0] + h @ w_hr + b_hh[0])
    z = _sigmoid(xi[1] + h @ w_hz + b_hh[1])
    if reset_after:
        n = np.tanh(xi[2] + r * (h @ w_hn + b_hh[2]))
    else:
        n = np.tanh(xi[2] + (r * h) @ w_hn + b_hh[2])
    assert n.shape[-1] == hid
    return (1.0 - z) * n + z * h


def cell_step(cell, params, state, x):
    """One step of ``cell`` (an rnnjax built-in cell, used for its configuration only)."""
    p = _f64(params)
    x = np.asarray(x, np.float64)
    name = type(cell).__name__
    if name == "ElmanCell":
        h = elman_step(p, state, x, cell.nonlinearity)
        return h, h
    if name == "GRUCell":
        h = gru_step(p, state, x, cell.reset_after)
        return h, h
    if name == "LSTMCell":
        h, c = lstm_step(p, state, x)
        return (h, c), h
    raise NotImplementedError(name)


def zero_state(cell):
    if type(cell).__name__ == "LSTMCell":
        return np.zeros(cell.output_size), np.zeros(cell.hidden_size)
    return np.zeros(cell.hidden_size)


def run_sequence(cell, params, xs, state=None, reverse=False):
    """Runs the cell over ALL of ``xs [T, I]``; returns ``(outputs [T, O], final_state)``."""
    state = zero_state(cell) if state is None else state
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    outputs = [None] * len(xs)
    for t in order:
        state, outputs[t] = cell_step(cell, params, state, xs[t])
    out = np.stack(outputs) if len(xs) else np.zeros((0, cell.output_size))
    return out, state


def run_layer(layer, params, x, lengths, initial_state=None):
    """A stacked, maybe bidirectional layer, on each example's UNPADDED sequence on its own.

    Args:
      x: ``[B, T, I]`` batch-first inputs.
      lengths: ``[B]`` valid lengths.
      initial_state: as the layer's state (leaves ``[L*D, B, ...]``) or None.

    Returns:
      ``(outputs [B, T, D*O] zero-padded, list over L*D of per-example final states)``.
    """
    cell = layer.cell
    d = layer.num_directions
    batch, steps = x.shape[:2]
    outputs = np.zeros((batch, steps, layer.output_size))
    finals = [[None] * batch for _ in range(layer.num_layers * d)]
    for b in range(batch):
        seq = np.asarray(x[b, : lengths[b]], np.float64)
        for layer_index in range(layer.num_layers):
            outs = []
            for direction in range(d):
                i = layer_index * d + direction
                s0 = None
                if initial_state is not None:
                    leaves = [np.asarray(s[i, b], np.float64) for s in _leaves(initial_state)]
                    s0 = tuple(leaves) if len(leaves) == 2 else leaves[0]
                out, finals[i][b] = run_sequence(cell, params[i], seq, s0, reverse=direction == 1)
                outs.append(out)
            seq = np.concatenate(outs, axis=-1)
        outputs[b, : lengths[b]] = seq
    return outputs, finals


def _leaves(state):
    return list(state) if isinstance(state, tuple) else [state]
