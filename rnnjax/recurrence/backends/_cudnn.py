"""The cuDNN backend: one LSTM layer (both directions) as one cuDNN call.

``jax.experimental.rnn.lstm`` wraps cuDNN's fused LSTM forward and backward kernels, the ones
``torch.nn.LSTM`` runs on a GPU. It takes the weights of every direction as one flat vector in
cuDNN's layout (per direction ``W_ih [4H, I]`` then ``W_hh [4H, H]``, then per direction
``b_ih [4H]``, ``b_hh [4H]``; gates i, f, g, o as in PyTorch). ``lstm_layer`` packs rnnjax's
``CellParams`` (``x @ W`` layout) into that vector on every call: the transposes are small next to
the recurrence, and gradients flow back through them to the usual parameter pytree, so nothing
else in rnnjax sees the cuDNN layout.

Values and gradients match the scan path (tests compare them on a GPU) for full-length batches.
Variable lengths are refused: with ``seq_lengths`` below T, ``jax.experimental.rnn.lstm`` (jax
0.11.2, cuDNN 9.19, H200) returned the right outputs and final states when called alone but
different ones inside ``jax.grad`` (2-3% off in the loss), so packed batches run on the fused
backend, which is faster on that GPU anyway (``benchmarks/RESULTS.md``).

Shapes: T time, B batch, I input, H hidden, D directions.
"""

from collections.abc import Callable, Sequence

import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import CellParams, LSTMCell, LSTMState
from rnnjax.recurrence.backends._per_device import per_device


def supports(cell) -> bool:
    """Whether cuDNN computes exactly what ``cell`` does: the built-in LSTM, no projection."""
    return isinstance(cell, LSTMCell) and cell.one_state_matmul


def pack_weights(params: Sequence[CellParams]) -> Float[Array, " N"]:
    """The directions' parameters as cuDNN's flat weight vector (missing biases are zeros)."""
    gates = params[0].w_hh.shape[1]
    matrices = [m.T.reshape(-1) for p in params for m in (p.w_ih, p.w_hh)]
    zeros = jnp.zeros((gates,), params[0].w_hh.dtype)
    biases = [zeros if b is None else b for p in params for b in (p.b_ih, p.b_hh)]
    return jnp.concatenate(matrices + biases)


def _cudnn_kernel(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, bidirectional):
    from jax.experimental import rnn  # only here: importing rnnjax must not need a GPU build

    return rnn.lstm(
        x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, 1, 0.0, bidirectional
    )


def lstm_layer(
    params: Sequence[CellParams],
    x: Float[Array, "T B I"],
    state0: LSTMState,
    *,
    kernel: Callable | None = None,
):
    """Runs one (bi)directional LSTM layer over full-length sequences through cuDNN.

    Args:
      params: the ``D`` directions' ``CellParams`` (forward first), as in ``rnnjax.LSTM``.
      x: time-major inputs.
      state0: ``LSTMState`` with leaves ``[D, B, H]``.
      kernel: replaces ``jax.experimental.rnn.lstm`` (same positional arguments, with
        ``num_layers`` and ``dropout`` left out); tests pass a pure-JAX reference on CPU.

    Returns:
      ``(outputs [T, B, D*H], [LSTMState(h [B, H], c [B, H]) for each direction])``.
    """
    kernel = kernel or _cudnn_kernel
    num_steps, _, input_size = x.shape

    def rows(params, x, state0):  # the batch of one device under a data-parallel mesh
        outputs, h_n, c_n = kernel(
            jnp.swapaxes(x, 0, 1),
            state0.hidden,
            state0.cell,
            pack_weights(params),
            jnp.full((x.shape[1],), num_steps, jnp.int32),
            input_size,
            params[0].w_hh.shape[0],
            len(params) == 2,
        )
        return jnp.swapaxes(outputs, 0, 1), [LSTMState(h_n[d], c_n[d]) for d in range(len(params))]

    # XLA does not partition the cuDNN call: each device runs its own rows (``_per_device``).
    return per_device(rows, params, (x, state0), batch_axes=(1, 1), out_axes=(1, 0))


def reference_kernel(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, bidirectional):
    """``jax.experimental.rnn.lstm_ref`` behind the cuDNN kernel's signature (runs anywhere)."""
    from jax.experimental import rnn

    unpacked = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1, bidirectional)
    return rnn.lstm_ref(
        x, h_0, c_0, *unpacked, seq_lengths, input_size, hidden_size, 1, 0.0, bidirectional
    )
