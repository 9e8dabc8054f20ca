"""PyTorch interop: ``torch.nn.RNN/LSTM/GRU`` modules and state_dicts to rnnjax and back.

Numerics match PyTorch (outputs, final states and gradients within float32 rounding), including
packed sequences (``lengths``), ``h_0``, ``proj_size`` and GRU's ``b_hn``::

    layer, params = rnnjax.interop.torch.from_torch(module)
    outputs, state = layer(params, x, lengths, initial_state=h_0)   # as module(x, h_0)
    module = rnnjax.interop.torch.to_torch(layer, params)            # identical state_dict

This module imports torch (an optional dependency: ``pip install rnnjax[torch]``); ``import rnnjax``
does not.
"""

import pickle
from collections.abc import Mapping

try:
    import torch
except ImportError as err:
    raise ImportError(
        "rnnjax.interop.torch needs PyTorch, which is not installed: pip install rnnjax[torch]"
    ) from err

import ml_dtypes
import numpy as np

from rnnjax.interop import _torch_state_dict as _sd

__all__ = ["from_state_dict", "from_torch", "load_state_dict_file", "to_torch"]

_TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def from_torch(module):
    """Converts a ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` to rnnjax.

    Args:
      module: the module; every configuration is supported (``nonlinearity``, ``num_layers``,
        ``bidirectional``, ``bias``, ``batch_first``, ``dropout``, ``proj_size``).

    Returns:
      ``(layer, params)``: the ``rnnjax.RNN/LSTM/GRU`` with the module's configuration (its
      ``batch_first`` included, whose PyTorch default is False) and a tuple of ``CellParams``, so
      that ``layer(params, x, lengths, initial_state=h_0)`` computes what the module computes on
      ``x`` (packed with ``lengths``), returning ``(output, h_n)`` or ``(output, (h_n, c_n))``.
      The parameters keep the module's dtype (float64 needs ``jax_enable_x64``). The layer
      applies the module's ``dropout`` only when called with a ``dropout_key``, as the module
      does only in training mode.
    """
    kind = next((k for k, cls in _TORCH_CLASSES.items() if isinstance(module, cls)), None)
    if kind is None:
        hint = ""
        if isinstance(module, torch.nn.RNNCellBase):
            hint = " (a cell is one step: build the rnnjax.cells cell and copy its weights)"
        raise ValueError(
            "module must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
            f"got {type(module).__name__}{hint}"
        )
    config = {
        "num_layers": module.num_layers,
        "bidirectional": module.bidirectional,
        "dropout": float(module.dropout),
        "bias": module.bias,
        "batch_first": module.batch_first,
    }
    if kind == "rnn":
        config["nonlinearity"] = module.nonlinearity
    if kind == "lstm":
        config["proj_size"] = module.proj_size
    layer = _sd.KINDS[kind][0](module.hidden_size, **config)
    arrays = {key: _to_numpy(value) for key, value in module.state_dict().items()}
    return layer, _sd.arrays_to_params(layer, module.input_size, arrays, "module.state_dict()")


def to_torch(layer, params):
    """Builds the PyTorch module of an rnnjax layer and its parameters.

    Args:
      layer: an ``rnnjax.RNN``, ``rnnjax.LSTM`` or ``rnnjax.GRU`` (GRU with ``reset_after=True``,
        the only form PyTorch has). Initialisers, ``forget_bias`` and the ``unroll`` options do
        not affect the numbers and are not carried over.
      params: the layer's parameters, a tuple of ``CellParams``.

    Returns:
      A ``torch.nn.RNN/LSTM/GRU`` on the CPU, in the parameters' dtype, whose ``state_dict`` holds
      exactly ``params`` (transposed) and whose configuration is the layer's.
    """
    kind = _sd.kind_of(layer)
    if kind == "gru" and not layer.reset_after:
        raise ValueError(
            "layer.reset_after must be True to export to torch.nn.GRU (PyTorch applies the reset "
            "gate after the matmul, with b_hn inside it), got reset_after=False"
        )
    tensors = {key: _to_tensor(a) for key, a in _sd.params_to_arrays(layer, params).items()}
    config = {
        "num_layers": layer.num_layers,
        "bias": layer.bias,
        "batch_first": layer.batch_first,
        "dropout": layer.dropout,
        "bidirectional": layer.bidirectional,
        "dtype": tensors["weight_ih_l0"].dtype,
    }
    if kind == "rnn":
        config["nonlinearity"] = layer.nonlinearity
    if kind == "lstm":
        config["proj_size"] = layer.proj_size
    input_size = tensors["weight_ih_l0"].shape[1]
    module = _TORCH_CLASSES[kind](input_size, layer.hidden_size, **config)
    module.load_state_dict(tensors)  # strict: the keys were produced from the same configuration
    return module


