"""Names of a layer's parameters in Flax, and conversion between Flax's tree and the pure pytree.

A pure layer's parameters are a tuple of ``L * D`` cell parameter pytrees in PyTorch's order
``layer * D + direction`` (``rnnjax.Recurrent.init``). In Flax every leaf becomes one parameter,
grouped per layer and direction with PyTorch's suffixes, named by its path inside the cell's
pytree::

    {"l0": {"w_ih": [I, G*H], "w_hh": [P, G*H], "b_ih": [G*H], "b_hh": [G*H]},
     "l0_reverse": {...}, "l1": {...}, ...}

Leaves that are None in the pure pytree (``b_ih`` with ``bias=False``, ``w_hr`` without a
projection) have no Flax parameter. A user's cell gets the names of its own fields
(``PeepholeParams(w_ih, w_hh, b, w_peep)`` -> ``w_ih``, ``w_hh``, ``b``, ``w_peep``).
"""

from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx
from flax.core import meta

import rnnjax

__all__ = ["from_flax_params", "group_names", "leaf_names", "to_flax_params"]


def group_names(layer: rnnjax.Recurrent) -> list[str]:
    """``["l0", "l0_reverse", "l1", ...]``: the name of each cell's group, index ``l * D + d``."""
    suffixes = ["", "_reverse"][: layer.num_directions]
    return [f"l{i}{s}" for i in range(layer.num_layers) for s in suffixes]


def _key_name(key) -> str:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey / FlattenedIndexKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(cell_params) -> list[str]:
    """The Flax names of the leaves of one cell's parameter pytree, in ``jax.tree.leaves`` order."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(cell_params)[0]]
    names = ["_".join(_key_name(k) for k in path) or "w" for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"cell parameters must have distinct leaf names, got {names}")
    return names


def to_flax_params(layer: rnnjax.Recurrent, params) -> dict:
    """The pure parameters of ``layer`` as a Flax ``params`` tree (see the module docstring).

    Args:
      layer: the ``rnnjax.Recurrent`` (``rnnjax.LSTM`` etc. or a user's subclass).
      params: from ``layer.init`` or ``rnnjax.interop.torch.from_torch``.

    Returns:
      ``{"l0": {"w_ih": ..., ...}, ...}``: the subtree of ``variables["params"]`` that
      ``rnnjax.flax.Recurrent(layer)`` (linen) reads, and the ``nnx.Param`` values of
      ``rnnjax.flax.nnx.Recurrent`` (``nnx.update(model, tree)``).
    """
    groups = group_names(layer)
    if not isinstance(params, tuple | list) or len(params) != len(groups):
        got = len(params) if isinstance(params, tuple | list) else type(params).__name__
        raise ValueError(
            f"params must be a tuple of {len(groups)} cell parameter sets "
            f"(num_layers * directions, from layer.init), got {got}"
        )
    return {
        group: dict(zip(leaf_names(cell), jax.tree.leaves(cell), strict=True))
        for group, cell in zip(groups, params, strict=True)
    }


def from_flax_params(layer: rnnjax.Recurrent, flax_params, input_size: int | None = None):
    """The pure parameters of ``layer`` from a Flax ``params`` tree (the inverse of ``to_flax``).

    Args:
      layer: the ``rnnjax.Recurrent`` the module wraps (``module.layer``).
      flax_params: ``{"l0": {...}, ...}``: the module's subtree of ``variables["params"]`` (linen,
        ``nn.Partitioned`` boxes are unboxed) or ``nnx.state(model, nnx.Param)`` (NNX).
      input_size: I; read from ``l0``'s ``w_ih`` when None (every built-in cell has one).

    Returns:
      The tuple of cell parameters ``layer(params, x)`` takes.
    """
    tree = _plain(flax_params)
    groups = group_names(layer)
    if not isinstance(tree, Mapping) or sorted(tree) != sorted(groups):
        got = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"flax_params must have the groups {groups}, got {got}")
    if input_size is None:
        if "w_ih" not in tree[groups[0]]:
            raise ValueError(f"input_size is needed: {groups[0]} has no w_ih to read it from")
        input_size = int(np.shape(tree[groups[0]]["w_ih"])[0])
    abstract = jax.eval_shape(lambda k: layer.init(k, input_size), jax.random.key(0))
    cells = []
    for group, cell in zip(groups, abstract, strict=True):
        names = leaf_names(cell)
        if sorted(tree[group]) != sorted(names):
            raise ValueError(
                f"flax_params[{group!r}] must have the parameters {names}, "
                f"got {sorted(tree[group])}"
            )
        leaves = []
        for name, want in zip(names, jax.tree.leaves(cell), strict=True):
            value = tree[group][name]
            if np.shape(value) != want.shape:
                raise ValueError(
                    f"flax_params[{group!r}][{name!r}] must have shape {want.shape} "
                    f"(input_size={input_size}), got {np.shape(value)}"
                )
            leaves.append(value)
        cells.append(jax.tree.unflatten(jax.tree.structure(cell), leaves))
    return tuple(cells)


def _plain(tree):
    """Nested dicts of arrays from linen (``nn.Partitioned`` boxes) or NNX (``nnx.State``) trees."""
    if isinstance(tree, nnx.State):
        tree = nnx.to_pure_dict(tree)
    return meta.unbox(tree)
