"""Strict JAX settings for every test: implicit rank promotion is a bug in this codebase.

Matmuls run at full float32 precision: on GPUs JAX's default is TF32 (about 1e-3 relative), and
the tests compare implementations of the same float32 arithmetic.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