def from_state_dict(
    state_dict,
    *,
    kind: str,
    batch_first: bool = True,
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
    prefix: str = "",
):
    """Converts the state_dict of a ``torch.nn.RNN/LSTM/GRU`` without building the module.

    ``num_layers``, ``bidirectional``, ``bias``, ``hidden_size``, ``proj_size`` and ``input_size``
    are read off the keys and shapes; what a state_dict does not record is passed in.

    Args:
      state_dict: key -> ``torch.Tensor`` or NumPy array, as ``module.state_dict()`` returns.
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      batch_first: layout of the inputs of the returned layer. PyTorch's default is False.
      nonlinearity: ``"tanh"`` or ``"relu"``, for ``kind="rnn"`` only.
      dropout: dropout between layers (applied only when the layer is given a ``dropout_key``).
      prefix: read only the keys that start with it, stripped of it, e.g. ``"encoder.lstm."`` to
        take one module out of a whole model's state_dict; other keys are then ignored.

    Returns:
      ``(layer, params)`` as ``from_torch``. Raises a ValueError naming the keys when the
      state_dict has missing, unexpected or misshaped entries.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    if kind not in _sd.KINDS:
        raise ValueError(f"kind must be one of {tuple(_sd.KINDS)}, got {kind!r}")
    arrays = {
        key[len(prefix) :]: _to_numpy(value)
        for key, value in state_dict.items()
        if isinstance(key, str) and key.startswith(prefix)
    }
    if prefix and not arrays:
        raise ValueError(
            f"no key of state_dict starts with prefix={prefix!r}; "
            f"got keys {sorted(state_dict)[:10]}"
        )
    config = {"batch_first": batch_first, "dropout": dropout}
    if kind == "rnn":
        config["nonlinearity"] = nonlinearity
    elif nonlinearity != "tanh":
        raise ValueError(
            f"nonlinearity applies to kind='rnn' only, got {nonlinearity!r} for kind={kind!r}"
        )
    layer, input_size = _sd.infer_layer(arrays, kind, **config)
    return layer, _sd.arrays_to_params(layer, input_size, arrays)


def load_state_dict_file(path, *, kind: str, **kwargs):
    """Loads a file written by ``torch.save(module.state_dict(), path)``, safely.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``, which
    refuses arbitrary pickled objects (it never runs code from the file).

    Args:
      path: the file.
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      **kwargs: ``batch_first``, ``nonlinearity``, ``dropout``, ``prefix`` of ``from_state_dict``.

    Returns:
      ``(layer, params)`` as ``from_state_dict``.
    """
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds more than tensors (torch.load(weights_only=True) refused it); save the "
            "weights with torch.save(module.state_dict(), path)"
        ) from err
    return from_state_dict(state_dict, kind=kind, **kwargs)


def _to_numpy(value) -> np.ndarray:
    """A torch tensor (any device, bfloat16 included) or array-like as a NumPy array."""
    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:  # NumPy has no bfloat16; ml_dtypes (a JAX dependency) has
        return value.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return value.numpy()


def _to_tensor(array) -> torch.Tensor:
    """A NumPy array (bfloat16 included) as a torch tensor that owns a copy of the data."""
    array = np.array(array, order="C")  # a writable copy: torch.from_numpy shares memory
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
