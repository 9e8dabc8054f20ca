"""Translating, scoring and plotting for the translate task: batched decoding, BLEU, heatmaps.

BLEU is sacrebleu's ``corpus_bleu`` with every reference of a source and ``tokenize="none"``:
the text is already the tutorial's normalisation (lower case, accents stripped, words and
``! ?`` separated by single spaces), so the tokens scored are exactly the model's words (sacrebleu's
default ``13a`` tokeniser gives the same numbers on this text).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu

from experiments.tasks._files import write_atomically
from rnnjax import data, decoding

BLEU_TOKENIZE = "none"


def make_translate(model, max_length: int, batch_size: int):
    """``translate(params, src [N, S], lengths [N], beam, alpha) -> list of N id lists``.

    Rows go through in batches of ``batch_size`` (the last one padded), so each decoder compiles
    once; ``beam=1`` is greedy decoding, otherwise beam search returning the best hypothesis.
    """
    encode = jax.jit(model.encode)
    kwargs = {"bos_id": data.Vocabulary.bos_id, "eos_id": data.Vocabulary.eos_id,
              "max_length": max_length}  # fmt: skip

    def translate(params, src, lengths, beam: int = 1, alpha: float = 0.6) -> list[list[int]]:
        out = []
        for start in range(0, len(src), batch_size):
            rows = slice(start, start + batch_size)
            n = len(src[rows])
            pad = batch_size - n
            s = np.concatenate([src[rows], np.repeat(src[:1], pad, 0)])
            ln = np.concatenate([lengths[rows], np.repeat(lengths[:1], pad, 0)])
            state, memory = encode(params, jnp.asarray(s), jnp.asarray(ln))
            if beam == 1:
                result = decoding.greedy(model.decode_step, params, memory, state, **kwargs)
                tokens, lens = result.tokens, result.lengths
            else:
                result = decoding.beam_search(
                    model.decode_step, params, memory, state, beam_size=beam, alpha=alpha,
                    num_return=1, **kwargs,
                )  # fmt: skip
                tokens, lens = result.tokens[:, 0], result.lengths[:, 0]
            tokens, lens = np.asarray(tokens), np.asarray(lens)
            out.extend(tokens[i, : lens[i]].tolist() for i in range(n))
        return out

    return translate


def scores(hypotheses: list[str], references) -> dict:
    """BLEU against all references and the exact-match rate (equal to one of them)."""
    depth = max((len(r) for r in references), default=1)
    streams = [[r[i] if i < len(r) else None for r in references] for i in range(depth)]
    bleu = sacrebleu.corpus_bleu(hypotheses, streams, tokenize=BLEU_TOKENIZE)
    exact = np.mean([h in refs for h, refs in zip(hypotheses, references, strict=True)])
    return {"bleu": float(bleu.score), "exact_match": float(exact) if hypotheses else 0.0}


def write_lines(path: str, lines) -> None:
    """One line per entry, written atomically."""
    write_atomically(path, "".join(line + "\n" for line in lines))


def attention_heatmaps(model, params, sources, target_vocab, translate, path: str) -> None:
    """Writes a PNG with one heatmap per source: decoded words (rows) over source words.

    ``sources`` are ``(words, ids [S], length)``; the weights are those of the greedy
    translation, recomputed by teacher-forcing it (the same computation, one pass).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = np.stack([ids for _, ids, _ in sources])
    lengths = np.array([n for _, _, n in sources], np.int32)
    outputs = translate(params, src, lengths)
    forward = jax.jit(model.__call__)
    fig, axes = plt.subplots(len(sources), 1, figsize=(7, 3.2 * len(sources)), squeeze=False)
    for ax, (words, ids, n), out in zip(axes[:, 0], sources, outputs, strict=True):
        tgt_in = np.full((1, src.shape[1] + 1), data.Vocabulary.pad_id, np.int32)  # one shape
        tgt_in[0, : len(out) + 1] = [data.Vocabulary.bos_id, *out]
        _, weights = forward(params, ids[None], np.array([n]), tgt_in)
        ended = len(out) < src.shape[1]  # an EOS was emitted before the maximum length
        out_words = [target_vocab.words[t] for t in out] + (["<eos>"] if ended else [])
        shown = np.asarray(weights[0, : len(out_words), :n])
        ax.imshow(shown, cmap="bone", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(n), (words + ["<eos>"])[:n], rotation=45, ha="right")
        ax.set_yticks(range(len(out_words)), out_words)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
