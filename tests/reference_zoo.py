"""Float64 NumPy references of the zoo cells: the papers' equations, one step at a time, no JAX."""

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _ln(v, eps=1e-5):
    """Normalisation of one gate's H units."""
    return (v - v.mean()) / np.sqrt(v.var() + eps)


def _ln_gates(v, num_gates, scale):
    blocks = np.split(v, num_gates)
    return np.concatenate([_ln(b) for b in blocks]) * scale


def layer_norm_lstm_step(p, state, x):
    h, c = state
    z = _ln_gates(x @ p["w_ih"], 4, p["scale_ih"]) + _ln_gates(h @ p["w_hh"], 4, p["scale_hh"])
    i, f, g, o = np.split(z + p["b_ih"] + p["b_hh"], 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(_ln(c) * p["scale_cell"] + p["shift_cell"])
    return (h, c), h


def layer_norm_gru_step(p, h, x):
    xi = np.split(_ln_gates(x @ p["w_ih"], 3, p["scale_ih"]) + p["b_ih"], 3)
    hh = np.split(_ln_gates(h @ p["w_hh"], 3, p["scale_hh"]) + p["b_hh"], 3)
    r = _sigmoid(xi[0] + hh[0])
    z = _sigmoid(xi[1] + hh[1])
    n = np.tanh(xi[2] + r * hh[2])
    h = (1.0 - z) * n + z * h
    return h, h


def peephole_step(p, state, x):
    h, c = state
    i, f, g, o = np.split(x @ p["w_ih"] + p["b"] + h @ p["w_hh"], 4)
    p_i, p_f, p_o = p["w_peep"]
    c_new = _sigmoid(f + p_f * c) * c + _sigmoid(i + p_i * c) * np.tanh(g)
    h = _sigmoid(o + p_o * c_new) * np.tanh(c_new)
    return (h, c_new), h


def indrnn_step(p, h, x, nonlinearity, bound):
    u = p["w_hh"] if bound is None else np.minimum(np.maximum(p["w_hh"], -bound), bound)
    z = x @ p["w_ih"] + p["b"] + u * h
    h = np.maximum(z, 0.0) if nonlinearity == "relu" else np.tanh(z)
    return h, h


def mgu_step(p, h, x):
    hid = h.shape[0]
    b = np.zeros(2 * hid) if p.get("b_ih") is None else p["b_ih"] + p["b_hh"]
    xz = x @ p["w_ih"] + b
    f = _sigmoid(xz[:hid] + h @ p["w_hh"][:, :hid])
    n = np.tanh(xz[hid:] + (f * h) @ p["w_hh"][:, hid:])
    h = (1.0 - f) * h + f * n
    return h, h


def cell_step(cell, params, state, x):
    """One step of a zoo ``cell`` (used for its configuration only)."""
    p = _f64_or_none(params)
    x = np.asarray(x, np.float64)
    name = type(cell).__name__
    if name == "LayerNormLSTMCell":
        return layer_norm_lstm_step(p, state, x)
    if name == "LayerNormGRUCell":
        return layer_norm_gru_step(p, state, x)
    if name == "PeepholeLSTMCell":
        return peephole_step(p, state, x)
    if name == "IndRNNCell":
        return indrnn_step(p, state, x, cell.nonlinearity, cell.bound)
    if name == "MGUCell":
        return mgu_step(p, state, x)
    raise NotImplementedError(name)


def _f64_or_none(params):
    return {
        k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()
    }


def run_sequence(cell, params, xs, state=None, reverse=False):
    """Runs the cell over ALL of ``xs [T, I]``; returns ``(outputs [T, O], final_state)``."""
    if state is None:
        zero = np.zeros(cell.hidden_size)
        state = (zero, zero) if "LSTM" in type(cell).__name__ else zero
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    outputs = [None] * len(xs)
    for t in order:
        state, outputs[t] = cell_step(cell, params, state, xs[t])
    out = np.stack(outputs) if len(xs) else np.zeros((0, cell.output_size))
    return out, state
