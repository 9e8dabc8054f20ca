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
from rnnjax.models._forecast_baselines import (
    ARModel,
    ar_forecast,
    choose_ar_order,
    fit_ar,
    mae,
    mase,
    persistence,
    rmse,
    seasonal_naive,
)
from rnnjax.models._forecaster import FORECAST_MODES, Forecaster, ForecasterParams
from rnnjax.models._one_to_many import VectorToSequence
from rnnjax.models._scheduled_sampling import SCHEDULES, TeacherForcingSchedule
from rnnjax.models._seq2seq import Encoder, EncoderParams, Seq2Seq, Seq2SeqParams, sequence_loss
from rnnjax.models._transformer import (
    KVCache,
    TransformerBlockParams,
    TransformerLM,
    TransformerParams,
)

__all__ = [
    "ATTENTION_KINDS",
    "ARModel",
    "BRIDGES",
    "DECODER_ATTENTION",
    "FORECAST_MODES",
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
    "Forecaster",
    "ForecasterParams",
    "KVCache",
    "Memory",
    "Seq2Seq",
    "Seq2SeqParams",
    "SequenceClassifier",
    "TeacherForcingSchedule",
    "TransformerBlockParams",
    "TransformerLM",
    "TransformerParams",
    "VectorToSequence",
    "ar_forecast",
    "choose_ar_order",
    "fit_ar",
    "mae",
    "mase",
    "masked_softmax",
    "persistence",
    "rmse",
    "seasonal_naive",
    "sequence_loss",
]
