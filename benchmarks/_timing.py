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
