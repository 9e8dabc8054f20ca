"""The ``Backend`` enum, its resolver, and the fast paths: fused, native (``csrc/``), cuDNN,
associative (linear cells) and Newton (DEER, quasi-DEER)."""

from rnnjax.recurrence.backends._associative import linear_scan
from rnnjax.recurrence.backends._newton import Newton, NewtonResult, newton_states
from rnnjax.recurrence.backends._resolve import Backend, check_structure, resolve, resolve_layer

__all__ = [
    "Backend",
    "Newton",
    "NewtonResult",
    "check_structure",
    "linear_scan",
    "newton_states",
    "resolve",
    "resolve_layer",
]
