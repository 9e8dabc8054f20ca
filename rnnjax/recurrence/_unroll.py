"""Rolling a cell over time with ``jax.lax.scan``: one sequence (``unroll``) or a time-major batch.

``unroll`` is the user-facing function of ONE sequence, batched with ``jax.vmap``. Layers call
``scan_time_major`` instead, which scans ``[T, B, ...]`` directly (no transposes inside the loop)
and can use the fused backend, whose weight gradients are large matmuls over all T*B rows.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Bool

from rnnjax._shapes import Array, Float, Int
from rnnjax.cells import Cell
from rnnjax.recurrence import _masks
from rnnjax.recurrence.backends._associative import associative_recurrence
from rnnjax.recurrence.backends._fused_vjp import fused_recurrence, select_valid
from rnnjax.recurrence.backends._native import native_recurrence
from rnnjax.recurrence.backends._newton import Newton, newton_recurrence
from rnnjax.recurrence.backends._resolve import Backend, _parse, resolve


def unroll(
    cell: Cell,
    params,
    xs: Float[Array, "T I"],
    initial_state=None,
    *,
    length: Int[Array, ""] | int | None = None,
    mask: Bool[Array, " T"] | None = None,
    resets: Bool[Array, " T"] | None = None,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool = False,
    hoist_inputs: bool = True,
    backend: Backend | str = "scan",
):
    """Runs ``cell`` over a sequence ``xs: [T, I]``; batch it with ``jax.vmap``.

    With a ``length`` L, steps at positions >= L leave the state unchanged and output zeros, which
    is what PyTorch computes for a packed sequence; with ``reverse=True`` the steps run
    L-1, ..., 0 and the padding is never seen. The inputs at padded positions are replaced by
    zeros first, so that NaN or inf there changes no output and no gradient (theirs is zero).
    Batching over any number of leading axes::

        run = lambda x, n: rnnjax.unroll(cell, params, x, length=n)
        outputs, states = jax.vmap(run)(xs, lengths)        # xs: [B, T, I], lengths: [B]

    Args:
      cell: the cell to run.
      params: the cell's parameters.
      xs: ``[T, I]`` inputs.
      initial_state: the cell's state for one example; zeros when None.
      length: number of valid steps, a scalar in [0, T]; all T when None.
      mask: ``[T]`` booleans, an alternative to ``length`` (not both): a False step carries the
        state unchanged and outputs zeros (left padding, holes).
      resets: ``[T]`` booleans: the state returns to ``initial_state`` before each marked step
        (documents packed into one sequence, RL episodes). Reversed, each segment runs from
        its last step with ``initial_state``.
      reverse: process time backwards; outputs stay at the positions of their inputs.
      unroll: steps unrolled per loop iteration of the scan.
      remat: recompute each step in the backward pass (``jax.checkpoint``) instead of storing its
        intermediates: less memory on long sequences for about one more forward pass.
      hoist_inputs: compute the input projection for all steps in one matmul before the scan
        (True) or inside each step (False).
      backend: ``"scan"`` (default), ``"fused"`` (hand-written backward pass, see
        ``rnnjax.recurrence.backends._fused_vjp``; fusable cells; masks and resets too) or
        ``"auto"``. Under
        ``jax.vmap`` the fused backward computes one weight gradient per example before summing
        them, so batches are faster through the layers (``rnnjax.LSTM``...), which use it batched.
        ``"associative"`` runs a linear cell (minGRU, minLSTM, LRU) as a parallel prefix scan,
        ``"newton"`` or ``backends.Newton(...)`` any differentiable cell by Newton iterations
        (DEER); see ``rnnjax.recurrence.backends``.

    Returns:
      ``(outputs [T, O], final_state)``; outputs are zero at padded positions and ``final_state``
      is the state after the last valid step (after position 0 when ``reverse``), that of the
      last segment with ``resets``.
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 2:
        raise ValueError(
            f"xs must be one sequence of shape [T, I] (batch with jax.vmap), got shape {xs.shape}"
        )
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(f"xs must have a floating dtype, got {xs.dtype}")
    if initial_state is None:
        initial_state = cell.initial_state(xs.dtype)
    if mask is not None:
        if length is not None:
            raise ValueError("pass length or mask, not both (mask=arange(T) < length is length)")
        mask = _masks.check_flags(mask, "mask", xs.shape[:1], "[T]")
    if resets is not None:
        resets = _masks.check_flags(resets, "resets", xs.shape[:1], "[T]")
    # The batched backends run one sequence as a batch of one.
    if resolve(backend, cell) in (Backend.FUSED, Backend.ASSOCIATIVE, Backend.NEWTON):
        lengths = None if length is None else jnp.reshape(jnp.asarray(length), (1,))
        outputs, final_state = scan_time_major(
            cell,
            params,
            xs[:, None],
            jax.tree.map(lambda s: s[None], initial_state),
            lengths,
            mask=None if mask is None else mask[:, None],
            resets=None if resets is None else resets[:, None],
            reverse=reverse,
            unroll=unroll,
            remat=remat,
            hoist_inputs=hoist_inputs,
            backend=backend,
        )
        return outputs[:, 0], jax.tree.map(lambda s: s[0], final_state)

    valid = mask if length is None else jnp.arange(xs.shape[0]) < length
    if valid is not None:  # before the projection: its weight gradient reads xs
        xs = _zero_padding(xs, valid)
    if hoist_inputs:
        inputs = cell.project_inputs(params, xs)

        def one_step(state, x):
            return cell.recurrent_step(params, state, x)
    else:
        inputs = xs

        def one_step(state, x):
            return cell.step(params, state, x)

    if remat:
        one_step = jax.checkpoint(one_step)

    if valid is None and resets is None:
        final_state, outputs = jax.lax.scan(
            one_step, initial_state, inputs, reverse=reverse, unroll=unroll
        )
        return outputs, final_state

    def masked_step(state, x_valid_restart):
        x, v, r = x_valid_restart
        if r is not None:
            state = jax.tree.map(lambda s0, s: jnp.where(r, s0, s), initial_state, state)
        new_state, output = one_step(state, x)
        if v is None:
            return new_state, output
        new_state = jax.tree.map(lambda new, old: jnp.where(v, new, old), new_state, state)
        return new_state, jnp.where(v, output, jnp.zeros_like(output))

    restarts = None if resets is None else _masks.restarts(resets, reverse)
    final_state, outputs = jax.lax.scan(
        masked_step, initial_state, (inputs, valid, restarts), reverse=reverse, unroll=unroll
    )
    return outputs, final_state


