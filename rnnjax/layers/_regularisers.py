"""Regularisers of recurrent layers: variational dropout, zoneout and DropConnect.

- Variational dropout (Gal & Ghahramani 2016): ONE mask per sequence, the same at every step, on
  a layer's inputs (``input_dropout``), on its outputs (``output_dropout``) and on the state that
  enters the recurrent matmul (``recurrent_dropout``: ``(mask * h_{t-1}) @ W_hh``, the carried
  state itself is not dropped).
- Zoneout (Krueger et al. 2017): each unit of the state keeps its previous value with probability
  ``zoneout`` at every step (a new mask per step), ``s_t = m * s_{t-1} + (1 - m) * s~_t``; without
  a key the step computes the expectation ``z * s_{t-1} + (1 - z) * s~_t``.
- DropConnect on the recurrent weights (Merity et al. 2017, AWD-LSTM): one mask on ``w_hh`` per
  call (per batch), shared by all examples and steps.

Dropout masks are scaled by ``1 / (1 - rate)`` so that evaluation (no key) is the identity.
Input/output dropout and DropConnect act outside the time loop and keep the fast backends;
recurrent dropout (with a key) and zoneout (always) act inside the step, so the layer then runs
its own ``lax.scan`` (``scan_regularised``).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Bool

from rnnjax._shapes import Array, Float, Int
from rnnjax.cells import Cell
from rnnjax.recurrence import _masks
from rnnjax.recurrence._unroll import valid_and_zeroed
from rnnjax.recurrence.backends._fused_vjp import select_valid

_KEY_TAG = 0x2E6B  # separates these keys from those of the between-layer ``dropout``


class Rates(NamedTuple):
    """A layer's regulariser rates (0 for off); ``zoneout`` is one rate per state leaf."""

    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    output_dropout: float = 0.0
    zoneout: tuple[float, ...] = ()
    weight_dropout: float = 0.0

    def in_loop(self, training: bool) -> bool:
        """Whether the step itself changes (then the layer runs ``scan_regularised``)."""
        return any(self.zoneout) or (training and self.recurrent_dropout > 0)


def check_rates(cell: Cell, *, zoneout, **dropouts) -> Rates:
    """Validates a layer's options against its cell; returns them as ``Rates``.

    Args:
      cell: the layer's cell.
      zoneout: a rate, or one rate per leaf of the cell's state (LSTM: ``(hidden, cell)``).
      **dropouts: ``input_dropout``, ``recurrent_dropout``, ``output_dropout``,
        ``weight_dropout``: rates in [0, 1).

    Returns:
      The ``Rates``; raises ``ValueError`` naming the argument otherwise.
    """
    for name, rate in dropouts.items():
        _check_rate(rate, name)
    leaves = jax.tree.leaves(cell.initial_state())
    rates = tuple(zoneout) if isinstance(zoneout, tuple | list) else (zoneout,) * len(leaves)
    for rate in rates:
        _check_rate(rate, "zoneout")
    if any(rates) or (zoneout and not isinstance(zoneout, tuple | list)):
        if not leaves:
            raise ValueError(f"zoneout needs a cell with a state to zone out, got {cell!r}")
        if len(rates) != len(leaves):
            raise ValueError(
                f"zoneout must be one rate or {len(leaves)} (one per state leaf of "
                f"{type(cell).__name__}), got {zoneout!r}"
            )
        if _zoned_output(cell, cell.initial_state()) is None:
            raise ValueError(
                "zoneout needs a cell whose output is its state or its state's .hidden, "
                f"got {cell!r}"
            )
    if dropouts.get("recurrent_dropout", 0.0) > 0 and not cell.one_state_matmul:
        raise ValueError(
            "recurrent_dropout needs a cell whose step is pointwise_step(..., "
            "recurrent_input(state) @ recurrent_weight(params)) with no other matmul "
            "(Cell.one_state_matmul: LSTM without proj_size, reset-after GRU, Elman, LayerNorm "
            f"LSTM/GRU, peephole LSTM), got {cell!r}"
        )
    return Rates(zoneout=rates if any(rates) else (), **dropouts)


