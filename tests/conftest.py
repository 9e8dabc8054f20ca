"""Strict JAX settings for every test: implicit rank promotion is a bug in this codebase."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
