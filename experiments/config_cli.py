"""Config command-line errors as one line: unknown fields (with the nearest names), bad values.

ml_collections answers an override of a missing field with an AttributeError traceback, raised
while absl parses the flags; ``parse_flags`` checks the overrides against the config first.
"""

import difflib
import importlib.util
import sys

import ml_collections
from absl import flags

_CELLS = ("rnn", "lstm", "gru")
_POSITIVE_INTS = (
    "num_steps",
    "batch_size",
    "seq_len",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_batch_size",
    "max_nonfinite_in_a_row",
    "sample_length",
    "model.hidden_size",
    "model.num_layers",
    "model.embed_size",
    "model.unroll",
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
    """Raises ``ConfigError`` for a ``--config.FIELD=...`` naming no field of the config file."""
    specs = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag_name}=")]
    overrides = [
        a.split("=", 1)[0].split(".", 1)[1]
        for a in argv
        if a.startswith((f"--{flag_name}.", f"--no{flag_name}."))
    ]
    if not specs or not overrides:
        return
    paths = _field_paths(_load_config(specs[-1]))
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


def validate(config) -> None:
    """Checks values before anything is built; raises ``ConfigError``."""
    for path in _POSITIVE_INTS:
        value = _get(config, path)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"config.{path} must be a positive integer, got {value!r}")
    if config.model.cell not in _CELLS:
        raise ConfigError(
            f"config.model.cell must be one of {list(_CELLS)}, got {config.model.cell!r}"
        )
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"config.model.dropout must be in [0, 1), got {config.model.dropout!r}")
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise ConfigError(
            f"config.data.val_fraction must be in [0, 1), got {config.data.val_fraction!r}"
        )
    for path in ("learning_rate", "grad_clip_norm", "sample_temperature"):
        if not _get(config, path) > 0:
            raise ConfigError(f"config.{path} must be positive, got {_get(config, path)!r}")
    if config.schedule not in ("cosine", "constant"):
        raise ConfigError(
            f"config.schedule must be 'cosine' or 'constant', got {config.schedule!r}"
        )
    if not 0 <= config.warmup_steps < config.num_steps:
        raise ConfigError(
            f"config.warmup_steps must be in [0, num_steps={config.num_steps}), "
            f"got {config.warmup_steps!r}"
        )


def _get(config, path: str):
    for name in path.split("."):
        config = config[name]
    return config
