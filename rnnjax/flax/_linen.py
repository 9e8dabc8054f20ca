"""rnnjax layers as ``flax.linen`` modules: the pure layer's numbers, Flax's variables and RNGs.

The module holds no numerics of its own: it declares one ``params`` entry per leaf of the pure
layer's parameter pytree (names in ``rnnjax.flax._params``), rebuilds the pytree and calls the
pure ``rnnjax.Recurrent`` layer, so outputs, states, gradients and backends are the layer's::

    model = rnnjax.flax.LSTM(hidden_size=64, num_layers=2, dropout=0.1)
    variables = model.init(jax.random.key(0), x)                    # x: [B, T, I]
    y = model.apply(variables, x, lengths, deterministic=False,
                    rngs={"dropout": jax.random.key(1)})            # [B, T, H]
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

import rnnjax
from rnnjax.flax._params import group_names, leaf_names

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]


class _Group(nn.Module):
    """The parameters of one layer and direction: ``((name, init_fn), ...)`` -> their values."""

    inits: tuple

    @nn.compact
    def __call__(self):
        return [self.param(name, init) for name, init in self.inits]


class _Base(nn.Module):
    """The call shared by the modules below; subclasses provide ``layer`` and the options."""

    @nn.compact
    def __call__(
        self,
        inputs,
        seq_lengths=None,
        *,
        initial_state=None,
        mask=None,
        resets=None,
        deterministic: bool | None = None,
        return_state: bool | None = None,
    ):
        """Runs the layer over a batch of sequences.

        Args:
          inputs: ``[B, T, I]`` (``[T, B, I]`` when ``batch_first=False``), floating.
          seq_lengths: optional ``[B]`` integers in [0, T] (the pure layer's ``lengths``):
            positions >= length are padding, as in a PyTorch packed sequence.
          initial_state: optional, laid out as the returned state; zeros when None.
          mask: optional ``[B, T]`` booleans instead of ``seq_lengths`` (left padding, holes: a
            masked step keeps the state and outputs zeros), as the pure layer's ``mask``.
          resets: optional ``[B, T]`` booleans: the state restarts before a marked step
            (several documents packed in one row), as the pure layer's ``resets``.
          deterministic: no dropout when True; overrides the attribute. Needed (here or as the
            attribute) only when the layer has dropout between layers.
          return_state: also return the final state; overrides the attribute.

        Returns:
          ``outputs`` ``[B, T, D*H]`` (zero at padding), or ``(outputs, state)`` with ``state``
          ``h_n`` ``[L*D, B, H]`` (``LSTMState(h_n, c_n)`` for an LSTM) taken at each
          sequence's last valid step.
        """
        layer = self.layer
        x = jnp.asarray(inputs)
        if x.ndim != 3:
            layout = "[B, T, I]" if layer.batch_first else "[T, B, I]"
            raise ValueError(
                f"inputs must have shape {layout} (batch_first={layer.batch_first}), "
                f"got shape {x.shape}"
            )
        abstract = jax.eval_shape(lambda k: layer.init(k, x.shape[-1]), jax.random.key(0))
        groups = group_names(layer)
        initialized = all(self.has_variable("params", g) for g in groups)
        if initialized:
            _check_params(layer, self.variables["params"], x.shape)
            values = abstract
        else:
            # One key for the whole layer, as layer.init draws it: the same distributions (and
            # correlations, for a user's cell) as the pure layer's parameters.
            values = layer.init(self.make_rng("params"), x.shape[-1])
        params = []
        for group, cell in zip(groups, values, strict=True):
            names = leaf_names(cell)
            inits = tuple(
                (name, self._initializer(name, leaf))
                for name, leaf in zip(names, jax.tree.leaves(cell), strict=True)
            )
            leaves = _Group(inits, name=group)()
            params.append(jax.tree.unflatten(jax.tree.structure(cell), leaves))

        dropout_key = None
        if layer.dropout > 0 and layer.num_layers > 1:
            if deterministic is None:
                deterministic = self.deterministic
            if deterministic is None:
                raise ValueError(
                    f"{type(self).__name__} has dropout={layer.dropout}: deterministic must be "
                    "given, as an attribute or at call time (True: no dropout)"
                )
            if not deterministic:
                if not self.has_rng("dropout") and not self.is_initializing():
                    raise ValueError(
                        f"{type(self).__name__} has dropout={layer.dropout} and "
                        "deterministic=False but no 'dropout' RNG: pass "
                        "rngs={'dropout': key} to apply (or deterministic=True)"
                    )
                dropout_key = self.make_rng("dropout")  # falls back to 'params' in init
        outputs, state = layer(
            tuple(params),
            x,
            seq_lengths,
            initial_state,
            dropout_key=dropout_key,
            mask=mask,
            resets=resets,
        )
        if self.return_state if return_state is None else return_state:
            return outputs, state
        return outputs

    def _initializer(self, name: str, value):
        """The init function of one parameter: ``value``, or zeros of its shape in ``apply``."""

        def init(_key):  # the values come from layer.init, drawn once for the whole layer
            if isinstance(value, jax.ShapeDtypeStruct):  # Flax checks shapes by calling this
                return jnp.zeros(value.shape, value.dtype)
            return value

        if self.partition_names is None:
            return init
        names = tuple(self.partition_names.get(name, (None,) * len(value.shape)))
        if len(names) != len(value.shape):
            raise ValueError(
                f"partition_names[{name!r}] must have {len(value.shape)} entries (one per axis "
                f"of shape {value.shape}), got {names}"
            )
        return nn.with_partitioning(init, names)


def _shapes(layer, input_size: int) -> dict:
    """``{(group, name): shape}`` of the parameters ``layer.init`` makes for ``input_size``."""
    abstract = jax.eval_shape(lambda k: layer.init(k, input_size), jax.random.key(0))
    return {
        (group, name): leaf.shape
        for group, cell in zip(group_names(layer), abstract, strict=True)
        for name, leaf in zip(leaf_names(cell), jax.tree.leaves(cell), strict=True)
    }


def _check_params(layer, tree, input_shape) -> None:
    """One-line errors for parameters that do not fit ``inputs`` (before Flax's own check)."""
    got = {(g, n): np.shape(meta.unbox(v)) for g in group_names(layer) for n, v in tree[g].items()}
    want = _shapes(layer, input_shape[-1])
    if got == want:
        return
    w_ih = (group_names(layer)[0], "w_ih")  # every built-in cell: is the input size the reason?
    if w_ih in got and got == _shapes(layer, got[w_ih][0]):
        raise ValueError(
            f"inputs must have {got[w_ih][0]} features (the input size of the parameters), "
            f"got shape {input_shape}"
        )
    wrong = [k for k in want if got.get(k) != want[k]]
    if not wrong:
        raise ValueError(
            f"params has entries {sorted(set(got) - set(want))} the layer does not use"
        )
    group, name = wrong[0]
    raise ValueError(
        f"params[{group!r}][{name!r}] has shape {got.get((group, name))} but "
        f"{type(layer).__name__}(hidden_size={layer.hidden_size}) on {input_shape[-1]} input "
        f"features needs {want[(group, name)]}"
    )


class Recurrent(_Base):
    """Any ``rnnjax.Recurrent`` (a built-in layer or a user's subclass) as a linen module.

    Attributes:
      layer: the pure layer, e.g. ``rnnjax.LSTM(64, 2, bidirectional=True)`` or a user's
        ``rnnjax.Recurrent`` subclass; its configuration (``batch_first``, ``dropout``,
        ``backend``, ...) applies as is.
      deterministic: no dropout when True (as ``nn.Dropout``); may be given at call time instead.
      return_state: return ``(outputs, state)`` instead of ``outputs``.
      partition_names: optional ``{leaf name: logical axis names}`` (e.g.
        ``{"w_ih": (None, "model"), "w_hh": (None, "model")}``): the parameters are created with
        ``nn.with_partitioning``; leaves not named are replicated (all axes None).
    """

    layer: rnnjax.Recurrent
    deterministic: bool | None = None
    return_state: bool = False
    partition_names: Mapping[str, tuple] | None = None


class _Stack(_Base):
    """The configuration shared by ``LSTM``, ``GRU`` and ``RNN``: the pure layer's fields."""

    _pure = rnnjax.Recurrent  # the pure layer class the fields are passed to

    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    bias: bool = True
    batch_first: bool = True
    input_init: Any = "uniform"
    recurrent_init: Any = "uniform"
    unroll: int = 1
    remat: bool = False
    hoist_inputs: bool | None = None
    backend: Any = "auto"
    dtype: Any = None  # the cells' matmuls' dtype (rnnjax.with_compute_dtype); params float32
    deterministic: bool | None = None
    return_state: bool = False
    partition_names: Mapping[str, tuple] | None = None

    def __post_init__(self):
        _ = self.layer  # the pure layer's checks run when the module is built
        super().__post_init__()

    @property
    def layer(self) -> rnnjax.Recurrent:
        """The pure layer with this module's configuration."""
        # The pure layer's options this module does not expose (the regularisers) keep defaults.
        own = {f.name for f in dataclasses.fields(self)}
        names = [f.name for f in dataclasses.fields(self._pure) if f.name in own]
        fields = {name: getattr(self, name) for name in names}
        return rnnjax.with_compute_dtype(self._pure(**fields), self.dtype)


class LSTM(_Stack):
    """``rnnjax.LSTM`` (``torch.nn.LSTM``'s numbers) as a linen module; see ``Recurrent``.

    The attributes are the pure layer's (``hidden_size``, ``num_layers``, ``bidirectional``,
    ``dropout``, ``bias``, ``batch_first``, ``proj_size``, ``forget_bias``, initialisers,
    ``unroll``, ``remat``, ``hoist_inputs``, ``backend``), ``dtype`` (as Flax's: the
    computation's dtype; ``jnp.bfloat16`` rounds the cells' matmul operands to bf16 and keeps
    state, sums and parameters float32, ``rnnjax.with_compute_dtype``) and the module options of
    ``Recurrent`` (``deterministic``, ``return_state``, ``partition_names``).
    """

    _pure = rnnjax.LSTM
    proj_size: int = 0
    forget_bias: float | None = None


class GRU(_Stack):
    """``rnnjax.GRU`` as a linen module (``reset_after=False``: Cho et al.); see ``LSTM``."""

    _pure = rnnjax.GRU
    reset_after: bool = True


class RNN(_Stack):
    """``rnnjax.RNN`` (Elman, ``nonlinearity`` "tanh" or "relu") as a linen module; see ``LSTM``."""

    _pure = rnnjax.RNN
    nonlinearity: str = "tanh"
