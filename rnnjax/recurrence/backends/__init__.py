"""The ``Backend`` enum, its resolver, and the fast paths: fused, native (``csrc/``), cuDNN."""

from rnnjax.recurrence.backends._resolve import Backend, check_structure, resolve, resolve_layer

__all__ = ["Backend", "check_structure", "resolve", "resolve_layer"]