def _check_rate(rate, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1), got {rate!r}")


def _zoned_output(cell: Cell, state):
    """The output of a step whose state is ``state`` (zoneout changes it), or None if unknown."""
    if isinstance(state, jax.Array) and state.shape == (cell.output_size,):
        return state
    hidden = getattr(state, "hidden", None)
    if hidden is not None and hidden.shape[-1:] == (cell.output_size,):
        return hidden
    return None


class Keys(NamedTuple):
    """The PRNG keys of one direction of one layer."""

    inputs: Array
    outputs: Array
    recurrent: Array
    zoneout: Array
    weights: Array


def keys_for(dropout_key, layer: int, direction: int) -> Keys | None:
    """Keys of ``layer`` and ``direction``; the input/output ones depend on the layer only."""
    if dropout_key is None:
        return None
    base = jax.random.fold_in(jax.random.fold_in(dropout_key, _KEY_TAG), layer)
    inputs, outputs = jax.random.split(base)
    recurrent, zoneout, weights = jax.random.split(jax.random.fold_in(base, 1 + direction), 3)
    return Keys(inputs, outputs, recurrent, zoneout, weights)


def check_layer(layer) -> Rates:
    """A layer's ``Rates`` (``check_rates``); refuses a fast backend named with in-loop ones."""
    rates = check_rates(
        layer.cell,
        zoneout=layer.zoneout,
        input_dropout=layer.input_dropout,
        recurrent_dropout=layer.recurrent_dropout,
        output_dropout=layer.output_dropout,
        weight_dropout=layer.weight_dropout,
    )
    backend = getattr(layer.backend, "value", layer.backend)
    if rates.in_loop(training=True) and backend not in ("auto", "scan"):
        raise ValueError(
            "recurrent_dropout and zoneout act inside the step, which only the scan runs: "
            f"use backend='auto' or 'scan', got backend={backend!r}"
        )
    return rates


def drop_inputs(keys: Keys | None, rates: Rates, x: Float[Array, "T B F"]):
    """The layer's input with variational dropout (``x`` itself without keys)."""
    return x if keys is None else variational_dropout(keys.inputs, rates.input_dropout, x)


def drop_outputs(keys: Keys | None, rates: Rates, x: Float[Array, "T B F"]):
    """The layer's output with variational dropout (``x`` itself without keys)."""
    return x if keys is None else variational_dropout(keys.outputs, rates.output_dropout, x)


def drop_weights(keys: Keys | None, rates: Rates, params):
    """One direction's parameters with DropConnect on ``w_hh`` (unchanged without keys)."""
    return params if keys is None else drop_connect(keys.weights, rates.weight_dropout, params)


