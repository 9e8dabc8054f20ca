"""Opaque kernels under a data-parallel mesh: each device runs its own slice of the batch.

XLA partitions the operations it knows; a custom call (the native CPU kernels, cuDNN's RNN) is
opaque to it, so under a jit whose batch is split over devices XLA gathers the whole batch onto
every device and runs the kernel there, redundantly, before slicing the result again. Inside a
layer the batch axis is known, so the kernel can be run under ``jax.shard_map`` instead: each
device calls it on its ``B / n`` rows, and the gradients of the weights, replicated in and
computed per device, are summed over the devices by the transpose of the ``shard_map``.

The batch is split over the mesh axis ``BATCH_AXIS`` (``"data"``, the axis of
``rnnjax.training.make_mesh``) of the mesh set by ``jax.set_mesh``; without such a mesh, inside
a ``shard_map`` that has already split that axis, or when B does not divide evenly, the kernel
runs as it is.
"""

from collections.abc import Callable

import jax
from jax.sharding import PartitionSpec

BATCH_AXIS = "data"


def batch_devices(batch_size: int) -> int:
    """Over how many devices of the current mesh a kernel call of ``batch_size`` is split (1:
    not split)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or BATCH_AXIS not in mesh.axis_names or BATCH_AXIS in mesh.manual_axes:
        return 1
    devices = mesh.shape[BATCH_AXIS]
    return devices if devices > 1 and batch_size % devices == 0 else 1


def per_device(kernel: Callable, weights, batched: tuple, batch_axes: tuple, out_axes):
    """``kernel(weights, *batched)`` with the batch split over the mesh's ``BATCH_AXIS``.

    Args:
      kernel: the call, ``kernel(weights, *batched) -> outputs``; it sees the per-device rows.
      weights: a pytree of arrays used whole by every row (parameters): replicated.
      batched: arrays (or pytrees of arrays) with a batch axis.
      batch_axes: for each entry of ``batched``, the position of its batch axis (every leaf of a
        pytree entry has it at the same position).
      out_axes: a pytree prefix of the outputs giving each output's batch axis.

    Returns:
      The outputs of ``kernel`` on the whole batch.
    """
    first = jax.tree.leaves(batched[0])[0]
    if batch_devices(first.shape[batch_axes[0]]) == 1:
        return kernel(weights, *batched)

    def spec(axis):
        return PartitionSpec(*[None] * axis, BATCH_AXIS)

    return jax.shard_map(
        kernel,
        in_specs=(PartitionSpec(), *map(spec, batch_axes)),
        out_specs=jax.tree.map(spec, out_axes),
        axis_names={BATCH_AXIS},
        # The kernels' results (``jax.ffi.ffi_call``) carry no varying-axes type for JAX to check;
        # unchecked, the cotangent of a replicated input is summed over the axis (a psum), which
        # is the weights' gradient over the whole batch.
        check_vma=False,
    )(weights, *batched)
