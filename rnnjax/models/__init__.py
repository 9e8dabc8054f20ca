"""Models built from rnnjax layers: pure ``init``/``apply`` functions on parameter pytrees."""

from rnnjax.models._attention import ATTENTION_KINDS, Attention, AttentionParams, masked_softmax
from rnnjax.models._char_lm import CharLM, CharLMParams
from rnnjax.models._classifier import POOLINGS, ClassifierParams, SequenceClassifier
from rnnjax.models._decoder import (
    BRIDGES,
    DECODER_ATTENTION,
    Decoder,
    DecoderParams,
    DecoderState,
    Memory,
)
from rnnjax.models._one_to_many import VectorToSequence
from rnnjax.models._scheduled_sampling import SCHEDULES, TeacherForcingSchedule
from rnnjax.models._seq2seq import Encoder, EncoderParams, Seq2Seq, Seq2SeqParams, sequence_loss

__all__ = [
    "ATTENTION_KINDS",
    "BRIDGES",
    "DECODER_ATTENTION",
    "POOLINGS",
    "SCHEDULES",
    "Attention",
    "AttentionParams",
    "CharLM",
    "CharLMParams",
    "ClassifierParams",
    "Decoder",
    "DecoderParams",
    "DecoderState",
    "Encoder",
    "EncoderParams",
    "Memory",
    "Seq2Seq",
    "Seq2SeqParams",
    "SequenceClassifier",
    "TeacherForcingSchedule",
    "VectorToSequence",
    "masked_softmax",
    "sequence_loss",
]
