"""Validation of what users pass to a layer call; every error names the argument."""

import jax
import jax.numpy as jnp
import numpy as np


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
