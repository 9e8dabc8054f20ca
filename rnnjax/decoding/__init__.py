"""Decoding from a step function: greedy, temperature / top-k sampling, batched beam search.

All are jit-compiled with static shapes (``lax.while_loop`` that stops once every row has ended)
and drive ``step_fn(params, memory, state, tokens [N]) -> (state, logits [N, V])``, for example
``rnnjax.models.Seq2Seq.decode_step`` with the state and memory of ``Seq2Seq.encode``.
"""

from rnnjax.decoding._beam_search import BeamResult, beam_search, length_penalty
from rnnjax.decoding._sampling import Decoded, greedy, sample, top_k_logits

__all__ = [
    "BeamResult",
    "Decoded",
    "beam_search",
    "greedy",
    "length_penalty",
    "sample",
    "top_k_logits",
]
