"""Interleaved timing: every implementation runs once per round, in a rotating order.

On a shared machine the load changes over seconds; timing A fully and then B would charge the
change to whichever ran second. Alternating them within each round and taking medians makes the
ratios between implementations robust even where the absolute times are not.
"""

import statistics
import time
from collections.abc import Callable


def interleaved(
    runs: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Times each ``runs[name]()`` (which must block until done) ``repeats`` times, alternating.

    Args:
      runs: name -> zero-argument callable that runs one iteration to completion.
      repeats: timed iterations per implementation.
      warmup: untimed iterations per implementation first (compilation, allocator warm-up).

    Returns:
      name -> the ``repeats`` durations in seconds, in the order they were taken.
    """
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            runs[name]()
    samples = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """The ratio of two implementations' times in each round of ``interleaved``.

    Both ran within the same round, so a load change between rounds moves both; the spread of
    these ratios says how far a table's ratio of medians can be trusted on a noisy machine.
    """
    if len(numerator) != len(denominator):
        raise ValueError(
            f"round_ratios: the two sample lists must have one entry per round, "
            f"got {len(numerator)} and {len(denominator)}"
        )
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartile (both the value itself for one sample)."""
    if not values:
        raise ValueError("quartiles: needs at least one value, got none")
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3
