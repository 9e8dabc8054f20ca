"""Recurrent cells: pure functions of one example (see ``rnnjax.cells.Cell`` for the protocol)."""

from rnnjax.cells._base import Cell, CellParams, State, affine, init_cell_params
from rnnjax.cells._elman import ElmanCell
from rnnjax.cells._gru import GRUCell
from rnnjax.cells._initializers import INITIALIZER_NAMES
from rnnjax.cells._lstm import LSTMCell, LSTMState

__all__ = [
    "INITIALIZER_NAMES",
    "Cell",
    "CellParams",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "State",
    "affine",
    "init_cell_params",
]
