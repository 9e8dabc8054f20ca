"""rnnjax layers as ``flax.nnx`` modules (``nnx.Param`` per leaf, ``nnx.Rngs`` for dropout).

``LSTM(input_size, hidden_size, num_layers, *, rngs, **layer_options)``, ``GRU``, ``RNN``, and
``Recurrent(layer, input_size, *, rngs)`` for any ``rnnjax.Recurrent``;
``Recurrent.from_params(layer, params)`` and ``model.to_rnnjax()`` convert to and from the pure
``(layer, params)``.
"""

from rnnjax.flax._nnx import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]
