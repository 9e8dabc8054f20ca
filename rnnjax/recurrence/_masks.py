"""Per-step masks and resets of a recurrence: their checks and what each direction makes of them.

A ``mask`` says which steps are real: at a masked step the state is carried unchanged and the
output is zero (left padding, holes; ``lengths`` is the special case of a valid prefix). A
``resets`` flag at position t returns the state to the initial state before step t: a row holding
several documents packed end to end, or several RL episodes, runs each from the initial state.

A reset is a boundary between positions t-1 and t, so the reversed direction, which visits t
before t-1, crosses it before step t-1: it starts from the initial state at the last step of
each segment (``restarts``). A reset applies whether or not its step is masked.
"""

import jax.numpy as jnp
from jaxtyping import Bool

from rnnjax._shapes import Array


def check_flags(flags, name: str, shape: tuple, layout: str) -> Bool[Array, "..."]:
    """``flags`` as a bool array of ``shape``; a one-line error naming ``name`` otherwise.

    Args:
      flags: what the user passed as ``mask`` or ``resets``.
      name: the argument's name, for the error.
      shape: the expected shape.
      layout: the expected shape in the shape vocabulary, e.g. ``"[B, T]"``, for the error.

    Returns:
      ``jnp.asarray(flags)``.
    """
    flags = jnp.asarray(flags)
    if flags.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {layout} = {tuple(shape)}, got {flags.shape}")
    if flags.dtype != jnp.bool_:
        # Not cast: 0/1 floats could be loss weights, and an int array could hold positions.
        raise ValueError(
            f"{name} must have dtype bool (True = {_MEANING[name]}), got {flags.dtype}"
        )
    return flags


_MEANING = {"mask": "a valid step", "resets": "start from the initial state before this step"}


def restarts(resets: Bool[Array, "T ..."], reverse: bool) -> Bool[Array, "T ..."]:
    """Where a direction returns to its initial state before the step at each position.

    Forward this is ``resets``. Reversed, the step at t follows the one at t+1, so it restarts
    where ``resets[t+1]`` marks a segment starting after it (position T-1 starts from the
    initial state anyway).

    Args:
      resets: ``[T, ...]`` booleans, time on the leading axis.
      reverse: whether the direction runs from T-1 down to 0.
    """
    if not reverse:
        return resets
    return jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])], axis=0)
