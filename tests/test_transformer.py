"""TransformerLM against a float64 NumPy reference; causality; the KV cache; the char-LM preset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_cli, train
from experiments.configs import char_lm
from rnnjax.models import TransformerLM

MODEL = TransformerLM(vocab_size=11, context_size=9, width=12, num_layers=2, num_heads=3)


def _tokens(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 11, shape), jnp.int32)


def _params(model=MODEL, seed=0):
    params = model.init(jax.random.PRNGKey(seed))
    # GPT-2's zero biases and unit norms would leave those terms untested: randomise every leaf.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noisy)


def _reference(model, params, tokens):
    """The forward pass as a float64 NumPy loop over examples, heads and query positions."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    n, k = model.num_heads, model.width // model.num_heads

    def norm(x, scale, bias):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * scale + bias

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    out = []
    for row in np.asarray(tokens):
        t = len(row)
        x = p.embed[row] + p.positions[:t]
        for b in p.blocks:
            q, kk, v = np.split(norm(x, b.ln1_scale, b.ln1_bias) @ b.w_qkv + b.b_qkv, 3, -1)
            attended = np.zeros_like(x)
            for h in range(n):
                cols = slice(h * k, (h + 1) * k)
                for i in range(t):
                    s = kk[: i + 1, cols] @ q[i, cols] / np.sqrt(k)
                    w = np.exp(s - s.max())
                    attended[i, cols] = (w / w.sum()) @ v[: i + 1, cols]
            x = x + attended @ b.w_attn_out + b.b_attn_out
            x = x + gelu(norm(x, b.ln2_scale, b.ln2_bias) @ b.w_fc + b.b_fc) @ b.w_mlp_out
            x = x + b.b_mlp_out
        out.append(norm(x, p.ln_scale, p.ln_bias) @ p.w_out + p.b_out)
    return np.stack(out)


def test_forward_matches_float64_reference():
    params, tokens = _params(), _tokens((2, 9))
    logits, state = jax.jit(MODEL.apply)(params, tokens)  # one compilation, not one per op
    assert state is None and logits.shape == (2, 9, 11)
    np.testing.assert_allclose(logits, _reference(MODEL, params, tokens), rtol=1e-4, atol=1e-4)


def test_changing_a_future_token_leaves_past_logits_unchanged():
    params, tokens = _params(), _tokens((1, 9))
    apply = jax.jit(MODEL.apply)
    before, _ = apply(params, tokens)
    for j in (0, 4, 8):
        after, _ = apply(params, tokens.at[0, j].set((tokens[0, j] + 1) % 11))
        np.testing.assert_array_equal(before[0, :j], after[0, :j])
        assert np.abs(before[0, j:] - after[0, j:]).max() > 1e-3  # the token is read from j on


def test_kv_cache_decoding_equals_the_full_forward():
    params, tokens = _params(), _tokens((3, 9))
    full, _ = MODEL.apply(params, tokens)
    cache = MODEL.init_cache(3)
    step = jax.jit(MODEL.decode_step)
    for t in range(9):
        cache, logits = step(params, cache, tokens[:, t])
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-5, atol=1e-5)
    assert int(cache.index) == 9 and cache.keys.shape == (2, 3, 9, 3, 4)


def test_sample_past_the_context_equals_a_loop_over_windows():
    params, prompt = _params(), _tokens((3,))
    key = jax.random.PRNGKey(7)
    got = jax.jit(MODEL.sample, static_argnums=3)(params, key, prompt, 14, 0.9)
    apply = jax.jit(MODEL.apply)
    stream = list(np.asarray(prompt))
    for index in range(14):  # the definition: the last C tokens through ``apply``, every step
        logits, _ = apply(params, jnp.asarray(stream[-9:])[None])
        sub = jax.random.fold_in(key, index)
        stream.append(int(jax.random.categorical(sub, logits[0, -1] / 0.9)))
    np.testing.assert_array_equal(got, stream[3:])


def test_dropout_needs_a_key():
    model = TransformerLM(11, 9, 12, 2, 3, dropout=0.5)
    params, tokens = _params(model), _tokens((2, 9))
    plain, _ = model.apply(params, tokens)
    np.testing.assert_array_equal(plain, MODEL.apply(params, tokens)[0])
    dropped, _ = model.apply(params, tokens, dropout_key=jax.random.PRNGKey(0))
    assert np.abs(dropped - plain).max() > 1e-3


def test_parameter_shapes():
    params = MODEL.init(jax.random.PRNGKey(0))
    assert params.embed.shape == (11, 12) and params.positions.shape == (9, 12)
    assert len(params.blocks) == 2 and params.w_out.shape == (12, 11)
    block = params.blocks[0]
    assert block.w_qkv.shape == (12, 36) and block.w_fc.shape == (12, 48)
    assert block.w_mlp_out.shape == (48, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 10}, "width must be a multiple of num_heads=3, got 10"),
        ({"num_layers": 0}, "num_layers must be a positive int, got 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_model_config(kwargs, message):
    args = {"vocab_size": 11, "context_size": 9, "width": 12, "num_heads": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        TransformerLM(**args)


def test_bad_calls():
    params = MODEL.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="tokens has 10 positions, more than context_size=9"):
        MODEL.apply(params, _tokens((1, 10)))
    with pytest.raises(ValueError, match="state must be None"):
        MODEL.apply(params, _tokens((1, 3)), ())
    with pytest.raises(ValueError, match=r"length must be in \[1, 9\], got 10"):
        MODEL.init_cache(1, 10)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data.tbptt", True, "config.data.tbptt must be False with model.kind='transformer'"),
        ("model.num_heads", 3, "config.model.hidden_size must be a multiple of model.num_heads=3"),
        ("model.kind", "mamba", r"config.model.kind must be one of \['rnn', 'transformer'\]"),
    ],
)
def test_bad_task_config(field, value, message):
    config = char_lm.get_config("tiny_transformer")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(config_cli.ConfigError, match=message):
        config_cli.validate(config)


def test_tiny_transformer_preset_trains(tmp_path):
    config = char_lm.get_config("tiny_transformer")
    config_cli.validate(config)
    final = train.train_and_evaluate(config, str(tmp_path))
    assert final["step"] == 12 and final["tokens"] == 1999
    assert final["loss"] < np.log(91) - 0.1, final  # below uniform over the 91 characters
    assert (tmp_path / "metrics.jsonl").exists()
