"""Training: train state, jitted train step, evaluation, checkpoints and metric writers."""

from rnnjax.training._checkpoint import Checkpointer, CheckpointError, PreemptionFlag
from rnnjax.training._evaluate import evaluate, masked_sums
from rnnjax.training._metrics import MetricWriter, Throughput, console_line
from rnnjax.training._state import TrainState, create_train_state
from rnnjax.training._step import NonFiniteError, check_finite, make_optimizer, make_train_step

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "MetricWriter",
    "NonFiniteError",
    "PreemptionFlag",
    "Throughput",
    "TrainState",
    "check_finite",
    "console_line",
    "create_train_state",
    "evaluate",
    "make_optimizer",
    "make_train_step",
    "masked_sums",
]
