"""The shape vocabulary used in every docstring and annotation of rnnjax.

    B  batch                  T  time (sequence length)
    I  input features         H  hidden units
    G  gates (1 RNN, 3 GRU, 4 LSTM)
    P  projection size (LSTM ``proj_size``; P = H when there is none)
    D  directions (1, or 2 when bidirectional)
    L  layers

Cells see one example: an input step is ``[I]``, a sequence ``[T, I]``. Layers see ``[B, T, I]``
(``batch_first=True``) or ``[T, B, I]``. Final layer states are ``[L*D, B, H]`` with PyTorch's index
``layer * D + direction``.
"""

from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["Array", "Float", "Int", "PRNGKeyArray"]
