"""Cells whose recurrence is linear in the state: ``h_t = a_t * h_{t-1} + b_t``.

Such a cell computes the coefficients ``(a_t, b_t)`` from the input alone, so a whole sequence
can run as a parallel prefix scan over the pairs (``backends._associative``) instead of T
sequential steps, while ``step`` still streams one token at a time. The composition of two steps
is again such a step: ``(a1, b1) then (a2, b2) = (a2 * a1, a2 * b1 + b2)``, which is associative.
"""

import abc

from rnnjax._shapes import Array, Float
from rnnjax.cells._base import Cell


class LinearCell(Cell):
    """A cell with a diagonal linear recurrence and an output map.

    The state is ONE array ``h: [S]`` (real, or complex for ``LRUCell``); the step is::

        a, b = linear_coefficients(params, projected)      # [S] each, from the input only
        h = a * h_prev + b
        output = linear_output(params, h, projected)       # [output_size]
    """

    @abc.abstractmethod
    def linear_coefficients(self, params, projected: Float[Array, "*T GH"]):
        """``(a, b)`` of ``h_t = a * h_{t-1} + b``, each ``[*T, S]``, from projected inputs."""

    @abc.abstractmethod
    def linear_output(self, params, state, projected: Float[Array, "*T GH"]):
        """The output ``[*T, output_size]`` from the new state ``[*T, S]`` and the inputs."""

    def recurrent_step(self, params, state, projected):
        a, b = self.linear_coefficients(params, projected)
        new_state = a * state + b
        return new_state, self.linear_output(params, new_state, projected)
