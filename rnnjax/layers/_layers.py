"""Multi-layer, optionally bidirectional recurrent layers with PyTorch's interface."""

import abc
import dataclasses
import functools

import jax
import jax.numpy as jnp

from rnnjax.cells import Cell, ElmanCell, GRUCell, LSTMCell, _checks
from rnnjax.layers import _layer_checks, _regularisers
from rnnjax.recurrence._unroll import native_batch_major, scan_time_major
from rnnjax.recurrence.backends import Backend, _cudnn, check_structure, resolve_layer


@dataclasses.dataclass(frozen=True)
class Recurrent(abc.ABC):
    """A stack of recurrent layers, as ``torch.nn.RNN/LSTM/GRU``; holds static configuration only.

    The object is hashable and can be a static argument of ``jax.jit``. Parameters are a tuple of
    ``num_layers * D`` cell parameter sets in PyTorch's order ``layer * D + direction``.

    Attributes:
      hidden_size: H.
      num_layers: L, layers stacked on each other.
      bidirectional: run a second, reversed direction per layer (D = 2) and concatenate.
      dropout: dropout rate on the outputs of every layer but the last (only with ``dropout_key``).
      bias: whether the cells have biases.
      batch_first: inputs and outputs are ``[B, T, F]`` (True) or ``[T, B, F]`` (False). Unlike
        PyTorch the default is True, the usual layout in JAX code.
      input_init, recurrent_init: initialisers of the cells (see ``rnnjax.cells``).
      unroll, remat, hoist_inputs: options of ``rnnjax.unroll`` for the scan and fused
        backends (the native kernels project the inputs in chunks of steps themselves).
        ``hoist_inputs=None`` (the default) projects the inputs inside each step on CPU, where
        XLA's one ``[T*B, I] @ [I, G*H]`` matmul and the round trip of its result through memory
        cost more than the small per-step matmuls, and hoists it out of the loop on a GPU
        (``benchmarks/RESULTS.md``).
      backend: ``"auto"`` (default), ``"scan"``, ``"fused"``, ``"native"`` or ``"cudnn"``; see
        ``rnnjax.Backend``. FUSED computes the weight gradients as large matmuls after the loop
        (fusable cells); NATIVE runs each direction's time loop as compiled C++ with MKL or
        OpenBLAS matmuls (CPU, float32; LSTM with or without projection, GRU with either reset,
        RNN; with remat it keeps the states entering segments of about sqrt(T) steps and reruns
        each); CUDNN runs each LSTM layer as cuDNN's kernel (GPU, float32, no projection, no
        remat, no lengths).
        AUTO picks the measured fastest: NATIVE on CPU where it applies (else the plain scan),
        the fused backward pass on a GPU.
      input_dropout, output_dropout: variational dropout (one mask per sequence, the same at
        every step; Gal & Ghahramani 2016) on every layer's inputs and outputs, with a key only.
      recurrent_dropout: variational dropout on the state entering the recurrent matmul,
        ``(m * h_{t-1}) @ W_hh`` (fusable cells), with a key only.
      zoneout: each state unit keeps its previous value with this probability at each step
        (Krueger et al. 2017); without a key the expectation. One rate, or one per state leaf
        (LSTM: ``(hidden, cell)``).
      weight_dropout: DropConnect on ``w_hh``, one mask per call (Merity et al. 2017).
        Input/output/weight dropout keep the fast backends; recurrent dropout (with a key) and
        zoneout run the scan (``layers._regularisers``).

    Internally every layer scans the time-major ``[T, B, F]`` layout; ``batch_first`` inputs are
    transposed once on the way in and once on the way out.
    """

    hidden_size: int
    num_layers: int = 1
    _: dataclasses.KW_ONLY
    bidirectional: bool = False
    dropout: float = 0.0
    bias: bool = True
    batch_first: bool = True
    input_init: object = "uniform"
    recurrent_init: object = "uniform"
    unroll: int = 1
    remat: bool = False
    hoist_inputs: bool | None = None
    backend: Backend | str = "auto"
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    output_dropout: float = 0.0
    zoneout: float | tuple[float, ...] = 0.0
    weight_dropout: float = 0.0

    def __post_init__(self):
        _checks.positive_int(self.num_layers, "num_layers")
        _checks.positive_int(self.unroll, "unroll")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        _ = self.cell  # builds the cell once, so that its own checks run at construction
        check_structure(self.backend, self.cell, remat=self.remat)
        _regularisers.check_layer(self)

    @property
    @abc.abstractmethod
    def cell(self) -> Cell:
        """The cell every layer and direction uses."""

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of the outputs: D * H (D * proj_size for a projected LSTM)."""
        return self.num_directions * self.cell.output_size

    def init(self, key, input_size: int) -> tuple:
        """Returns parameters for inputs of ``input_size`` features (torch's ``input_size``)."""
        _checks.positive_int(input_size, "input_size")
        keys = jax.random.split(key, self.num_layers * self.num_directions)
        sizes = [input_size] + [self.output_size] * (self.num_layers - 1)
        return tuple(self.cell.init(k, sizes[i // self.num_directions]) for i, k in enumerate(keys))

    def initial_state(self, batch_size: int, dtype=jnp.float32):
        """Zero state with leaves ``[num_layers * D, B, features]`` (torch's ``h_0``, ``c_0``)."""
        one = self.cell.initial_state(dtype)
        count = self.num_layers * self.num_directions
        return jax.tree.map(lambda s: jnp.zeros((count, batch_size, *s.shape), s.dtype), one)

    def __call__(
        self,
        params,
        x,
        lengths=None,
        initial_state=None,
        *,
        dropout_key=None,
        mask=None,
        resets=None,
    ):
        """Runs the stack over a batch of sequences.

        Args:
          params: from ``init``.
          x: ``[B, T, I]`` (``[T, B, I]`` when ``batch_first=False``), floating.
          lengths: optional ``[B]`` integers in [0, T]; positions >= length are padding, as in a
            PyTorch packed sequence.
          initial_state: optional, laid out as the returned state; zeros when None.
          dropout_key: PRNG key enabling dropout (between layers and the regularisers above);
            none when None (zoneout then takes its expectation).
          mask: optional ``[B, T]`` booleans (``[T, B]`` when ``batch_first=False``) instead of
            ``lengths``: a False step carries the state unchanged and outputs zeros (left
            padding, holes). Not with backend='cudnn'.
          resets: optional ``[B, T]`` booleans (``[T, B]`` when ``batch_first=False``): each
            layer and direction returns to its initial state before a marked step (documents
            packed into one row, RL episodes); the reversed direction runs each segment from its
            last step. Not with backend='native' (AUTO then runs the scan on CPU) or 'cudnn'.

        Returns:
          ``(outputs, state)``: outputs ``[B, T, D*H]`` (or time-major), zero at padding; state
          ``h_n`` ``[L*D, B, H]`` for RNN/GRU and ``LSTMState(h_n, c_n)`` for LSTM (unpacks as
          ``(h_n, c_n)``), taken at each sequence's last valid step (of its last segment with
          ``resets``; of its first for the reversed direction, which ends at position 0).
        """
        count = self.num_layers * self.num_directions
        _layer_checks.check_params(params, count)
        x = jnp.asarray(x)
        _layer_checks.check_inputs(x, self.batch_first, _input_size(params[0], x))
        _layer_checks.check_param_shapes(self, params, x.shape[-1])
        batch_size, num_steps = x.shape[:2] if self.batch_first else x.shape[1::-1]
        if lengths is not None:
            lengths = _layer_checks.check_lengths(lengths, batch_size, num_steps)
        mask, resets = _layer_checks.check_mask_and_resets(
            mask, resets, lengths, self.batch_first, batch_size, num_steps
        )
        expected = jax.eval_shape(lambda: self.initial_state(batch_size, x.dtype))
        if initial_state is None:
            initial_state = self.initial_state(batch_size, x.dtype)
        else:
            initial_state = _layer_checks.check_initial_state(initial_state, expected)

        backend = resolve_layer(
            self.backend,
            self.cell,
            remat=self.remat,
            # What the scan would compute in: float64 parameters keep it, bfloat16 ones do not.
            dtype=jnp.result_type(x, *jax.tree.leaves(params)),
            with_lengths=lengths is not None or mask is not None,
            with_resets=resets is not None,
        )
        rates = _regularisers.check_layer(self)
        in_loop = rates.in_loop(training=dropout_key is not None)
        # The native kernels read and write batch-major arrays themselves, so a batch-first layer
        # skips the transposes in and out; the variational dropout masks are time-major.
        batch_major = (
            self.batch_first
            and backend is Backend.NATIVE
            and not self.remat
            and resets is None
            and not in_loop
            and rates.input_dropout == rates.output_dropout == 0
        )
        if self.batch_first and not batch_major:
            x = jnp.swapaxes(x, 0, 1)  # time-major inside: the scan slices contiguous [B, F]
        hoist = self.hoist_inputs
        if hoist is None:
            hoist = jax.default_backend() == "gpu"
        final_states = []
        for layer in range(self.num_layers):
            first = layer * self.num_directions
            if backend is Backend.CUDNN:
                state0 = jax.tree.map(
                    lambda s, i=first: s[i : i + self.num_directions], initial_state
                )
                layer_params = params[first : first + self.num_directions]
                x, states = _cudnn.lstm_layer(layer_params, x, state0)
                final_states.extend(states)
            else:
                keys = [
                    _regularisers.keys_for(dropout_key, layer, d)
                    for d in range(self.num_directions)
                ]
                x = _regularisers.drop_inputs(keys[0], rates, x)
                outputs = []
                for direction in range(self.num_directions):
                    state0 = jax.tree.map(lambda s, i=first + direction: s[i], initial_state)
                    direction_params = _regularisers.drop_weights(
                        keys[direction], rates, params[first + direction]
                    )
                    common = (self.cell, direction_params, x, state0, lengths)
                    if batch_major:
                        out, state = native_batch_major(*common, mask=mask, reverse=direction == 1)
                    else:
                        run = scan_time_major
                        if in_loop:
                            run = functools.partial(
                                _regularisers.scan_regularised, rates=rates, keys=keys[direction]
                            )
                        out, state = run(
                            *common,
                            mask=mask,
                            resets=resets,
                            reverse=direction == 1,
                            unroll=self.unroll,
                            remat=self.remat,
                            hoist_inputs=hoist,
                            backend=backend,
                        )
                    outputs.append(out)
                    final_states.append(state)
                x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
                x = _regularisers.drop_outputs(keys[0], rates, x)
            if dropout_key is not None and self.dropout > 0 and layer < self.num_layers - 1:
                x = _dropout(jax.random.fold_in(dropout_key, layer), self.dropout, x, batch_major)

        state = jax.tree.map(lambda *s: jnp.stack(s), *final_states)
        if self.batch_first and not batch_major:
            x = jnp.swapaxes(x, 0, 1)
        return x, state


def _input_size(first_params, x) -> int:
    """The input size the first cell's parameters were made for (the built-in cells' ``w_ih``);
    a user's cell without ``w_ih`` is checked by ``check_param_shapes`` alone."""
    w_ih = getattr(first_params, "w_ih", None)
    return x.shape[-1] if w_ih is None else jnp.shape(w_ih)[0]


def _dropout(key, rate: float, x, batch_major: bool = False):
    """Dropout on ``x: [T, B, F]`` (or ``[B, T, F]``), the mask always drawn batch-major: the same
    mask in either layout."""
    if batch_major:
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    else:
        shape = jnp.swapaxes(x, 0, 1).shape
        keep = jnp.swapaxes(jax.random.bernoulli(key, 1.0 - rate, shape), 0, 1)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNN(Recurrent):
    """Elman RNN stack, as ``torch.nn.RNN``; ``nonlinearity`` is ``"tanh"`` or ``"relu"``."""

    nonlinearity: str = "tanh"

    @property
    def cell(self) -> ElmanCell:
        return ElmanCell(
            self.hidden_size, self.nonlinearity, self.bias, self.input_init, self.recurrent_init
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTM(Recurrent):
    """LSTM stack, as ``torch.nn.LSTM``; ``proj_size`` > 0 gives LSTMP (h_n has P features)."""

    proj_size: int = 0
    forget_bias: float | None = None
    chrono_init: float | None = None  # T_max of the chrono initialisation (see LSTMCell)

    @property
    def cell(self) -> LSTMCell:
        return LSTMCell(
            self.hidden_size,
            self.bias,
            self.proj_size,
            self.forget_bias,
            self.input_init,
            self.recurrent_init,
            chrono_init=self.chrono_init,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GRU(Recurrent):
    """GRU stack, as ``torch.nn.GRU``; ``reset_after=False`` gives the Cho et al. (2014) form."""

    reset_after: bool = True

    @property
    def cell(self) -> GRUCell:
        return GRUCell(
            self.hidden_size, self.bias, self.reset_after, self.input_init, self.recurrent_init
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stack(Recurrent):
    """A stack of any cell (the zoo's or your own) without writing a ``Recurrent`` subclass::

        layer = rnnjax.Stack(cell=rnnjax.cells.GRUCell(64), num_layers=2, bidirectional=True)

    ``hidden_size`` comes from the cell; the cell's own options (bias, initialisers) hold, so the
    layer's ``bias``, ``input_init`` and ``recurrent_init`` are not used.
    """

    hidden_size: int = 0
    cell: Cell = None  # a field here: shadows the abstract property of ``Recurrent``

    def __post_init__(self):
        if not isinstance(self.cell, Cell):
            raise ValueError(f"cell must be an rnnjax.cells.Cell, got {self.cell!r}")
        if self.hidden_size not in (0, self.cell.hidden_size):
            raise ValueError(
                f"hidden_size must be 0 (taken from the cell) or the cell's "
                f"{self.cell.hidden_size}, got {self.hidden_size}"
            )
        object.__setattr__(self, "hidden_size", self.cell.hidden_size)
        super().__post_init__()
