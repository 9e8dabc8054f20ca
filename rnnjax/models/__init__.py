"""Models built from rnnjax layers: pure ``init``/``apply`` functions on parameter pytrees."""

from rnnjax.models._char_lm import CharLM, CharLMParams
from rnnjax.models._classifier import POOLINGS, ClassifierParams, SequenceClassifier

__all__ = ["POOLINGS", "CharLM", "CharLMParams", "ClassifierParams", "SequenceClassifier"]
