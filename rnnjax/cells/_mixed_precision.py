"""A precision policy for any fusable cell: matmuls in bfloat16, state and gate math in float32.

Mixed-precision training as GPUs want it (tensor cores run bfloat16 matmuls several times faster
than float32 ones) without the drift of a bfloat16 recurrence: over thousands of steps a state
rounded to 8 bits of mantissa at every step forgets what float32 keeps. So only the matmuls'
operands are rounded: the inputs and ``W_ih`` of the input projection, the recurrent input and
``W_hh`` of the recurrent matmul. The parameters stay float32 (the optimizer's master copy), the
state, the gates and the pointwise update are float32, and in the backward pass the cotangents of
the matmuls are bfloat16 while every gradient that reaches a parameter is summed in float32.

Through the cell protocol it works on every backend that runs the cell it wraps: the scan (JAX's
derivative) and the fused backend (its hand-written backward pass does the large weight-gradient
matmul in bfloat16 too). The native CPU kernels run a bfloat16 policy over the built-in LSTM, GRU
and Elman cells: their forward pass rounds the same operands and sums in float32 (the scan also
rounds each product to bfloat16), their backward pass rounds the operands of the matmuls'
transposes likewise (``backends._native``). The cuDNN
kernel computes in float32 only and refuses it.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax.cells._base import Cell, State


@dataclasses.dataclass(frozen=True)
class MixedPrecisionCell(Cell):
    """``cell`` with its two state and input matmuls in ``compute_dtype``::

        layer = rnnjax.Stack(cell=rnnjax.cells.MixedPrecisionCell(rnnjax.cells.LSTMCell(1024)))

    Attributes:
      cell: a fusable cell (``cell.fusable``: its step is ``pointwise_step(..., recurrent_input
        (state) @ recurrent_weight(params))``): LSTM, GRU, Elman, the LayerNorm and peephole
        LSTMs, the MGU. Matmuls inside its ``pointwise_step`` (an LSTM's projection) stay in the
        parameters' dtype.
      compute_dtype: the matmuls' operand dtype (``jnp.bfloat16``; ``jnp.float16`` works too but
        has no loss scaling here).

    Parameters, ``init`` and ``initial_state`` are the wrapped cell's, so checkpoints and
    parameter conversions (torch, Flax) are unchanged.
    """

    cell: Cell
    compute_dtype: Any = jnp.bfloat16

    def __post_init__(self):
        if not isinstance(self.cell, Cell):
            raise ValueError(f"cell must be an rnnjax.cells.Cell, got {self.cell!r}")
        if not self.cell.fusable:
            raise ValueError(
                "cell must be fusable (its matmul with the state outside pointwise_step, where "
                f"the policy can round its operands), got {self.cell!r}"
            )
        try:
            floating = jnp.issubdtype(jnp.dtype(self.compute_dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(
                f"compute_dtype must be a floating dtype such as jnp.bfloat16, got "
                f"{self.compute_dtype!r}"
            )

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key, input_size: int):
        return self.cell.init(key, input_size)

    def initial_state(self, dtype=jnp.float32) -> State:
        return self.cell.initial_state(dtype)

    def project_inputs(self, params, x):
        dtype = jnp.result_type(x, *jax.tree.leaves(params))
        low = jax.tree.map(lambda p: p.astype(self.compute_dtype), params)
        return self.cell.project_inputs(low, x.astype(self.compute_dtype)).astype(dtype)

    def recurrent_step(self, params, state: State, projected):
        hw = self.recurrent_input(state) @ self.recurrent_weight(params)
        return self.pointwise_step(params, state, projected, hw)

    @property
    def fusable(self) -> bool:
        return True

    @property
    def one_state_matmul(self) -> bool:
        return self.cell.one_state_matmul

    def recurrent_input(self, state: State):
        return self.cell.recurrent_input(state).astype(self.compute_dtype)

    def recurrent_weight(self, params):
        return self.cell.recurrent_weight(params).astype(self.compute_dtype)

    def pointwise_step(self, params, state: State, projected, hw):
        return self.cell.pointwise_step(params, state, projected, hw.astype(projected.dtype))
