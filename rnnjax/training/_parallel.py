"""Data parallelism: one mesh axis over every device of every process, batches split along it.

The global batch ``[B, ...]`` is sharded over the mesh axis ``"data"`` (``DATA_AXIS``); parameters
and optimizer state are replicated, so the gradient's mean over the batch becomes an all-reduce
that XLA inserts by itself. Each process loads only the rows of the global batch that live on its
own devices (``process_batch_rows``) and ``make_global_batch`` assembles the global array from
those rows with ``jax.make_array_from_process_local_data``. Because a batch is a pure function of
(seed, step), the global batch, and hence the run, is the same whatever the number of processes:

    mesh = training.make_mesh()                        # all devices of all processes
    rows = training.process_batch_rows(B, mesh)        # e.g. [8, 16) on process 1 of 2, B = 16
    local = {k: v[rows] for k, v in task_batch(step).items()}
    batch = training.make_global_batch(local, mesh, B) # [B, ...] arrays sharded over "data"

The meshes use ``AxisType.Auto``: XLA propagates the batch sharding through the model, whose code
needs no sharding annotations. The native and cuDNN backends, custom calls that XLA cannot
split, run under ``jax.shard_map`` when traced under ``jax.set_mesh(mesh)``
(``rnnjax.recurrence.backends._per_device``).
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# The axis the native and cuDNN backends split their kernel calls over (one name for both).
from rnnjax.recurrence.backends._per_device import BATCH_AXIS as DATA_AXIS


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (every device of every process by default).

    ``jax.make_mesh`` orders the devices for the interconnect (TPU torus, GPU NVLink islands); the
    rows a process loads follow from that order (``process_batch_rows``).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device, got none")
    return jax.make_mesh((len(devices),), (DATA_AXIS,), (AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays ``[B, ...]`` split along their first axis over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh`` (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def per_device_batch(batch_size: int, mesh: Mesh) -> int:
    """``batch_size / devices``; raises ValueError when ``batch_size`` does not divide evenly."""
    devices = mesh.shape[DATA_AXIS]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1 or batch_size % devices:
        lower = max(devices, batch_size // devices * devices)
        raise ValueError(
            f"batch_size must be a positive multiple of the {devices} devices of the mesh "
            f"(the global batch is split evenly over them), got {batch_size}; use e.g. {lower} "
            f"or {lower + devices}"
        )
    return batch_size // devices


def process_batch_rows(batch_size: int, mesh: Mesh) -> np.ndarray:
    """The rows of the global batch ``[B, ...]`` this process loads, in increasing order.

    They are the rows held by this process's devices: ``[p * B / P, (p + 1) * B / P)`` for process
    ``p`` of ``P`` when the mesh orders devices by process (CPUs, GPUs), possibly several runs of
    rows on a TPU slice whose mesh interleaves hosts.

    Returns:
      ``[B / P]`` int64 indices (``batch[rows]`` on the host's NumPy batch).
    """
    per_device_batch(batch_size, mesh)
    indices = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    rows = {i for index in indices.values() for i in range(*index[0].indices(batch_size))}
    return np.array(sorted(rows), np.int64)


def make_global_batch(local_batch, mesh: Mesh, batch_size: int):
    """Assembles the global batch from this process's rows (``process_batch_rows``).

    Args:
      local_batch: a pytree of NumPy arrays: leaves ``[B / P, ...]``, this process's rows of the
        global batch; 0-d leaves (per-batch flags) must be equal on every process and are
        replicated.
      mesh: from ``make_mesh``.
      batch_size: B, the global batch size.

    Returns:
      The same pytree of global ``jax.Array``: ``[B, ...]`` sharded over ``data``, 0-d leaves
      replicated.
    """
    rows = len(process_batch_rows(batch_size, mesh))
    split, copy = batch_sharding(mesh), replicated_sharding(mesh)

    def to_global(path, leaf):
        leaf = np.asarray(leaf)
        if leaf.ndim == 0:
            return jax.make_array_from_process_local_data(copy, leaf, ())
        if leaf.shape[0] != rows:
            raise ValueError(
                f"local_batch{jax.tree_util.keystr(path)} must have this process's {rows} rows of "
                f"the global batch of {batch_size} on its first axis, got shape {leaf.shape}"
            )
        return jax.make_array_from_process_local_data(split, leaf, (batch_size, *leaf.shape[1:]))

    return jax.tree.map_with_path(to_global, local_batch)


def replicate(tree, mesh: Mesh):
    """Places a pytree of host values, identical on every process, on every device of ``mesh``."""
    copy = replicated_sharding(mesh)

    def put(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_process_local_data(copy, leaf, leaf.shape)

    return jax.tree.map(put, tree)


def batch_axis_sharding(make_tree: Callable[[int], Any], batch_size: int, mesh: Mesh):
    """Shardings for per-example state (a carried RNN state): each leaf split along its batch axis.

    The batch axis of each leaf is found by building the tree abstractly (``jax.eval_shape``) for
    ``batch_size`` and for twice that: the axis that doubles. Leaves without one are replicated.

    Args:
      make_tree: ``make_tree(batch_size) -> pytree``, e.g. ``layer.initial_state``.
      batch_size: B, the global batch size.
      mesh: from ``make_mesh``.

    Returns:
      A pytree of ``NamedSharding`` shaped like ``make_tree(batch_size)``.
    """
    per_device_batch(batch_size, mesh)
    small = jax.eval_shape(lambda: make_tree(batch_size))
    large = jax.eval_shape(lambda: make_tree(2 * batch_size))

    def sharding(a, b):
        grown = [axis for axis, (m, n) in enumerate(zip(a.shape, b.shape, strict=True)) if m != n]
        if len(grown) > 1:
            raise ValueError(
                f"make_tree gives a leaf whose axes {grown} all grow with the batch size "
                f"({a.shape} for B={batch_size}): expected one batch axis"
            )
        if not grown:
            return replicated_sharding(mesh)
        return NamedSharding(mesh, PartitionSpec(*[None] * grown[0], DATA_AXIS))

    return jax.tree.map(sharding, small, large)


def describe(mesh: Mesh, batch_size: int) -> str:
    """One log line: processes, devices, their kind, and the per-device batch."""
    devices = mesh.devices.flat
    kinds = sorted({d.device_kind for d in devices})
    return (
        f"{jax.process_count()} process(es), {mesh.size} device(s) ({', '.join(kinds)}; "
        f"{jax.local_device_count()} on this process {jax.process_index()}), global batch "
        f"{batch_size} = {per_device_batch(batch_size, mesh)} per device"
    )


def train_state_sharding(state, mesh: Mesh, carry_sharding=None):
    """Shardings of a ``TrainState`` (or its ``jax.eval_shape``): all replicated but the carry.

    Args:
      state: the state or its abstract shape.
      mesh: from ``make_mesh``.
      carry_sharding: the carry's shardings (``batch_axis_sharding``); replicated when None.
    """
    tree = jax.tree.map(lambda _: replicated_sharding(mesh), state)
    if carry_sharding is not None:
        tree = tree.replace(carry=carry_sharding)
    return tree
