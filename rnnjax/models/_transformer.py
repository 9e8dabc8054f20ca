"""A small causal Transformer language model (GPT-2 style, pre-LN), in pure JAX.

Written as pure ``init``/``apply`` functions on a parameter pytree, like ``CharLM``, so that the
char-LM task trains either with the same loss, trainer and evaluation. Besides rnnjax's shape
vocabulary: V vocabulary, D model width, N heads, K = D / N head size, F = 4 D MLP width, C the
context (the longest sequence, fixed by the learned position table), S a cache's length::

    model = TransformerLM(vocab_size=65, context_size=128, width=128, num_layers=4, num_heads=4)
    params = model.init(key)
    logits, _ = model.apply(params, tokens)                 # [B, T] -> [B, T, V], T <= C
    cache = model.init_cache(batch_size=B)                  # generation, one token at a time
    cache, logits = model.decode_step(params, cache, token)  # [B] -> [B, V], O(position) work

Each block is ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (pre-LN; a final LN before the read-out),
with learned absolute positions, tanh-approximated GELU and an untied read-out. Attention is the
plain softmax over the causal mask: it writes ``[B, N, T, T]`` scores, the memory that
``benchmarks/rnn_vs_transformer.py`` measures against the RNN (XLA on CPU has no fused,
memory-efficient attention kernel). Dropout (on the embeddings and on each residual branch, as
nanoGPT without attention-weight dropout) runs only when ``apply`` gets a ``dropout_key``.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._dropout import dropout


class TransformerBlockParams(NamedTuple):
    """One pre-LN block: layer norms ``[D]``, attention and MLP weights (``x @ w + b``)."""

    ln1_scale: Float[Array, " D"]
    ln1_bias: Float[Array, " D"]
    w_qkv: Float[Array, "D 3D"]
    b_qkv: Float[Array, " 3D"]
    w_attn_out: Float[Array, "D D"]
    b_attn_out: Float[Array, " D"]
    ln2_scale: Float[Array, " D"]
    ln2_bias: Float[Array, " D"]
    w_fc: Float[Array, "D F"]
    b_fc: Float[Array, " F"]
    w_mlp_out: Float[Array, "F D"]
    b_mlp_out: Float[Array, " D"]


class TransformerParams(NamedTuple):
    """Parameters of ``TransformerLM``.

    Attributes:
      embed: ``[V, D]`` token embeddings.
      positions: ``[C, D]`` learned position embeddings.
      blocks: L ``TransformerBlockParams``.
      ln_scale: ``[D]`` final layer norm scale.
      ln_bias: ``[D]`` final layer norm bias.
      w_out: ``[D, V]`` read-out weights.
      b_out: ``[V]`` read-out bias.
    """

    embed: Float[Array, "V D"]
    positions: Float[Array, "C D"]
    blocks: tuple
    ln_scale: Float[Array, " D"]
    ln_bias: Float[Array, " D"]
    w_out: Float[Array, "D V"]
    b_out: Float[Array, " V"]


class KVCache(NamedTuple):
    """Keys and values of every position decoded so far.

    Attributes:
      keys: ``[L, B, S, N, K]``; positions ``>= index`` are not yet written.
      values: ``[L, B, S, N, K]``.
      index: scalar int32, the position the next ``decode_step`` writes.
    """

    keys: Float[Array, "L B S N K"]
    values: Float[Array, "L B S N K"]
    index: Int[Array, ""]


def _lead(v, x):
    """``v [D]`` with x's leading axes as ones (tests raise on implicit rank promotion)."""
    return v.reshape((1,) * (x.ndim - 1) + v.shape)


def _linear(x, w, b):
    return x @ w + _lead(b, x)


