"""Torch-like layers: ``RNN``, ``LSTM``, ``GRU`` and ``Recurrent`` for any cell."""

from rnnjax.layers._layers import GRU, LSTM, RNN, Recurrent, Stack

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "Stack"]
