"""Models built from rnnjax layers: pure ``init``/``apply`` functions on parameter pytrees."""

from rnnjax.models._char_lm import CharLM, CharLMParams

__all__ = ["CharLM", "CharLMParams"]
