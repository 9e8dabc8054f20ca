"""Config command-line errors as one line: unknown fields (with the nearest names), bad values.

ml_collections answers an override of a missing field with an AttributeError traceback, raised
while absl parses the flags; ``parse_flags`` checks the overrides against the config first.
"""

import contextlib
import difflib
import importlib.util
import os
import sys

import ml_collections
from absl import flags

_SHARED_POSITIVE_INTS = (
    "num_steps",
    "batch_size",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "max_nonfinite_in_a_row",
)


class ConfigError(ValueError):
    """A config that cannot run; the message names the field, the expectation and the value."""


def _field_paths(config, prefix="") -> dict:
    paths = {}
    for name, value in config.items():
        path = prefix + name
        if isinstance(value, ml_collections.ConfigDict):
            paths.update(_field_paths(value, path + "."))
        paths[path] = value
    return paths


def _load_config(spec: str):
    path, _, preset = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path!r}")
    module_spec = importlib.util.spec_from_file_location("_config_module", path)
    if module_spec is None:
        raise ConfigError(f"config file not found or not a Python file: {path!r}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path!r}") from None
    try:
        return module.get_config(preset) if preset else module.get_config()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config {spec!r}: {e}") from None


def check_overrides(argv: list, flag_name: str = "config") -> None:
    """Raises ``ConfigError`` for a config file or preset that does not load, or a
    ``--config.FIELD=...`` naming no field of it."""
    specs = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag_name}=")]
    if specs:
        path = specs[-1].partition(":")[0]
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path!r} (--{flag_name}=PATH[:preset])")
    overrides = [
        a.split("=", 1)[0].split(".", 1)[1]
        for a in argv
        if a.startswith((f"--{flag_name}.", f"--no{flag_name}."))
    ]
    if not specs:
        return
    config = _load_config(specs[-1])  # an unknown preset is one line too, overrides or none
    if not overrides:
        return
    paths = _field_paths(config)
    for field in overrides:
        if field not in paths:
            close = difflib.get_close_matches(field, list(paths), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown config field {field!r}{hint}")


def parse_flags(argv: list) -> list:
    """absl ``flags_parser`` for ``app.run``: clear one-line errors and exit status 2."""
    try:
        check_overrides(argv)
        return flags.FLAGS(argv)
    except ConfigError as e:
        _exit(str(e))
    except flags.Error as e:
        _exit(f"Bad config value: {e}")


def _exit(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def exit_on_user_error():
    """Turns the errors a user can fix (config, data files, checkpoints, paths) into one line on
    stderr and exit status 2, for the command-line tools that read a finished run."""
    from rnnjax import data, training  # the flag helpers above stay free of jax

    try:
        yield
    except (ConfigError, data.DataError, training.CheckpointError, OSError) as e:
        _exit(str(e))


def validate(config) -> None:
    """Checks the shared fields, then the task's own (``task.validate``); raises ``ConfigError``."""
    from experiments import tasks  # tasks import this module for the check helpers

    try:
        task = tasks.get(config.get("task", "char_lm"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check_positive_ints(config, *_SHARED_POSITIVE_INTS)
    check_positive(config, "learning_rate")
    check_positive(config, "grad_clip_norm")
    check_choice(config, "schedule", ("cosine", "constant"))
    if not 0 <= config.warmup_steps < config.num_steps:
        raise ConfigError(
            f"config.warmup_steps must be in [0, num_steps={config.num_steps}), "
            f"got {config.warmup_steps!r}"
        )
    if config.time_budget_s < 0:
        raise ConfigError(f"config.time_budget_s must be >= 0, got {config.time_budget_s!r}")
    task.validate(config)


def check_positive_ints(config, *paths: str) -> None:
    for path in paths:
        value = _get(config, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"config.{path} must be a positive integer, got {value!r}")


def check_positive(config, path: str) -> None:
    if not _get(config, path) > 0:
        raise ConfigError(f"config.{path} must be positive, got {_get(config, path)!r}")


def check_range(config, path: str, low: float, high: float) -> None:
    """``low <= value < high``."""
    value = _get(config, path)
    if not low <= value < high:
        raise ConfigError(f"config.{path} must be in [{low:g}, {high:g}), got {value!r}")


def check_choice(config, path: str, choices) -> None:
    value = _get(config, path)
    if value not in choices:
        raise ConfigError(f"config.{path} must be one of {list(choices)}, got {value!r}")


def _get(config, path: str):
    for name in path.split("."):
        config = config[name]
    return config
