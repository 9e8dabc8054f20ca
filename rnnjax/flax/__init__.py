"""rnnjax layers as Flax modules: ``flax.linen`` here, ``flax.nnx`` in ``rnnjax.flax.nnx``.

The modules call the pure layers (``rnnjax.LSTM`` etc.), so their numbers, backends and options
are the layers'; what they add is Flax's bookkeeping: parameters in the ``params`` collection (one
per leaf of the pure pytree, ``{"l0": {"w_ih", "w_hh", "b_ih", "b_hh"}, "l0_reverse": ...}``),
dropout through the ``dropout`` RNG stream and ``deterministic``, and ``nn.with_partitioning``
metadata. ``to_flax_params`` / ``from_flax_params`` convert between the pure pytree and Flax's::

    import rnnjax.flax as rf
    layer, params = rnnjax.interop.torch.from_torch(torch_lstm)  # or layer.init(key, I)
    model, variables = rf.Recurrent(layer), {"params": rf.to_flax_params(layer, params)}
    outputs = model.apply(variables, x)                          # as torch_lstm(x)[0]

``import rnnjax`` does not import this package (nor Flax).
"""

from rnnjax.flax import nnx
from rnnjax.flax._linen import GRU, LSTM, RNN, Recurrent
from rnnjax.flax._params import from_flax_params, to_flax_params

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "from_flax_params", "nnx", "to_flax_params"]
