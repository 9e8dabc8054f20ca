"""Checks of cell configuration, shared by the built-in cells (errors name the argument)."""


def positive_int(value, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")


def one_of(value, choices, argument: str) -> None:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {tuple(choices)}, got {value!r}")
