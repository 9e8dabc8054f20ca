"""Benchmarks of rnnjax against torch.nn and flax.linen (``benchmarks.speed``, ``.memory``)."""
