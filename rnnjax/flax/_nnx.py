"""rnnjax layers as ``flax.nnx`` modules: one ``nnx.Param`` per leaf of the pure parameters.

As in ``rnnjax.flax`` (linen), the module calls the pure ``rnnjax.Recurrent`` layer, so outputs,
states, gradients and backends are the layer's; the parameters live in the module as
``model.l0["w_ih"]``, ``model.l0_reverse["w_hh"]``, ... (names in ``rnnjax.flax._params``)::

    model = rnnjax.flax.nnx.LSTM(16, 64, num_layers=2, dropout=0.1, rngs=nnx.Rngs(0))
    y = model(x, lengths)               # x: [B, T, I=16] -> y: [B, T, H=64]; dropout on
    model.eval(); y = model(x, lengths) # no dropout (or deterministic=True, or nnx.view)
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

import rnnjax
from rnnjax.flax._params import from_flax_params, group_names, leaf_names, to_flax_params

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]


class Recurrent(nnx.Module):
    """Any ``rnnjax.Recurrent`` (a built-in layer or a user's subclass) as an NNX module.

    Args:
      layer: the pure layer, e.g. ``rnnjax.LSTM(64, 2)`` or a user's subclass; its configuration
        (``batch_first``, ``dropout``, ``backend``, ...) applies as is.
      input_size: I, the features of the inputs.
      deterministic: no dropout when True (``model.eval()`` sets it, ``model.train()`` clears it,
        as for ``nnx.Dropout``); may be given at call time instead.
      return_state: return ``(outputs, state)`` instead of ``outputs``.
      partition_names: optional ``{leaf name: logical axis names}`` (e.g.
        ``{"w_ih": (None, "model")}``), stored as each ``nnx.Param``'s ``out_sharding``; leaves
        not named are replicated.
      rngs: ``params`` draws the parameters (as ``layer.init`` with one key); ``dropout`` (or
        ``default``) is kept for dropout between layers when the layer has any.
      params: the pure parameters to start from instead of drawing them (see ``from_params``).
    """

    def __init__(
        self,
        layer: rnnjax.Recurrent,
        input_size: int,
        *,
        deterministic: bool = False,
        return_state: bool = False,
        partition_names: Mapping[str, tuple] | None = None,
        rngs: nnx.Rngs | None = None,
        params=None,
    ):
        if params is None:
            if rngs is None:
                raise ValueError("rngs is needed to initialise the parameters (or pass params)")
            params = layer.init(rngs.params(), input_size)
        self.layer = layer
        self.input_size = input_size
        self.deterministic = deterministic
        self.return_state = return_state
        self.rngs = nnx.data(None)
        if rngs is not None and layer.dropout > 0 and layer.num_layers > 1:
            try:
                self.rngs = rngs["dropout"].fork()  # "dropout", else the "default" stream
            except KeyError:
                pass  # an error at call time if dropout is ever active
        structure = []
        for group, cell in zip(group_names(layer), params, strict=True):
            leaves = {}
            for name, value in zip(leaf_names(cell), jax.tree.leaves(cell), strict=True):
                metadata = {}
                if partition_names is not None:
                    axes = tuple(partition_names.get(name, (None,) * jnp.ndim(value)))
                    if len(axes) != jnp.ndim(value):
                        raise ValueError(
                            f"partition_names[{name!r}] must have {jnp.ndim(value)} entries (one "
                            f"per axis of shape {jnp.shape(value)}), got {axes}"
                        )
                    metadata["out_sharding"] = axes
                leaves[name] = nnx.Param(jnp.asarray(value), **metadata)
            setattr(self, group, nnx.Dict(leaves))
            structure.append((tuple(leaves), jax.tree.structure(cell)))
        self._structure = tuple(structure)  # static: names and pytree structure per group

    @staticmethod
    def from_params(layer: rnnjax.Recurrent, params, *, input_size=None, rngs=None, **options):
        """A ``Recurrent`` holding the pure ``params`` of ``layer`` (e.g. from ``from_torch``).

        ``input_size`` is read from the parameters' ``w_ih`` when None; ``rngs`` is needed only
        for dropout; ``options`` are ``deterministic``, ``return_state`` and ``partition_names``.
        """
        tree = to_flax_params(layer, params)
        params = from_flax_params(layer, tree, input_size)  # checks every shape against layer
        if input_size is None:
            input_size = int(jnp.shape(tree[group_names(layer)[0]]["w_ih"])[0])
        return Recurrent(layer, input_size, rngs=rngs, params=params, **options)

    def to_rnnjax(self):
        """``(layer, params)``: the pure layer and its parameters (for ``to_torch`` etc.)."""
        cells = []
        for group, (names, treedef) in zip(group_names(self.layer), self._structure, strict=True):
            values = getattr(self, group)
            cells.append(jax.tree.unflatten(treedef, [values[n][...] for n in names]))
        return self.layer, tuple(cells)

    def set_view(self, deterministic: bool | None = None):
        """For ``nnx.view(model, deterministic=...)``.

        Args:
          deterministic: if True, disables dropout.
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        inputs,
        seq_lengths=None,
        *,
        initial_state=None,
        mask=None,
        resets=None,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
        return_state: bool | None = None,
    ):
        """Runs the layer over a batch of sequences.

        Args:
          inputs: ``[B, T, I]`` (``[T, B, I]`` when ``batch_first=False``), floating.
          seq_lengths: optional ``[B]`` integers in [0, T] (the pure layer's ``lengths``).
          initial_state: optional, laid out as the returned state; zeros when None.
          mask: optional ``[B, T]`` booleans instead of ``seq_lengths`` (left padding, holes: a
            masked step keeps the state and outputs zeros), as the pure layer's ``mask``.
          resets: optional ``[B, T]`` booleans: the state restarts before a marked step
            (several documents packed in one row), as the pure layer's ``resets``.
          deterministic: no dropout when True; overrides the attribute.
          rngs: a ``dropout`` stream or key for this call instead of the module's own.
          return_state: also return the final state; overrides the attribute.

        Returns:
          ``outputs`` ``[B, T, D*H]`` (zero at padding), or ``(outputs, state)`` with ``state``
          ``h_n`` ``[L*D, B, H]`` (``LSTMState(h_n, c_n)`` for an LSTM).
        """
        layer = self.layer
        x = jnp.asarray(inputs)
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            layout = "[B, T, I]" if layer.batch_first else "[T, B, I]"
            raise ValueError(
                f"inputs must have shape {layout} with I={self.input_size} "
                f"(batch_first={layer.batch_first}), got shape {x.shape}"
            )
        dropout_key = None
        deterministic = self.deterministic if deterministic is None else deterministic
        if layer.dropout > 0 and layer.num_layers > 1 and not deterministic:
            dropout_key = self._dropout_key(rngs)
        _, params = self.to_rnnjax()
        outputs, state = layer(
            params, x, seq_lengths, initial_state, dropout_key=dropout_key, mask=mask, resets=resets
        )
        return_state = self.return_state if return_state is None else return_state
        return (outputs, state) if return_state else outputs

    def _dropout_key(self, rngs):
        stream = self.rngs if rngs is None else rngs
        if isinstance(stream, nnx.Rngs):
            stream = stream["dropout"]
        if isinstance(stream, nnx.RngStream):
            return stream()
        if stream is None:
            raise ValueError(
                f"{type(self).__name__} has dropout={self.layer.dropout} and deterministic=False "
                "but no 'dropout' RNG stream: build it with rngs=nnx.Rngs(params=..., "
                "dropout=...), pass rngs= to the call, or call model.eval()"
            )
        return stream


