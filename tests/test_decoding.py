"""Decoding: beam search against an exhaustive search, greedy == beam 1, EOS and early exit,
sampling (top-k, temperature, frequencies) and one compilation per shape."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import decoding
from rnnjax.models import Decoder, Encoder, Seq2Seq
from tests.test_seq2seq import random_params

EOS, BOS = 0, 2


def toy_step(params, memory, state, tokens):
    """A tiny recurrent model: h' = tanh(h W + E[y] + m), logits = 3 h' U."""
    h = jnp.tanh(state @ params["w"] + params["embed"][tokens] + memory)
    return h, 3.0 * h @ params["out"]


def _toy(vocab=3, hidden=4, rows=2, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(0, 0.8, (hidden, hidden)),
        "embed": rng.normal(0, 1, (vocab, hidden)),
        "out": rng.normal(0, 1, (hidden, vocab)),
    }
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    memory = jnp.asarray(rng.normal(0, 1, (rows, hidden)), jnp.float32)
    return params, memory, jnp.zeros((rows, hidden))


def _log_prob(params, memory_row, sequence):
    """log P(sequence) of one row under ``toy_step``, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h, token, total = np.zeros(p["w"].shape[0]), BOS, 0.0
    for y in sequence:
        h = np.tanh(h @ p["w"] + p["embed"][token] + np.asarray(memory_row, np.float64))
        z = 3.0 * h @ p["out"]
        total += z[y] - z.max() - np.log(np.sum(np.exp(z - z.max())))
        token = y
    return total


def _exhaustive(params, memory_row, vocab, max_length, alpha):
    """Every hypothesis: EOS-terminated ones shorter than L and every sequence of length L."""
    hypotheses = []
    for n in range(1, max_length + 1):
        for body in itertools.product(range(1, vocab), repeat=n - 1):
            lasts = range(vocab) if n == max_length else [EOS]
            for last in lasts:
                seq = (*body, last)
                lp = _log_prob(params, memory_row, seq)
                hypotheses.append((lp / ((5 + n) / 6) ** alpha, lp, seq))
    return sorted(hypotheses, key=lambda h: -h[0])


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_beam_search_with_a_wide_beam_is_the_exact_n_best(alpha):
    vocab, max_length, beam = 3, 4, 24  # every candidate fits in the first K: the search is exact
    params, memory, state = _toy(vocab)
    result = decoding.beam_search(
        toy_step, params, memory, state, beam_size=beam, bos_id=BOS, eos_id=EOS,
        max_length=max_length, alpha=alpha, num_return=10,
    )  # fmt: skip
    for row in range(2):
        want = _exhaustive(params, memory[row], vocab, max_length, alpha)[:10]
        np.testing.assert_allclose(result.scores[row], [h[0] for h in want], rtol=1e-5)
        np.testing.assert_allclose(result.log_probs[row], [h[1] for h in want], rtol=1e-5)
        for j, (_, _, seq) in enumerate(want):
            length = int(result.lengths[row, j])
            assert length == (len(seq) - 1 if seq[-1] == EOS else len(seq))
            np.testing.assert_array_equal(result.tokens[row, j, : len(seq)], seq)


def test_narrow_beam_returns_consistent_sorted_hypotheses():
    params, memory, state = _toy(vocab=5, rows=3, seed=1)
    result = decoding.beam_search(
        toy_step, params, memory, state, beam_size=3, bos_id=BOS, eos_id=EOS, max_length=6
    )
    assert result.tokens.shape == (3, 3, 6)
    assert np.all(np.diff(np.asarray(result.scores), axis=1) <= 0)
    for row, j in itertools.product(range(3), range(3)):
        length = int(result.lengths[row, j])
        seq = list(np.asarray(result.tokens[row, j, : min(length + 1, 6)]))
        assert EOS not in seq[:length]
        np.testing.assert_allclose(
            result.log_probs[row, j], _log_prob(params, memory[row], seq), rtol=1e-5
        )
        penalty = ((5 + len(seq)) / 6) ** 0.6
        want = result.log_probs[row, j] / penalty
        np.testing.assert_allclose(result.scores[row, j], want, rtol=1e-6)


def _seq2seq():
    encoder = Encoder(rnnjax.GRU(8, bidirectional=True), vocab_size=9, embed_size=6)
    decoder = Decoder(
        rnnjax.cells.LSTMCell(8), vocab_size=7, embed_size=5, memory_size=16,
        summary_size=encoder.summary_size, attention="general",
    )  # fmt: skip
    model = Seq2Seq(encoder, decoder)
    params = random_params(model.init, scale=1.0)
    b_out = params.decoder.b_out.at[EOS].add(1.5)  # EOS likely enough that some rows end
    params = params._replace(decoder=params.decoder._replace(b_out=b_out))
    rng = np.random.default_rng(0)
    src = jnp.asarray(rng.integers(3, 9, (6, 5)), jnp.int32)
    return model, params, *jax.jit(model.encode)(params, src, jnp.array([5, 4, 3, 2, 1, 5]))


