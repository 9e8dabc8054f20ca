"""Training: train state, jitted train step, evaluation, checkpoints, metric writers, and data
parallelism over devices and processes."""

from rnnjax.training._checkpoint import Checkpointer, CheckpointError, PreemptionFlag
from rnnjax.training._distributed import (
    PreemptionSync,
    agree,
    barrier,
    is_main_process,
    maybe_initialize_distributed,
)
from rnnjax.training._evaluate import evaluate, masked_sums
from rnnjax.training._metrics import MetricWriter, Throughput, console_line
from rnnjax.training._parallel import (
    DATA_AXIS,
    batch_axis_sharding,
    batch_sharding,
    describe,
    make_global_batch,
    make_mesh,
    per_device_batch,
    process_batch_rows,
    replicate,
    replicated_sharding,
    train_state_sharding,
)
from rnnjax.training._state import TrainState, create_train_state
from rnnjax.training._step import NonFiniteError, check_finite, make_optimizer, make_train_step

__all__ = [
    "DATA_AXIS",
    "CheckpointError",
    "Checkpointer",
    "MetricWriter",
    "NonFiniteError",
    "PreemptionFlag",
    "PreemptionSync",
    "Throughput",
    "TrainState",
    "agree",
    "barrier",
    "batch_axis_sharding",
    "batch_sharding",
    "check_finite",
    "console_line",
    "create_train_state",
    "describe",
    "evaluate",
    "is_main_process",
    "make_global_batch",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "masked_sums",
    "maybe_initialize_distributed",
    "per_device_batch",
    "process_batch_rows",
    "replicate",
    "replicated_sharding",
    "train_state_sharding",
]
