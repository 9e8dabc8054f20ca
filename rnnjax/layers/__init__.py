"""Torch-like layers: ``RNN``, ``LSTM``, ``GRU`` and ``Recurrent`` for any cell."""

from rnnjax.layers._layers import GRU, LSTM, RNN, Recurrent, Stack
from rnnjax.layers._precision import with_compute_dtype

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "Stack", "with_compute_dtype"]
