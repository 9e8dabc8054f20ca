"""Weight initialisers for the gate matrices of recurrent cells.

PyTorch initialises every weight and bias of nn.RNN/LSTM/GRU from U(-1/sqrt(H), 1/sqrt(H)); that is
the default here so that a freshly initialised rnnjax layer is distributed like a torch one.
Orthogonal recurrent weights and Glorot input weights are the common alternatives; each gate's
block is initialised on its own so that every gate gets an orthogonal (or Glorot-scaled) matrix.
``"identity"`` recurrent weights with a relu RNN give the IRNN of Le et al. (2015).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]
INITIALIZER_NAMES = ("uniform", "orthogonal", "glorot_uniform", "identity")


def torch_uniform(hidden_size: int) -> Initializer:
    """U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for recurrent layers."""
    bound = 1.0 / hidden_size**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def identity(key, shape, dtype=jnp.float32):
    """The identity matrix (ones on the diagonal of a non-square block); ``key`` is unused."""
    del key
    return jnp.eye(*shape, dtype=dtype)


def resolve(init: str | Initializer, hidden_size: int, argument: str) -> Initializer:
    """Turns an initialiser name or callable into a callable ``init(key, shape, dtype)``.

    Args:
      init: one of ``INITIALIZER_NAMES`` or a ``jax.nn.initializers``-style callable.
      hidden_size: H, which sets the bound of the PyTorch uniform initialiser.
      argument: the argument's name, for the error message.

    Returns:
      The initialiser for one gate block.
    """
    if callable(init):
        return init
    if init == "uniform":
        return torch_uniform(hidden_size)
    if init == "orthogonal":
        return jax.nn.initializers.orthogonal()
    if init == "glorot_uniform":
        return jax.nn.initializers.glorot_uniform()
    if init == "identity":
        return identity
    raise ValueError(f"{argument} must be one of {INITIALIZER_NAMES} or a callable, got {init!r}")


def gate_blocks(init: Initializer, key, rows: int, hidden_size: int, num_gates: int, dtype):
    """A ``[rows, G*H]`` matrix made of G independently initialised ``[rows, H]`` blocks."""
    keys = jax.random.split(key, num_gates)
    return jnp.concatenate([init(k, (rows, hidden_size), dtype) for k in keys], axis=-1)
