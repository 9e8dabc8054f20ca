"""Encoder-decoder: padding invariance, the scan against stepping by hand, scheduled sampling,
the bridges, any cell (a user-written one included), the masked loss and the schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.models import (
    Decoder,
    Encoder,
    Seq2Seq,
    TeacherForcingSchedule,
    sequence_loss,
)
from tests.test_custom_cell import PeepholeLSTM, PeepholeLSTMCell

VS, VT, B = 11, 13, 3


def random_params(init, seed=0, scale=0.5):
    """Parameters of ``init``'s structure drawn with NumPy: U(-scale, scale) everywhere.

    Compiling the models' own initialisers (threefry) costs seconds each on a CPU; the tests need
    parameters of the right structure, not of a particular distribution.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-scale, scale, s.shape), s.dtype), shapes)


def _model(attention="bahdanau", cell="gru", feed=True, bidirectional=True, bridge="tanh"):
    layer = {"gru": rnnjax.GRU, "lstm": rnnjax.LSTM, "peephole": PeepholeLSTM}[cell]
    encoder = Encoder(layer(6, bidirectional=bidirectional), vocab_size=VS, embed_size=5)
    hidden = encoder.output_size if attention == "dot" else 7
    dec_cell = {"gru": rnnjax.cells.GRUCell, "lstm": rnnjax.cells.LSTMCell}.get(
        cell, PeepholeLSTMCell
    )(hidden)
    decoder = Decoder(
        dec_cell,
        vocab_size=VT,
        embed_size=4,
        memory_size=encoder.output_size,
        summary_size=encoder.summary_size,
        attention=attention,
        input_feeding=feed,
        bridge=bridge,
        dropout=0.3,
    )
    return Seq2Seq(encoder, decoder)


def _batch(src_len=6, tgt_len=5, seed=0):
    rng = np.random.default_rng(seed)
    src = jnp.asarray(rng.integers(4, VS, (B, src_len)), jnp.int32)
    tgt = jnp.asarray(rng.integers(4, VT, (B, tgt_len)), jnp.int32)
    return src, jnp.array([src_len, 3, 1]), tgt, jnp.array([tgt_len, 2, 4])


CONFIGS = [
    ("bahdanau", "gru", True),
    ("dot", "lstm", True),
    ("general", "gru", False),
    ("concat", "peephole", True),
    ("none", "lstm", True),
]