def scan_time_major(
    cell: Cell,
    params,
    xs: Float[Array, "T B I"],
    initial_state,
    lengths: Int[Array, " B"] | None = None,
    *,
    mask: Bool[Array, "T B"] | None = None,
    resets: Bool[Array, "T B"] | None = None,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool = False,
    hoist_inputs: bool = True,
    backend: Backend | str = Backend.AUTO,
):
    """Runs ``cell`` over a time-major batch; the values of ``vmap(unroll)`` over the batch axis.

    Args:
      cell, params: as ``unroll``.
      xs: ``[T, B, I]`` inputs.
      initial_state: the state with a leading batch axis (leaves ``[B, ...]``).
      lengths: optional ``[B]`` valid steps per example; the inputs past them are zeroed before
        any backend sees them (``unroll``'s ``length``).
      mask: optional ``[T, B]`` booleans instead of ``lengths`` (``unroll``'s ``mask``).
      resets: optional ``[T, B]`` booleans (``unroll``'s ``resets``); NATIVE refuses them.
      reverse, unroll, remat, hoist_inputs: as ``unroll``. With the fused backend ``remat``
        recomputes ``h_{t-1} @ W_hh`` in the backward pass as one large matmul instead of storing
        it; the states are kept either way. With NATIVE it keeps the states entering segments of
        about sqrt(T) steps and reruns each segment's forward call in the backward pass.
      backend: a ``Backend`` or its value; AUTO resolves with ``backends.resolve``.
        NATIVE (resolved by the layers) ignores ``unroll`` and ``hoist_inputs``: its kernels
        project the inputs in chunks of steps themselves.

    Returns:
      ``(outputs [T, B, O], final_state)`` with leaves ``[B, ...]``.
    """
    xs, valid = valid_and_zeroed(xs, lengths, mask)
    restarts = None if resets is None else _masks.restarts(resets, reverse)
    if _parse(backend) is Backend.NATIVE:
        if restarts is not None:
            raise ValueError("backend='native' cannot run resets: use backend='scan' or 'fused'")
        return native_recurrence(
            cell, params, xs, initial_state, valid, reverse=reverse, remat=remat
        )
    newton = backend if isinstance(backend, Newton) else Newton()
    backend = resolve(backend, cell)
    if backend is Backend.ASSOCIATIVE:
        return associative_recurrence(
            cell, params, xs, initial_state, valid, restarts, reverse=reverse
        )
    if backend is Backend.NEWTON:
        if restarts is not None:
            raise ValueError("backend='newton' cannot run resets: use backend='scan' or 'fused'")
        return newton_recurrence(
            cell, params, xs, initial_state, valid, config=newton, reverse=reverse
        )
    if backend is Backend.FUSED:
        return fused_recurrence(
            cell,
            params,
            cell.project_inputs(params, xs) if hoist_inputs else xs,
            initial_state,
            valid,
            restarts,
            reverse=reverse,
            unroll=unroll,
            save_hw=not remat,
            hoisted=hoist_inputs,
        )

    if hoist_inputs:
        inputs = cell.project_inputs(params, xs)
        one_step = jax.vmap(lambda s, x: cell.recurrent_step(params, s, x))
    else:
        inputs = xs
        one_step = jax.vmap(lambda s, x: cell.step(params, s, x))
    if remat:
        one_step = jax.checkpoint(one_step)

    def step(state, x_valid_restart):
        x, v, r = x_valid_restart
        if r is not None:
            state = select_valid(r, initial_state, state)
        new_state, output = one_step(state, x)
        if v is None:
            return new_state, output
        return select_valid(v, new_state, state), select_valid(v, output, jnp.zeros_like(output))

    final_state, outputs = jax.lax.scan(
        step, initial_state, (inputs, valid, restarts), reverse=reverse, unroll=unroll
    )
    return outputs, final_state