def variational_dropout(key, rate: float, x: Float[Array, "T B F"]) -> Float[Array, "T B F"]:
    """Dropout with one ``[B, F]`` mask for all T steps of a time-major ``x``."""
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape[1:])
    return jnp.where(keep[None], x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_connect(key, rate: float, params):
    """``params`` with dropout on ``params.w_hh`` (one mask for the whole batch and all steps)."""
    if rate == 0.0:
        return params
    w_hh = getattr(params, "w_hh", None)
    if w_hh is None or not hasattr(params, "_replace"):
        raise ValueError(
            "weight_dropout needs cell parameters with a w_hh field (a NamedTuple), got "
            f"{type(params).__name__}"
        )
    keep = jax.random.bernoulli(key, 1.0 - rate, w_hh.shape)
    return params._replace(w_hh=jnp.where(keep, w_hh / (1.0 - rate), 0.0).astype(w_hh.dtype))


def scan_regularised(
    cell: Cell,
    params,
    xs: Float[Array, "T B I"],
    initial_state,
    lengths: Int[Array, " B"] | None = None,
    *,
    mask: Bool[Array, "T B"] | None = None,
    resets: Bool[Array, "T B"] | None = None,
    rates: Rates,
    keys: Keys | None,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool = False,
    hoist_inputs: bool = True,
    backend=None,
):
    """``scan_time_major`` on the SCAN backend with recurrent dropout and zoneout in the step.

    Args:
      cell, params, xs, initial_state, lengths, mask, resets, reverse, unroll, remat,
        hoist_inputs: as ``rnnjax.recurrence.scan_time_major``.
      rates: the layer's ``Rates`` (keyword, like ``keys``, so that the call reads as
        ``scan_time_major``'s).
      keys: this direction's ``Keys``, or None for evaluation (no recurrent dropout, zoneout's
        expectation).
      backend: ignored (always the scan); accepted so that the layers call both alike.

    Returns:
      ``(outputs [T, B, O], final_state)`` with leaves ``[B, ...]``.
    """
    num_steps, batch = xs.shape[:2]
    xs, valid = valid_and_zeroed(xs, lengths, mask)
    restarts = None if resets is None else _masks.restarts(resets, reverse)
    inputs = cell.project_inputs(params, xs) if hoist_inputs else xs
    keep_hidden = None
    if keys is not None and rates.recurrent_dropout > 0:
        read = jax.eval_shape(cell.recurrent_input, cell.initial_state(xs.dtype))
        keep = jax.random.bernoulli(
            keys.recurrent, 1.0 - rates.recurrent_dropout, (batch,) + read.shape
        )
        keep_hidden = keep.astype(xs.dtype) / (1.0 - rates.recurrent_dropout)
    zone_keys = None
    if keys is not None and rates.zoneout:
        zone_keys = jax.random.split(keys.zoneout, num_steps)

    def one_example(state, x, keep_h):
        if not hoist_inputs:
            x = cell.project_inputs(params, x)
        if keep_h is None:
            return cell.recurrent_step(params, state, x)
        hw = (cell.recurrent_input(state) * keep_h) @ cell.recurrent_weight(params)
        return cell.pointwise_step(params, state, x, hw)

    batched = jax.vmap(one_example, in_axes=(0, 0, None if keep_hidden is None else 0))

    def one_step(state, x, zone_key):
        new_state, output = batched(state, x, keep_hidden)
        if rates.zoneout:  # masks drawn for the whole batch: [B, ...] per state leaf
            new_state = _zone_out(rates.zoneout, zone_key, state, new_state)
            output = jax.vmap(lambda s: _zoned_output(cell, s))(new_state)
        return new_state, output

    if remat:
        one_step = jax.checkpoint(one_step)

    def step(state, scanned):
        x, v, r, zone_key = scanned
        if r is not None:
            state = select_valid(r, initial_state, state)
        new_state, output = one_step(state, x, zone_key)
        if v is None:
            return new_state, output
        return select_valid(v, new_state, state), select_valid(v, output, jnp.zeros_like(output))

    final_state, outputs = jax.lax.scan(
        step, initial_state, (inputs, valid, restarts, zone_keys), reverse=reverse, unroll=unroll
    )
    return outputs, final_state


def _zone_out(rates: tuple[float, ...], key, old, new):
    """Each leaf keeps its old units with probability ``rate`` (key) or by that weight (None)."""
    old_leaves, structure = jax.tree.flatten(old)
    new_leaves = jax.tree.leaves(new)
    keys = [None] * len(rates) if key is None else jax.random.split(key, len(rates))
    zoned = []
    for rate, k, o, n in zip(rates, keys, old_leaves, new_leaves, strict=True):
        if rate == 0.0:
            zoned.append(n)
        elif k is None:
            zoned.append(rate * o + (1.0 - rate) * n)
        else:
            zoned.append(jnp.where(jax.random.bernoulli(k, rate, n.shape), o, n))
    return jax.tree.unflatten(structure, zoned)
