"""Checkpoints with orbax (atomic, last K kept) and a SIGTERM flag for preemption.

orbax notices SIGTERM by itself only under ``jax.distributed``, so ``PreemptionFlag`` installs a
plain handler: the loop polls it between steps, saves and exits.
"""

import logging
import os
import signal

import jax
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into this run; the message says why and what to do."""


class Checkpointer:
    """Saves and restores a ``TrainState`` under ``directory``, keeping the last ``max_to_keep``.

    Saves are synchronous; orbax writes each step to a temporary directory and renames it when
    complete, so a run killed mid-save leaves the previous checkpoint as the latest one.
    """

    def __init__(self, directory: str, max_to_keep: int, *, create: bool = True):
        self._directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self._directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=create
            ),
            # Named up front so that reading a step's metadata needs no restore call first.
            item_handlers=ocp.StandardCheckpointHandler(),
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
        """The latest intact saved state, shaped like ``like``; ``like`` when none is saved.

        A checkpoint that cannot be read (a corrupted file) is moved to ``<directory>.unreadable``
        with a warning, and the one before it is tried. A checkpoint of another model (different
        shapes or structure) raises ``CheckpointError`` naming the first differences, before
        anything is restored.

        Raises:
          CheckpointError: the checkpoint belongs to another model, or none of them can be read.
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return like
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        for step in steps:
            try:
                metadata = self._manager.item_metadata(step)
                stored = _shapes(metadata.tree) if metadata is not None else None
            except Exception:  # noqa: BLE001 - any unreadable metadata means a damaged step
                stored = None
            if stored is not None:
                _check_same_model(stored, _shapes(abstract), step, self._directory)
            try:
                return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # noqa: BLE001 - orbax raises JSON, OS and value errors alike
                aside = self._set_aside(step)
                logging.warning(
                    "checkpoint %d cannot be read (%s: %s); moved to %s, trying the previous one",
                    step, type(e).__name__, str(e).splitlines()[0][:200], aside,
                )  # fmt: skip
        raise CheckpointError(
            f"none of the checkpoints {steps} in {self._directory!r} can be read; "
            "move the directory away to start afresh"
        )

    def _set_aside(self, step: int) -> str:
        """Moves an unreadable step out of the way (kept for inspection, never overwritten)."""
        aside = f"{self._directory}.unreadable/{step}"
        if jax.process_index() == 0:  # one process moves it; the others just skip the step
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            os.replace(os.path.join(self._directory, str(step)), aside)
        self._manager.reload()
        return aside

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


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _shapes(tree) -> dict:
    """``{"params.rnn.0.w_ih": (shape, dtype)}`` for the leaves of a state or of its metadata."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        ".".join(_key_name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in leaves
    }


def _describe(shape_dtype: tuple) -> str:
    shape, dtype = shape_dtype
    return f"{dtype}{list(shape)}"


def _check_same_model(stored: dict, expected: dict, step: int, directory: str) -> None:
    differences = [
        f"{name} is {_describe(stored[name])} there and {_describe(want)} in this config"
        for name, want in expected.items()
        if name in stored and stored[name] != want
    ]
    differences += [f"{name} is missing there" for name in expected if name not in stored]
    differences += [f"{name} is not in this model" for name in stored if name not in expected]
    if differences:
        more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
        raise CheckpointError(
            f"checkpoint {step} in {directory!r} was written by a different model: "
            f"{'; '.join(differences[:2])}{more}. Resume with the config that run used "
            "(config.json beside the checkpoints) or start in a new --workdir"
        )
