"""PyTorch's state_dict layout of nn.RNN/LSTM/GRU, in NumPy only (this module never imports torch).

PyTorch names the parameters of layer k and direction d ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``weight_hr_l{k}`` (LSTM projection), with a ``_reverse``
suffix for d = 1, and stores the transposes of rnnjax's ``CellParams`` (``W`` for ``W @ x``).
Gates are stacked in the same order in both libraries, so a transpose is the whole conversion.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from rnnjax.cells import CellParams

# kind -> (layer class, number of gates G)
KINDS = {"rnn": (rnnjax.RNN, 1), "lstm": (rnnjax.LSTM, 4), "gru": (rnnjax.GRU, 3)}
# CellParams field -> PyTorch name stem, in PyTorch's state_dict order.
_STEMS = {
    "w_ih": "weight_ih",
    "w_hh": "weight_hh",
    "b_ih": "bias_ih",
    "b_hh": "bias_hh",
    "w_hr": "weight_hr",
}


def kind_of(layer) -> str:
    """Returns ``"rnn"``, ``"lstm"`` or ``"gru"`` for an ``rnnjax.RNN/LSTM/GRU``."""
    for kind, (cls, _) in KINDS.items():
        if isinstance(layer, cls):
            return kind
    raise ValueError(
        f"layer must be an rnnjax.RNN, rnnjax.LSTM or rnnjax.GRU, got {type(layer).__name__}"
    )


def expected_shapes(layer, input_size: int) -> dict:
    """Maps ``(index, field)`` to ``(torch key, torch shape)`` for every parameter of ``layer``.

    ``index`` is ``layer * D + direction``, as in the params tuple; the order is PyTorch's.
    """
    gh = KINDS[kind_of(layer)][1] * layer.hidden_size
    proj = getattr(layer, "proj_size", 0)
    rows = proj or layer.hidden_size
    table = {}
    for index in range(layer.num_layers * layer.num_directions):
        k, direction = divmod(index, layer.num_directions)
        suffix = f"_l{k}" + ("_reverse" if direction else "")
        shapes = {
            "w_ih": (gh, input_size if k == 0 else layer.output_size),
            "w_hh": (gh, rows),
            "b_ih": (gh,) if layer.bias else None,
            "b_hh": (gh,) if layer.bias else None,
            "w_hr": (proj, layer.hidden_size) if proj else None,
        }
        for field, shape in shapes.items():
            if shape is not None:
                table[index, field] = (_STEMS[field] + suffix, shape)
    return table


def _check_keys(arrays: dict, table: dict, argument: str) -> None:
    """Raises a ValueError naming every missing, unexpected or misshaped key of ``arrays``."""
    want = {key: shape for key, shape in table.values()}
    missing = [key for key in want if key not in arrays]
    extra = sorted(key for key in arrays if key not in want)
    if missing or extra:
        raise ValueError(
            f"{argument} does not match the configuration: missing keys {missing}, unexpected keys "
            f"{extra} (expected keys {list(want)})"
        )
    for key, shape in want.items():
        if tuple(np.shape(arrays[key])) != shape:
            raise ValueError(
                f"{argument}[{key!r}] must have shape {shape} (PyTorch layout), "
                f"got {tuple(np.shape(arrays[key]))}"
            )


def arrays_to_params(layer, input_size: int, arrays: dict, argument: str = "state_dict") -> tuple:
    """Converts PyTorch-named NumPy arrays to rnnjax params (a tuple of ``CellParams``).

    Args:
      layer: the rnnjax layer the arrays belong to.
      input_size: I, the input features of the first layer.
      arrays: torch key -> NumPy array in PyTorch's layout; must hold exactly the layer's keys.
      argument: name of the mapping in error messages.

    Returns:
      A tuple of ``num_layers * D`` ``CellParams`` of JAX arrays, transposed to rnnjax's layout.
    """
    table = expected_shapes(layer, input_size)
    _check_keys(arrays, table, argument)
    if not jax.config.jax_enable_x64 and any(
        np.asarray(a).dtype == np.float64 for a in arrays.values()
    ):
        warnings.warn(
            f"{argument} holds float64 weights but jax_enable_x64 is off: they become float32",
            stacklevel=3,
        )
    fields = [{} for _ in range(layer.num_layers * layer.num_directions)]
    for (index, field), (key, _) in table.items():
        fields[index][field] = jnp.asarray(np.array(np.asarray(arrays[key]).T, order="C"))
    return tuple(CellParams(**f) for f in fields)


def params_to_arrays(layer, params) -> dict:
    """Converts rnnjax params to PyTorch-named NumPy arrays in PyTorch's layout and key order.

    Raises a ValueError naming ``params[i].field`` when ``params`` does not fit ``layer``.
    """
    count = layer.num_layers * layer.num_directions
    if not isinstance(params, tuple | list) or len(params) != count:
        got = len(params) if isinstance(params, tuple | list) else type(params).__name__
        raise ValueError(f"params must be a tuple of {count} CellParams for this layer, got {got}")
    for index, p in enumerate(params):
        if not isinstance(p, CellParams):
            raise ValueError(f"params[{index}] must be a CellParams, got {type(p).__name__}")
    table = expected_shapes(layer, np.shape(params[0].w_ih)[0])
    for index, p in enumerate(params):
        for field, value in p._asdict().items():
            want = table.get((index, field))
            got = None if value is None else tuple(np.shape(value))
            if got != (None if want is None else want[1][::-1]):
                expected = "None" if want is None else f"shape {want[1][::-1]}"
                raise ValueError(f"params[{index}].{field} must be {expected}, got {got}")
    return {key: np.asarray(getattr(params[i], f)).T for (i, f), (key, _) in table.items()}


def infer_layer(arrays: dict, kind: str, **config):
    """Reads an rnnjax layer's configuration off the keys and shapes of a PyTorch state_dict.

    Args:
      arrays: torch key -> array in PyTorch's layout.
      kind: ``"rnn"``, ``"lstm"`` or ``"gru"`` (checked by the caller).
      **config: what the keys cannot tell (``batch_first``, ``dropout``, ``nonlinearity`` for
        ``"rnn"``), passed to the layer.

    Returns:
      ``(layer, input_size)``; the keys and shapes are checked by ``arrays_to_params``.
    """
    cls, gates = KINDS[kind]
    w = arrays.get("weight_ih_l0")
    if w is None:
        raise ValueError(
            "state_dict has no 'weight_ih_l0': not the state_dict of a torch.nn.RNN/LSTM/GRU "
            f"(use prefix= for a submodule); got keys {sorted(arrays)[:10]}"
        )
    if np.ndim(w) != 2 or np.shape(w)[0] % gates or np.shape(w)[0] == 0:
        raise ValueError(
            f"state_dict['weight_ih_l0'] must have shape [{gates}*hidden_size, input_size] for "
            f"kind={kind!r}, got {tuple(np.shape(w))}"
        )
    num_layers = 1
    while f"weight_ih_l{num_layers}" in arrays:
        num_layers += 1
    if kind == "lstm" and np.ndim(arrays.get("weight_hr_l0")) > 0:
        config["proj_size"] = int(np.shape(arrays["weight_hr_l0"])[0])
    layer = cls(
        np.shape(w)[0] // gates,
        num_layers,
        bidirectional="weight_ih_l0_reverse" in arrays,
        bias="bias_ih_l0" in arrays,
        **config,
    )
    return layer, int(np.shape(w)[1])
