"""Rolling a cell over time: ``unroll`` (``lax.scan`` over one sequence) and the backends.

The backends (``rnnjax.recurrence.backends``) are the ``Backend`` enum, its AUTO resolver and the
fast paths behind it: fused (custom VJP), native (compiled C++ on CPU) and cuDNN.
"""

from rnnjax.recurrence._unroll import scan_time_major, unroll
from rnnjax.recurrence.backends import Backend

__all__ = ["Backend", "scan_time_major", "unroll"]
