"""Recurrent cells: pure functions of one example (see ``rnnjax.cells.Cell`` for the protocol)."""

from rnnjax.cells._base import Cell, CellParams, State, affine, init_cell_params
from rnnjax.cells._elman import ElmanCell
from rnnjax.cells._gru import GRUCell
from rnnjax.cells._indrnn import IndRNNCell, IndRNNParams
from rnnjax.cells._initializers import INITIALIZER_NAMES
from rnnjax.cells._layer_norm import LayerNormGRUCell, LayerNormLSTMCell, LayerNormParams
from rnnjax.cells._linear import LinearCell
from rnnjax.cells._lru import LRUCell, LRUParams
from rnnjax.cells._lstm import LSTMCell, LSTMState
from rnnjax.cells._mgu import MGUCell
from rnnjax.cells._min_rnn import MinGRUCell, MinLSTMCell, MinRNNParams
from rnnjax.cells._mixed_precision import MixedPrecisionCell
from rnnjax.cells._peephole import PeepholeLSTMCell, PeepholeParams

__all__ = [
    "INITIALIZER_NAMES",
    "Cell",
    "CellParams",
    "ElmanCell",
    "GRUCell",
    "IndRNNCell",
    "IndRNNParams",
    "LRUCell",
    "LRUParams",
    "LSTMCell",
    "LSTMState",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LayerNormParams",
    "LinearCell",
    "MinGRUCell",
    "MinLSTMCell",
    "MinRNNParams",
    "MGUCell",
    "MixedPrecisionCell",
    "PeepholeLSTMCell",
    "PeepholeParams",
    "State",
    "affine",
    "init_cell_params",
]