@pytest.mark.parametrize("attention, cell, feed", CONFIGS)
def test_teacher_forced_scan_equals_stepping_by_hand(attention, cell, feed):
    model = _model(attention, cell, feed)
    params = random_params(model.init)
    src, src_len, tgt, _ = _batch()
    logits, weights = jax.jit(model.__call__)(params, src, src_len, tgt)
    state, memory = jax.jit(model.encode)(params, src, src_len)
    step = jax.jit(model.decoder.step)
    for b in range(B):
        s = jax.tree.map(lambda x, b=b: x[b], state)
        m = jax.tree.map(lambda x, b=b: x[b], memory)
        for t in range(tgt.shape[1]):
            s, step_logits, step_weights = step(params.decoder, s, tgt[b, t], m)
            np.testing.assert_allclose(step_logits, logits[b, t], rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(step_weights, weights[b, t], rtol=2e-5, atol=1e-6)
    if attention != "none":  # padding never attended; weights sum to one
        mask = np.arange(src.shape[1])[None, :] < np.asarray(src_len)[:, None]
        assert np.all(np.asarray(weights)[~np.broadcast_to(mask[:, None], weights.shape)] == 0)
        np.testing.assert_allclose(np.sum(weights, -1), 1.0, rtol=1e-5)


def _loss(model, params, src, src_len, tgt_in, tgt_len, **kwargs):
    logits, _ = model(params, src, src_len, tgt_in, **kwargs)
    return sequence_loss(logits, jnp.roll(tgt_in, -1, axis=1), tgt_len)[0]


@pytest.mark.parametrize("attention, cell, feed", [("general", "lstm", False)])
def test_padding_invariance_of_outputs_logits_and_gradients(attention, cell, feed):
    model = _model(attention, cell, feed)
    params = random_params(model.init)
    src, src_len, tgt, tgt_len = _batch(src_len=6, tgt_len=5)
    # The same batch padded further, with garbage after every length.
    junk = jnp.asarray(np.random.default_rng(9).integers(0, VS, (B, 4)), jnp.int32)
    src_wide = jnp.concatenate([src, junk], axis=1)
    src_wide = jnp.where(jnp.arange(10)[None, :] < src_len[:, None], src_wide, junk[:, :1])
    src_garbled = jnp.where(jnp.arange(6)[None, :] < src_len[:, None], src, 1)
    tgt_wide = jnp.concatenate([tgt, jnp.ones((B, 3), tgt.dtype)], axis=1)

    encoder, forward = jax.jit(model.encoder), jax.jit(model.__call__)
    out, summary = encoder(params.encoder, src, src_len)
    out_wide, summary_wide = encoder(params.encoder, src_wide, src_len)
    np.testing.assert_allclose(out_wide[:, :6], out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(summary_wide, summary, rtol=1e-5, atol=1e-6)

    logits, _ = forward(params, src, src_len, tgt)
    logits_wide, _ = forward(params, src_wide, src_len, tgt_wide)
    logits_garbled, _ = forward(params, src_garbled, src_len, tgt)
    valid = np.arange(5)[None, :] < np.asarray(tgt_len)[:, None]
    np.testing.assert_allclose(
        np.asarray(logits_wide)[:, :5][valid], np.asarray(logits)[valid], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(logits_garbled, logits, rtol=1e-5, atol=1e-5)

    # The loss only reads the valid targets; gradients agree too.
    tgt_out_wide = jnp.concatenate([jnp.roll(tgt, -1, axis=1), jnp.ones((B, 3), tgt.dtype)], 1)

    def loss_wide(p):
        return sequence_loss(model(p, src_wide, src_len, tgt_wide)[0], tgt_out_wide, tgt_len)[0]

    grads = jax.jit(jax.grad(_loss, argnums=1), static_argnums=0)(
        model, params, src, src_len, tgt, tgt_len
    )
    grads_wide = jax.jit(jax.grad(loss_wide))(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_wide, grads
    )


@pytest.mark.parametrize("attention, cell, feed", [CONFIGS[1]])
def test_scheduled_sampling_at_ratio_one_is_teacher_forcing(attention, cell, feed):
    model = _model(attention, cell, feed)
    params = random_params(model.init)
    src, src_len, tgt, _ = _batch()
    drop = jax.random.key(5)
    forward = jax.jit(model.__call__)
    forced, _ = forward(params, src, src_len, tgt, dropout_key=drop)
    sampled, _ = forward(
        params, src, src_len, tgt, teacher_prob=1.0, sample_key=jax.random.key(1), dropout_key=drop
    )
    np.testing.assert_allclose(sampled, forced, rtol=1e-5, atol=1e-6)


def test_scheduled_sampling_compiles_once_for_every_ratio():
    model = _model()
    params = random_params(model.init)
    src, src_len, tgt, tgt_len = _batch(tgt_len=8)
    traces = []

    @jax.jit
    def loss(params, prob, key):
        traces.append(1)
        return _loss(model, params, src, src_len, tgt, tgt_len, teacher_prob=prob, sample_key=key)

    values = [float(loss(params, p, jax.random.key(3))) for p in (1.0, 0.5, 0.0)]
    assert len(traces) == 1
    assert values[0] != values[2]  # at ratio 0 the model reads its own samples
    assert values[2] == float(loss(params, 0.0, jax.random.key(3)))  # same key, same result
    grads = jax.grad(loss)(params, 0.3, jax.random.key(4))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bridges():
    model = Seq2Seq(
        Encoder(rnnjax.GRU(6), vocab_size=VS, embed_size=5),
        Decoder(
            rnnjax.cells.GRUCell(6),
            vocab_size=VT,
            embed_size=4,
            memory_size=6,
            attention="bahdanau",
            bridge="copy",
        ),
    )
    params = random_params(model.init)
    src, src_len, _, _ = _batch()
    state, _ = model.encode(params, src, src_len)
    _, h_n = model.encoder.layer(params.encoder.rnn, params.encoder.embed[src], src_len)
    np.testing.assert_allclose(state.cell, h_n[-1])  # the PyTorch tutorial's hand-over
    # Bidirectional LSTM -> tanh bridge: both directions' h and c feed the decoder's h and c.
    model = _model("dot", "lstm", bidirectional=True)
    assert model.encoder.summary_size == 4 * 6
    params = random_params(model.init)
    state, _ = model.encode(params, src, src_len)
    _, summary = model.encoder(params.encoder, src, src_len)
    flat = jnp.concatenate([summary.hidden[0], summary.cell[0]])
    (w_h, b_h), (w_c, b_c) = params.decoder.bridge
    want_h, want_c = jnp.tanh(flat @ w_h + b_h), jnp.tanh(flat @ w_c + b_c)
    np.testing.assert_allclose(state.cell.hidden[0], want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.cell.cell[0], want_c, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="bridge='copy' needs"):
        Seq2Seq(model.encoder, Decoder(rnnjax.cells.GRUCell(5), VT, 4, 12, bridge="copy"))
    with pytest.raises(ValueError, match="memory_size must equal"):
        Seq2Seq(model.encoder, Decoder(rnnjax.cells.GRUCell(5), VT, 4, 11, 24))


def test_sequence_loss_matches_numpy_over_valid_tokens():
    logits = jax.random.normal(jax.random.key(0), (2, 4, 5))
    targets = jnp.array([[1, 2, 3, 4], [0, 0, 9, 9]])  # 9 is out of range: padding is never read
    lengths = jnp.array([4, 2])
    loss, metrics = sequence_loss(logits, jnp.minimum(targets, 4), lengths)
    z = np.asarray(logits, np.float64)
    lp = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    want = [-lp[0, t, targets[0, t]] for t in range(4)] + [-lp[1, t, 0] for t in range(2)]
    np.testing.assert_allclose(loss, np.mean(want), rtol=1e-6)
    assert metrics["tokens"] == 6
    smooth, _ = sequence_loss(logits, jnp.minimum(targets, 4), lengths, label_smoothing=0.1)
    uniform = [-lp[0, t].mean() for t in range(4)] + [-lp[1, t].mean() for t in range(2)]
    np.testing.assert_allclose(smooth, 0.9 * np.mean(want) + 0.1 * np.mean(uniform), rtol=1e-6)


def test_schedules_follow_bengio_et_al():
    steps = np.arange(0, 5000, 250)
    k = 400.0
    inv = TeacherForcingSchedule("inverse_sigmoid", k=k)
    np.testing.assert_allclose(
        [inv(int(i)) for i in steps], [k / (k + math.exp(i / k)) for i in steps], rtol=1e-5
    )
    lin = TeacherForcingSchedule("linear", k=1.0, c=1e-4, minimum=0.2)
    np.testing.assert_allclose(
        [lin(int(i)) for i in steps], [max(0.2, 1 - 1e-4 * i) for i in steps], rtol=1e-6
    )
    exp = TeacherForcingSchedule("exponential", k=0.999)
    np.testing.assert_allclose([exp(int(i)) for i in steps], 0.999**steps, rtol=1e-4)
    assert float(jax.jit(inv)(jnp.int32(10**9))) == 0.0  # no overflow
    with pytest.raises(ValueError, match="exponential schedule must be in"):
        TeacherForcingSchedule("exponential", k=1.5)