def test_greedy_equals_beam_one_and_a_loop_by_hand():
    model, params, state, memory = _seq2seq()
    kwargs = {"bos_id": BOS, "eos_id": EOS, "max_length": 7}
    greedy = decoding.greedy(model.decode_step, params, memory, state, **kwargs)
    beam = decoding.beam_search(
        model.decode_step, params, memory, state, beam_size=1, alpha=0.0, **kwargs
    )
    np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
    np.testing.assert_array_equal(beam.lengths[:, 0], greedy.lengths)
    np.testing.assert_allclose(beam.log_probs[:, 0], greedy.log_probs, rtol=1e-5)
    assert 0 < int(jnp.sum(greedy.lengths < 7)) < 6  # some rows end with EOS, some run out

    tokens, s = jnp.full((6,), BOS), state  # by hand: argmax, one step at a time
    for t in range(7):
        s, logits = model.decode_step(params, memory, s, tokens)
        tokens = jnp.argmax(logits, axis=-1)
        ended = np.asarray(greedy.lengths) < t
        np.testing.assert_array_equal(np.asarray(greedy.tokens[:, t])[~ended], tokens[~ended])


def _counting_step(calls):
    """Row r emits token 1 until step ``memory[r]``, then EOS; ``calls`` counts executed steps."""

    def step(params, memory, state, tokens):
        jax.debug.callback(lambda: calls.append(1))
        logits = jnp.where(state[:, None] == memory[:, None], jnp.array([5.0, 0, 0]), params)
        return state + 1, logits

    return step


def test_eos_ends_rows_and_the_loop_stops_early():
    calls = []
    step = _counting_step(calls)
    stop_at = jnp.array([2, 0, 4])
    params = jnp.array([[0.0, 5.0, 0.0]])
    out = decoding.greedy(
        step, params, stop_at, jnp.zeros(3, jnp.int32), bos_id=2, eos_id=0, max_length=10
    )
    np.testing.assert_array_equal(out.lengths, [2, 0, 4])
    np.testing.assert_array_equal(out.tokens[0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.tokens[2, :5], [1, 1, 1, 1, 0])
    assert len(calls) == 5  # the loop ended with the last row's EOS, not at max_length
    short = decoding.greedy(
        step, params, stop_at, jnp.zeros(3, jnp.int32), bos_id=2, eos_id=0, max_length=3
    )
    np.testing.assert_array_equal(short.lengths, [2, 0, 3])  # row 2 is cut at L, without EOS
    calls.clear()
    beam = decoding.beam_search(
        step, params, stop_at, jnp.zeros(3, jnp.int32), beam_size=2, bos_id=2, eos_id=0,
        max_length=10, alpha=0.0, num_return=1,
    )  # fmt: skip
    np.testing.assert_array_equal(beam.lengths[:, 0], [2, 0, 4])
    assert len(calls) == 5  # the best of every row was final after 5 steps


def test_sampling_top_k_temperature_and_frequencies():
    params, memory, state = _toy(vocab=5, rows=3, seed=2)
    kwargs = {"bos_id": BOS, "eos_id": EOS, "max_length": 6}
    greedy = decoding.greedy(toy_step, params, memory, state, **kwargs)
    top1 = decoding.sample(toy_step, params, memory, state, jax.random.key(0), top_k=1, **kwargs)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)
    np.testing.assert_allclose(top1.log_probs, greedy.log_probs, rtol=1e-6)
    a = decoding.sample(toy_step, params, memory, state, jax.random.key(1), **kwargs)
    b = decoding.sample(toy_step, params, memory, state, jax.random.key(1), **kwargs)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    # First-token frequencies over many rows match softmax(logits / T), and top-k cuts the tail.
    rows, temperature = 4000, 0.7
    many = jnp.broadcast_to(memory[:1], (rows, memory.shape[1]))
    first = decoding.sample(
        toy_step, params, many, jnp.zeros((rows, 4)), jax.random.key(3),
        temperature=temperature, max_length=1, bos_id=BOS, eos_id=EOS,
    ).tokens[:, 0]  # fmt: skip
    _, logits = toy_step(params, many[:1], jnp.zeros((1, 4)), jnp.array([BOS]))
    probs = np.asarray(jax.nn.softmax(logits[0] / temperature))
    freq = np.bincount(np.asarray(first), minlength=5) / rows
    tolerance = 4 * np.sqrt(probs * (1 - probs) / rows) + 1e-3  # 4 standard errors
    assert np.all(np.abs(freq - probs) <= tolerance), (freq, probs)
    top2 = decoding.sample(
        toy_step, params, many, jnp.zeros((rows, 4)), jax.random.key(3),
        top_k=2, max_length=1, bos_id=BOS, eos_id=EOS,
    ).tokens[:, 0]  # fmt: skip
    assert set(np.unique(np.asarray(top2))) <= set(np.argsort(probs)[-2:].tolist())


def test_each_decoder_compiles_once_per_shape():
    traces = []

    def step(params, memory, state, tokens):
        traces.append(1)
        return toy_step(params, memory, state, tokens)

    kwargs = {"bos_id": BOS, "eos_id": EOS, "max_length": 5}
    for seed in range(2):  # new values, same shapes
        params, memory, state = _toy(vocab=4, seed=seed)
        decoding.greedy(step, params, memory, state, **kwargs)
        decoding.beam_search(step, params, memory, state, beam_size=3, alpha=0.2 * seed, **kwargs)
        decoding.sample(step, params, memory, state, jax.random.key(seed), **kwargs,
                        temperature=0.5 + seed)  # fmt: skip
    assert len(traces) == 3  # one trace each of greedy, beam search and sampling


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beam_size": 0}, "beam_size must be an int >= 1, got 0"),
        ({"beam_size": 2, "num_return": 3}, "num_return must be an int in"),
        ({"beam_size": 2, "max_length": 0}, "max_length must be an int >= 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    params, memory, state = _toy()
    kwargs = {"bos_id": BOS, "eos_id": EOS, "max_length": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        decoding.beam_search(toy_step, params, memory, state, **kwargs)