class _Stack(Recurrent):
    _pure = rnnjax.Recurrent

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        deterministic: bool = False,
        return_state: bool = False,
        partition_names: Mapping[str, tuple] | None = None,
        dtype=None,
        rngs: nnx.Rngs,
        **options,
    ):
        layer = rnnjax.with_compute_dtype(self._pure(hidden_size, num_layers, **options), dtype)
        super().__init__(
            layer,
            input_size,
            deterministic=deterministic,
            return_state=return_state,
            partition_names=partition_names,
            rngs=rngs,
        )


class LSTM(_Stack):
    """``rnnjax.LSTM`` as an NNX module: ``LSTM(input_size, hidden_size, num_layers, *, rngs)``.

    As ``torch.nn.LSTM(input_size, hidden_size, num_layers)``; keyword ``options`` go to
    ``rnnjax.LSTM`` (``bidirectional``, ``dropout``, ``batch_first``, ``proj_size``,
    ``backend``, ...); ``dtype`` is the cells' matmuls' (``jnp.bfloat16``: operands rounded,
    state, sums and parameters float32; ``rnnjax.with_compute_dtype``); the rest are
    ``Recurrent``'s.
    """

    _pure = rnnjax.LSTM


class GRU(_Stack):
    """``rnnjax.GRU`` as an NNX module; see ``LSTM``."""

    _pure = rnnjax.GRU


class RNN(_Stack):
    """``rnnjax.RNN`` (Elman) as an NNX module; see ``LSTM``."""

    _pure = rnnjax.RNN
