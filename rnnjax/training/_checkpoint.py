"""Checkpoints with orbax (atomic, last K kept) and a SIGTERM flag for preemption.

orbax notices SIGTERM by itself only under ``jax.distributed``, so ``PreemptionFlag`` installs a
plain handler: the loop polls it between steps, saves and exits.
"""

import os
import signal

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a ``TrainState`` under ``directory``, keeping the last ``max_to_keep``.

    Saves are synchronous; orbax writes each step to a temporary directory and renames it when
    complete, so a run killed mid-save leaves the previous checkpoint as the latest one.
    """

    def __init__(self, directory: str, max_to_keep: int):
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state) -> None:
        """Saves ``state`` at ``state.step`` unless that step is already saved."""
        step = int(state.step)
        if step == self.latest_step:
            return
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore_latest(self, like):
        """Returns the latest saved state, shaped like ``like``, or ``like`` when none is saved."""
        step = self.latest_step
        if step is None:
            return like
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()


class PreemptionFlag:
    """Sets ``requested`` when the process receives SIGTERM; use as a context manager."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __enter__(self):
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)
        return False
