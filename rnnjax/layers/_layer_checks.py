"""Validation of what users pass to a layer call; every error names the argument."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.recurrence import _masks


def check_inputs(x, batch_first: bool, input_size: int):
    layout = "[B, T, F]" if batch_first else "[T, B, F]"
    if x.ndim != 3:
        raise ValueError(
            f"x must have shape {layout} (batch_first={batch_first}), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must have a floating dtype, got {x.dtype}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"x must have {input_size} features (the input_size of params), got shape {x.shape}"
        )
    if input_size == 0:
        raise ValueError(f"x must have at least one feature (I > 0), got shape {x.shape}")


def check_lengths(lengths, batch_size: int, num_steps: int):
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths must have shape ({batch_size},), got shape {lengths.shape}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"lengths must have an integer dtype, got {lengths.dtype}")
    if not isinstance(lengths, jax.core.Tracer):  # values of traced lengths are not known yet
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > num_steps):
            raise ValueError(
                f"lengths must lie in [0, T={num_steps}], got values in "
                f"[{values.min()}, {values.max()}]"
            )
    return lengths


def check_mask_and_resets(mask, resets, lengths, batch_first: bool, batch_size: int, steps: int):
    """``(mask, resets)`` checked and time-major ``[T, B]`` (None where not given)."""
    if mask is not None and lengths is not None:
        raise ValueError("pass lengths or mask, not both (mask=arange(T) < lengths[:, None])")
    layout, shape = (
        ("[B, T]", (batch_size, steps)) if batch_first else ("[T, B]", (steps, batch_size))
    )
    checked = []
    for name, flags in (("mask", mask), ("resets", resets)):
        if flags is not None:
            flags = _masks.check_flags(flags, name, shape, layout)
            flags = flags.T if batch_first else flags
        checked.append(flags)
    return tuple(checked)


def check_initial_state(initial_state, expected):
    """Returns ``initial_state`` with the tree structure of ``expected`` (ShapeDtypeStructs)."""
    leaves = jax.tree.leaves(initial_state)
    want = jax.tree.leaves(expected)
    got_shapes = [tuple(jnp.shape(leaf)) for leaf in leaves]
    want_shapes = [s.shape for s in want]
    if got_shapes != want_shapes:
        raise ValueError(
            f"initial_state must have shapes {want_shapes} ([num_layers*D, B, features]), "
            f"got {got_shapes}"
        )
    return jax.tree.unflatten(jax.tree.structure(expected), [jnp.asarray(v) for v in leaves])


def check_params(params, expected_count: int):
    if not isinstance(params, tuple | list) or len(params) != expected_count:
        got = len(params) if isinstance(params, tuple | list) else type(params).__name__
        raise ValueError(
            f"params must be a tuple of {expected_count} cell parameter sets "
            f"(num_layers * directions, from layer.init), got {got}"
        )


def check_param_shapes(layer, params, input_size: int) -> None:
    """Every parameter of every cell against what ``layer.init(key, input_size)`` gives.

    Parameters restored for another configuration (a GRU's passed to an LSTM layer, a checkpoint
    saved before ``hidden_size`` changed) would otherwise fail deep inside a matmul, or, on the
    native backend, read and write past the ends of its buffers.
    """
    expected = _expected_params(layer, input_size)
    for index, (got, want) in enumerate(zip(params, expected, strict=True)):
        got_leaves, _ = jax.tree_util.tree_flatten_with_path(got)
        want_leaves, _ = jax.tree_util.tree_flatten_with_path(want)
        got_names = [jax.tree_util.keystr(path) for path, _ in got_leaves]
        want_names = [jax.tree_util.keystr(path) for path, _ in want_leaves]
        if got_names != want_names:
            raise ValueError(
                f"params[{index}] must hold {_names(want_names)} (as layer.init gives for "
                f"{_describe(layer)}), got {_names(got_names)}"
            )
        for name, (_, leaf), (_, spec) in zip(want_names, got_leaves, want_leaves, strict=True):
            if tuple(jnp.shape(leaf)) != spec.shape:
                raise ValueError(
                    f"params[{index}]{name} must have shape {spec.shape} (as layer.init(key, "
                    f"input_size={input_size}) gives for {_describe(layer)}), "
                    f"got {tuple(jnp.shape(leaf))}"
                )


def _expected_params(layer, input_size: int):
    try:
        return _cached_expected_params(layer, input_size)
    except TypeError:  # a layer with unhashable options (a user's initialiser object)
        return _abstract_init(layer, input_size)


@functools.lru_cache(maxsize=64)
def _cached_expected_params(layer, input_size: int):
    return _abstract_init(layer, input_size)


def _abstract_init(layer, input_size: int):
    return jax.eval_shape(lambda key: layer.init(key, input_size), jax.random.key(0))


def _describe(layer) -> str:
    return f"{type(layer).__name__}(hidden_size={layer.hidden_size}, ...)"


def _names(names) -> str:
    return "(" + ", ".join(name.lstrip(".") for name in names) + ")" if names else "no arrays"