def _layer_norm(x, scale, bias, eps=1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * _lead(scale, x) + _lead(bias, x)


def _attend(q, k, v, mask):
    """Softmax attention: q ``[B, T, N, K]``, k/v ``[B, S, N, K]``, mask ``[T, S]`` (True: see)."""
    scores = jnp.einsum("btnk,bsnk->bnts", q, k) / jnp.sqrt(jnp.float32(q.shape[-1]))
    scores = jnp.where(mask[None, None], scores, jnp.finfo(scores.dtype).min)
    return jnp.einsum("bnts,bsnk->btnk", jax.nn.softmax(scores, axis=-1), v)


@dataclasses.dataclass(frozen=True)
class TransformerLM:
    """Next-token model ``tokens [B, T] -> logits [B, T, V]``; holds static configuration only.

    Attributes:
      vocab_size: V.
      context_size: C, the longest input (learned positions exist for 0 .. C-1).
      width: D, the residual stream's size; a multiple of ``num_heads``.
      num_layers: L blocks.
      num_heads: N.
      dropout: rate on the embeddings and on each residual branch, with a ``dropout_key`` only.
    """

    vocab_size: int
    context_size: int
    width: int = 128
    num_layers: int = 4
    num_heads: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "context_size", "width", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.width % self.num_heads:
            raise ValueError(
                f"width must be a multiple of num_heads={self.num_heads}, got {self.width}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def init(self, key: PRNGKeyArray) -> TransformerParams:
        """GPT-2's initialisation: N(0, 0.02) weights, residual outputs N(0, 0.02 / sqrt(2 L))."""
        d, f, v = self.width, 4 * self.width, self.vocab_size
        k_embed, k_pos, k_out, k_blocks = jax.random.split(key, 4)
        std, out_std = 0.02, 0.02 / (2 * self.num_layers) ** 0.5

        def block(k):
            k_qkv, k_attn, k_fc, k_mlp = jax.random.split(k, 4)
            return TransformerBlockParams(
                ln1_scale=jnp.ones((d,)),
                ln1_bias=jnp.zeros((d,)),
                w_qkv=std * jax.random.normal(k_qkv, (d, 3 * d)),
                b_qkv=jnp.zeros((3 * d,)),
                w_attn_out=out_std * jax.random.normal(k_attn, (d, d)),
                b_attn_out=jnp.zeros((d,)),
                ln2_scale=jnp.ones((d,)),
                ln2_bias=jnp.zeros((d,)),
                w_fc=std * jax.random.normal(k_fc, (d, f)),
                b_fc=jnp.zeros((f,)),
                w_mlp_out=out_std * jax.random.normal(k_mlp, (f, d)),
                b_mlp_out=jnp.zeros((d,)),
            )

        return TransformerParams(
            embed=std * jax.random.normal(k_embed, (v, d)),
            positions=std * jax.random.normal(k_pos, (self.context_size, d)),
            blocks=tuple(block(k) for k in jax.random.split(k_blocks, self.num_layers)),
            ln_scale=jnp.ones((d,)),
            ln_bias=jnp.zeros((d,)),
            w_out=std * jax.random.normal(k_out, (d, v)),
            b_out=jnp.zeros((v,)),
        )

    def _heads(self, x):
        return x.reshape(*x.shape[:-1], self.num_heads, self.width // self.num_heads)

    def _qkv(self, p: TransformerBlockParams, x):
        q, k, v = jnp.split(
            _linear(_layer_norm(x, p.ln1_scale, p.ln1_bias), p.w_qkv, p.b_qkv), 3, -1
        )
        return self._heads(q), self._heads(k), self._heads(v)

    def _finish_block(self, p: TransformerBlockParams, x, attended, keys):
        """Adds the attention output and the MLP branch to the residual stream ``x``."""
        attended = attended.reshape(*attended.shape[:-2], self.width)
        x = x + dropout(keys[0], self.dropout, _linear(attended, p.w_attn_out, p.b_attn_out))
        h = jax.nn.gelu(_linear(_layer_norm(x, p.ln2_scale, p.ln2_bias), p.w_fc, p.b_fc))
        return x + dropout(keys[1], self.dropout, _linear(h, p.w_mlp_out, p.b_mlp_out))

    def _read_out(self, params: TransformerParams, x):
        return _linear(_layer_norm(x, params.ln_scale, params.ln_bias), params.w_out, params.b_out)

    def apply(
        self,
        params: TransformerParams,
        tokens: Int[Array, "B T"],
        state=None,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ):
        """Teacher-forced forward pass over the causal mask.

        Args:
          params: from ``init``.
          tokens: ``[B, T]`` input ids, ``T <= context_size``.
          state: must be None (a Transformer carries nothing between windows); the argument keeps
            ``CharLM.apply``'s signature so that the char-LM task calls both alike.
          dropout_key: enables dropout; deterministic when None.

        Returns:
          ``(logits [B, T, V], None)``.
        """
        if state is not None:
            raise ValueError("state must be None: a TransformerLM carries no state between calls")
        t = tokens.shape[1]
        if t > self.context_size:
            raise ValueError(
                f"tokens has {t} positions, more than context_size={self.context_size}"
            )
        num_keys = 1 + 2 * self.num_layers
        keys = [None] * num_keys if dropout_key is None else jax.random.split(dropout_key, num_keys)
        x = dropout(keys[0], self.dropout, params.embed[tokens] + params.positions[None, :t])
        causal = jnp.tril(jnp.ones((t, t), bool))
        for i, p in enumerate(params.blocks):
            q, k, v = self._qkv(p, x)
            x = self._finish_block(p, x, _attend(q, k, v, causal), keys[1 + 2 * i : 3 + 2 * i])
        return self._read_out(params, x), None

    def init_cache(self, batch_size: int, length: int | None = None) -> KVCache:
        """An empty cache of ``length`` positions (``context_size`` when None), index 0."""
        length = self.context_size if length is None else length
        if not 1 <= length <= self.context_size:
            raise ValueError(f"length must be in [1, {self.context_size}], got {length!r}")
        n, k = self.num_heads, self.width // self.num_heads
        zeros = jnp.zeros((self.num_layers, batch_size, length, n, k))
        return KVCache(zeros, zeros, jnp.zeros((), jnp.int32))

    def decode_step(
        self, params: TransformerParams, cache: KVCache, token: Int[Array, " B"]
    ) -> tuple[KVCache, Float[Array, "B V"]]:
        """Feeds one token per row at position ``cache.index``; its cost grows with the cache.

        Equals the last row of ``apply`` over all tokens fed so far (tested). The caller keeps
        ``cache.index`` below the cache's length (positions past it are dropped).

        Returns:
          ``(cache, logits [B, V])`` with the token's keys and values written and index + 1.
        """
        index = cache.index
        x = params.embed[token][:, None, :]  # [B, 1, D]
        x = x + params.positions[index][None, None, :]
        visible = (jnp.arange(cache.keys.shape[2]) <= index)[None, :]  # [1, S]
        all_keys, all_values = [], []
        no_dropout = (None, None)
        for i, p in enumerate(params.blocks):
            q, k, v = self._qkv(p, x)
            keys = jax.lax.dynamic_update_slice_in_dim(cache.keys[i], k, index, axis=1)
            values = jax.lax.dynamic_update_slice_in_dim(cache.values[i], v, index, axis=1)
            x = self._finish_block(p, x, _attend(q, keys, values, visible), no_dropout)
            all_keys.append(keys)
            all_values.append(values)
        cache = KVCache(jnp.stack(all_keys), jnp.stack(all_values), index + 1)
        return cache, self._read_out(params, x[:, 0])

    def sample(
        self,
        params: TransformerParams,
        key: PRNGKeyArray,
        prompt: Int[Array, " P"],
        num_tokens: int,
        temperature: float = 1.0,
    ) -> Int[Array, " N"]:
        """Generates ``num_tokens`` ids after ``prompt`` (as ``CharLM.sample``).

        Within the context, each token costs one ``decode_step`` on a KV cache; past it (learned
        positions end at C - 1), each token reruns ``apply`` on the last C tokens, as nanoGPT's
        ``generate`` does. Jit-compatible with ``num_tokens`` static; needs ``P <= C``.
        """
        prompt = jnp.asarray(prompt)
        c, p = self.context_size, prompt.shape[0]
        if p > c:
            raise ValueError(f"prompt has {p} ids, more than context_size={c}")
        cache = self.init_cache(1)
        cache, _ = jax.lax.scan(
            lambda cache, t: (self.decode_step(params, cache, t[None])[0], None),
            cache,
            prompt[:-1],
        )

        def draw(logits, index):
            sub = jax.random.fold_in(key, index)
            return jax.random.categorical(sub, logits / temperature).astype(prompt.dtype)

        def cached(carry, index):
            cache, token = carry
            cache, logits = self.decode_step(params, cache, token[None])
            token = draw(logits[0], index)
            return (cache, token), token

        num_cached = min(num_tokens, c - p + 1)
        _, first = jax.lax.scan(cached, (cache, prompt[-1]), jnp.arange(num_cached))
        if num_cached == num_tokens:
            return first

        def windowed(window, index):
            logits, _ = self.apply(params, window[None])
            token = draw(logits[0, -1], index)
            return jnp.concatenate([window[1:], token[None]]), token

        window = jnp.concatenate([prompt, first])[-c:]
        _, rest = jax.lax.scan(windowed, window, jnp.arange(num_cached, num_tokens))
        return jnp.concatenate([first, rest])