def native_batch_major(
    cell: Cell,
    params,
    xs: Float[Array, "B T I"],
    initial_state,
    lengths: Int[Array, " B"] | None = None,
    *,
    mask: Bool[Array, "T B"] | None = None,
    reverse: bool = False,
):
    """``scan_time_major`` with ``backend=NATIVE`` on batch-major ``xs: [B, T, I]``: the kernels
    read and write that layout, so a batch-first layer needs no transposes. Returns
    ``(outputs [B, T, O], final_state)``."""
    xs, valid = valid_and_zeroed(xs, lengths, mask, batch_major=True)
    return native_recurrence(
        cell, params, xs, initial_state, valid, reverse=reverse, batch_major=True
    )


def valid_and_zeroed(xs, lengths, mask, batch_major: bool = False):
    """``(xs, valid)``: ``valid [T, B]`` from ``lengths`` or ``mask`` (None where both are), and
    ``xs: [T, B, F]`` (``[B, T, F]`` with ``batch_major``) zeroed where it is False
    (``_zero_padding``)."""
    valid = mask
    if lengths is not None:
        valid = _valid_steps(xs.shape[1 if batch_major else 0], lengths)
    if valid is None:
        return xs, None
    return _zero_padding(xs, valid.T if batch_major else valid), valid


def _zero_padding(xs, valid):
    """``xs: [T, B, F]`` (or ``[T, F]``) with zeros where ``valid: [T, B]`` (or ``[T]``) is False.

    What a batch holds at padded positions (NaN, inf) then reaches neither the outputs nor any
    gradient, on every backend: a padded step's result is discarded, but its derivative is zero
    times its intermediates, and 0 * NaN = NaN would reach the weight gradients (all of them in
    the scan, only dW_ih in the native kernels)."""
    return jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))


def _valid_steps(num_steps: int, lengths) -> Bool[Array, "T B"]:
    """``valid[t, b] = t < lengths[b]``."""
    return jnp.arange(num_steps)[:, None] < jnp.asarray(lengths)[None, :]
