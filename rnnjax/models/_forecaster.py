"""Forecasting: a window of past values -> the next K values, direct or autoregressive.

Shapes use rnnjax's vocabulary (``rnnjax._shapes``) plus W window (past steps read), K horizon
(future steps forecast) and C known covariates (calendar features: I - 1 of the I inputs).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
from rnnjax._shapes import Array, Float, PRNGKeyArray
from rnnjax.models._classifier import _dense
from rnnjax.models._dropout import dropout

FORECAST_MODES = ("direct", "autoregressive")


class ForecasterParams(NamedTuple):
    """Parameters of ``Forecaster``.

    Attributes:
      rnn: per-layer cell parameters of the recurrent stack (``Recurrent.init``).
      head: tuple of ``(w, b)`` dense layers from the last output to K (direct) or 1 values.
      skip: ``(w [S, K or 1], b [K or 1])``: a linear map of the last S target values added to
        the head's output, or ``None`` (``skip_window=0``).
    """

    rnn: tuple
    head: tuple
    skip: tuple | None


@dataclasses.dataclass(frozen=True)
class Forecaster:
    """``window [B, W, I] -> forecast [B, K]`` of input feature 0, the target.

    The stack reads the window; its last output feeds an MLP head. ``"direct"``: the head emits
    all K values at once. ``"autoregressive"``: the head emits one value, which becomes the
    target feature of the next input step (the other features are known covariates, such as
    calendar features, given for the future steps), K times; the stack's state carries on, so
    the window is read once. Training through the rollout backpropagates through the fed-back
    predictions. Both modes can add a linear term of the last ``skip_window`` target values
    (LSTNet's "autoregressive highway", Lai et al., 2018): the recurrent part then models what
    a linear AR model misses.

    Inputs and targets are expected scaled (``rnnjax.data.Scaler``, fitted on training data).

    Attributes:
      layer: any unidirectional ``rnnjax.Recurrent`` (``LSTM``, ``GRU``, ``Stack(cell=...)``);
        bidirectional stacks are allowed in direct mode only.
      input_size: I, the target plus the covariates.
      horizon: K.
      mode: ``"direct"`` or ``"autoregressive"``.
      head_sizes: hidden sizes of the MLP head (tanh); ``()`` for a linear read-out.
      skip_window: S, values of the target in the linear term; 0 for none.
      dropout: rate on the head's input and hidden layers (with a ``dropout_key`` only).
    """

    layer: rnnjax.Recurrent
    input_size: int
    horizon: int
    mode: str = "direct"
    head_sizes: tuple = ()
    skip_window: int = 0
    dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.layer, rnnjax.Recurrent):
            raise ValueError(f"layer must be an rnnjax.Recurrent, got {type(self.layer).__name__}")
        if self.mode not in FORECAST_MODES:
            raise ValueError(f"mode must be one of {list(FORECAST_MODES)}, got {self.mode!r}")
        for name in ("input_size", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.skip_window, int) or self.skip_window < 0:
            raise ValueError(f"skip_window must be an int >= 0, got {self.skip_window!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.mode == "autoregressive" and self.layer.bidirectional:
            raise ValueError("an autoregressive forecaster needs a unidirectional layer")

    @property
    def _outputs(self) -> int:
        return self.horizon if self.mode == "direct" else 1

    def init(self, key: PRNGKeyArray) -> ForecasterParams:
        """The stack's own init; PyTorch-default (uniform) dense layers; a zero skip term."""
        k_rnn, k_head = jax.random.split(key)
        sizes = (self.layer.output_size, *self.head_sizes, self._outputs)
        keys = jax.random.split(k_head, len(sizes) - 1)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        head = tuple(_dense(k, n_in, n_out) for k, (n_in, n_out) in zip(keys, pairs, strict=True))
        skip = None
        if self.skip_window:
            skip = (jnp.zeros((self.skip_window, self._outputs)), jnp.zeros((self._outputs,)))
        return ForecasterParams(self.layer.init(k_rnn, self.input_size), head, skip)

    def apply(
        self,
        params: ForecasterParams,
        window: Float[Array, "B W I"],
        future: Float[Array, "B K C"] | None = None,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> Float[Array, "B K"]:
        """The next K values of feature 0 after each window.

        Args:
          params: from ``init``.
          window: ``[B, W, I]``, the W steps before the forecast; feature 0 is the target.
          future: ``[B, K, I - 1]`` the covariates of the K forecast steps (autoregressive mode
            with I > 1 only; row k is read with the prediction of step k when step k + 1 is
            forecast, so the last row is unused).
          dropout_key: enables dropout; deterministic when None.
        """
        window = jnp.asarray(window)
        if window.ndim != 3 or window.shape[-1] != self.input_size:
            raise ValueError(
                f"window must be [B, W, {self.input_size}], got shape {tuple(window.shape)}"
            )
        if window.shape[1] < self.skip_window:
            raise ValueError(
                f"window of {window.shape[1]} steps is shorter than skip_window {self.skip_window}"
            )
        outputs, state = self.layer(params.rnn, window)
        history = window[:, window.shape[1] - self.skip_window :, 0]  # [B, S]
        first = self._read_out(params, outputs[:, -1], history, dropout_key, 0)
        if self.mode == "direct" or self.horizon == 1:
            return first
        covariates = self.input_size - 1
        if covariates and (future is None or future.shape[1:] != (self.horizon, covariates)):
            got = None if future is None else tuple(future.shape)
            raise ValueError(f"future must be [B, {self.horizon}, {covariates}], got {got}")
        if not covariates:
            future = jnp.zeros((window.shape[0], self.horizon, 0), window.dtype)

        def step(carry, k):
            state, previous, history = carry
            covariate = jax.lax.dynamic_index_in_dim(future, k - 1, axis=1, keepdims=False)
            x = jnp.concatenate([previous, covariate], axis=-1)[:, None, :]
            out, state = self.layer(params.rnn, x, initial_state=state)
            if self.skip_window:
                history = jnp.concatenate([history[:, 1:], previous], axis=1)
            value = self._read_out(params, out[:, 0], history, dropout_key, k)
            return (state, value, history), value[:, 0]

        _, rest = jax.lax.scan(step, (state, first, history), jnp.arange(1, self.horizon))
        return jnp.concatenate([first, rest.T], axis=1)

    def _read_out(self, params, features, history, dropout_key, k) -> Float[Array, "B K"]:
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, k)
        x = features
        for i, (w, b) in enumerate(params.head):
            sub = None if key is None else jax.random.fold_in(key, i)
            x = dropout(sub, self.dropout, x) @ w + b[None, :]
            if i < len(params.head) - 1:
                x = jnp.tanh(x)
        if params.skip is not None:
            w, b = params.skip
            x = x + history @ w + b[None, :]
        return x
