"""rnnjax: pure-function RNN, LSTM and GRU cells and layers for JAX.

Shape vocabulary (see ``rnnjax._shapes``): B batch, T time, I input, H hidden, G gates,
P projection, D directions, L layers.
"""

from rnnjax import cells, diagnostics, interop
from rnnjax.cells import LSTMState
from rnnjax.layers import GRU, LSTM, RNN, Recurrent, Stack, with_compute_dtype
from rnnjax.recurrence import Backend, unroll

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "Backend",
    "LSTM",
    "LSTMState",
    "RNN",
    "Recurrent",
    "Stack",
    "cells",
    "diagnostics",
    "interop",
    "unroll",
    "with_compute_dtype",
]
