"""Experiments: one absl trainer (``experiments.train``), configs in ``experiments/configs``."""
