"""One-to-many: a GRU decoder learns to spell a digit's English name from its one-hot class."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax import decoding
from rnnjax.models import Decoder, VectorToSequence, sequence_loss
from tests.test_seq2seq import random_params

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PAD, BOS, EOS = 0, 1, 2
CHARS = sorted(set("".join(NAMES)))
IDS = {c: i + 3 for i, c in enumerate(CHARS)}
LENGTH = max(map(len, NAMES)) + 1


def _targets():
    inputs = np.full((10, LENGTH), PAD, np.int32)
    outputs = np.full((10, LENGTH), PAD, np.int32)
    for row, name in enumerate(NAMES):
        ids = [IDS[c] for c in name]
        inputs[row, : len(ids) + 1] = [BOS, *ids]
        outputs[row, : len(ids) + 1] = [*ids, EOS]
    lengths = np.array([len(n) + 1 for n in NAMES], np.int32)
    return jnp.asarray(inputs), jnp.asarray(outputs), jnp.asarray(lengths)


def test_spells_every_digit_name_from_its_class():
    model = VectorToSequence(
        Decoder(rnnjax.cells.GRUCell(32), vocab_size=len(CHARS) + 3, embed_size=8,
                summary_size=10, attention="none")
    )  # fmt: skip
    params = random_params(model.init, scale=0.3)
    classes = jnp.eye(10)
    inputs, outputs, lengths = _targets()
    optimizer = optax.adam(3e-2)

    @jax.jit
    def train(params, opt_state):
        def loss(p):
            return sequence_loss(model(p, classes, inputs), outputs, lengths)[0]

        def step(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), value

        return jax.lax.scan(step, (params, opt_state), None, length=150)

    (params, _), losses = train(params, optimizer.init(params))
    assert float(losses[-1]) < 0.05 < float(losses[0])
    state = model.initial_state(params, classes)
    out = decoding.greedy(
        model.decode_step, params, None, state, bos_id=BOS, eos_id=EOS, max_length=LENGTH
    )
    chars = {i: c for c, i in IDS.items()}
    rows = zip(out.tokens, out.lengths, strict=True)
    spelled = ["".join(chars[int(i)] for i in row[:n]) for row, n in rows]
    assert spelled == NAMES
    beam = decoding.beam_search(
        model.decode_step, params, None, state, beam_size=3, bos_id=BOS, eos_id=EOS,
        max_length=LENGTH, num_return=1,
    )  # fmt: skip
    np.testing.assert_array_equal(beam.tokens[:, 0], out.tokens)


def test_rejects_a_source_attention_and_bad_vectors():
    with pytest.raises(ValueError, match="attention must be 'none'"):
        VectorToSequence(Decoder(rnnjax.cells.GRUCell(4), 5, 3, memory_size=4, summary_size=2))
    decoder = Decoder(rnnjax.cells.GRUCell(4), 5, 3, summary_size=2, attention="none")
    model = VectorToSequence(decoder)
    with pytest.raises(ValueError, match=r"vectors must have shape \[B, 2\], got \(3, 4\)"):
        model.initial_state(random_params(model.init), jnp.zeros((3, 4)))
