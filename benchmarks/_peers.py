"""One benchmark iteration per library, built on identical shapes, data, loss and optimizer.

Every builder returns a zero-argument callable that runs one iteration to completion (JAX results
are blocked on). The work is the same everywhere: a one-layer, unidirectional, batch-first
recurrent layer with biases; the loss is the mean squared error of the outputs ``[B, T, H]`` to a
fixed random target; training is forward + backward + global-norm clipping at 1.0 + Adam(1e-3)
(``optax.chain(clip_by_global_norm, adam)`` in JAX, ``clip_grad_norm_`` + ``torch.optim.Adam``).
JAX train steps are jitted with the parameters and optimizer state donated.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# "rnnjax" is the layer's defaults; "rnnjax-<backend>[-hoist|-nohoist|-mkl|-openblas]" pins an
# option, e.g. "rnnjax-scan-hoist" (the plain scan with the hoisted projection),
# "rnnjax-fused-nohoist", or "rnnjax-native-openblas" (the native CPU kernels on OpenBLAS); "-bf16"
# wraps the cell in a bfloat16 MixedPrecisionCell ("rnnjax-bf16": on the default backend).
# "jax-cudnn" is ``jax.experimental.rnn.lstm`` called directly on its flat weight vector (LSTM on
# a GPU only). torch runs on the GPU (cuDNN) when one is present; "torch-bf16" with its layer,
# inputs and targets in bfloat16 (on CPU oneDNN's bf16 kernels, where the CPU has bf16 units).
IMPLS = (
    "rnnjax",
    "rnnjax-scan",
    "rnnjax-fused",
    "rnnjax-native",
    "rnnjax-native-openblas",
    "rnnjax-cudnn",
    "rnnjax-scan-hoist",
    "rnnjax-bf16",
    "jax-cudnn",
    "torch",
    "torch-bf16",
    "flax",
)
MODES = ("train", "infer", "stream")
CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class Shape(NamedTuple):
    batch: int
    steps: int
    inputs: int
    hidden: int

    def __str__(self):
        return "x".join(map(str, self))


def flops(cell: str, mode: str, shape: Shape) -> float:
    """Analytic FLOPs of the matmuls (pointwise work ignored).

    Forward, per token: 2 * G * H * (I + H) (the input and the recurrent matmul, G gates); the
    backward pass costs twice the forward (the gradients of the activations and of the weights),
    so a training step is 3x the forward. ``stream`` is one token of batch one.
    """
    per_token = 2 * GATES[cell] * shape.hidden * (shape.inputs + shape.hidden)
    if mode == "stream":
        return float(per_token)
    return float(per_token * shape.batch * shape.steps * (3 if mode == "train" else 1))


def tokens(mode: str, shape: Shape) -> int:
    return 1 if mode == "stream" else shape.batch * shape.steps


def _data(shape: Shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.batch, shape.steps, shape.inputs), dtype=np.float32)
    target = rng.standard_normal((shape.batch, shape.steps, shape.hidden), dtype=np.float32)
    return x, target


def build(impl: str, cell: str, mode: str, shape: Shape) -> Callable[[], object]:
    """Returns the iteration of ``impl`` (one of IMPLS) for ``cell`` in ``mode`` on ``shape``."""
    if impl in ("torch", "torch-bf16"):
        return _torch(cell, mode, shape, bf16=impl == "torch-bf16")
    if impl == "flax":
        return _flax(cell, mode, shape)
    if impl == "jax-cudnn":
        return _jax_cudnn(cell, mode, shape)
    options, blas = {}, None
    for part in impl.split("-")[1:]:
        if part in ("hoist", "nohoist"):
            options["hoist_inputs"] = part == "hoist"
        elif part in ("mkl", "openblas"):
            blas = part
        elif part == "bf16":
            options["bf16"] = True
        else:
            options["backend"] = part
    run = _rnnjax(cell, mode, shape, options)
    return run if blas is None else _with_blas(blas, run)


def _with_blas(blas: str, run: Callable[[], object]) -> Callable[[], object]:
    """``run`` with the native kernels on ``blas``, the default restored after each call."""
    from rnnjax.recurrence.backends import _native

    _native.use_blas(blas)  # raises where that BLAS is not installed: the impl is skipped
    _native.use_blas("auto")

    def with_blas():
        _native.use_blas(blas)
        try:
            return run()
        finally:
            _native.use_blas("auto")

    return with_blas


# ---------------------------------------------------------------------------------------- JAX


def _jax_runs(apply, params, mode, shape):
    """Train or inference iteration of ``apply(params, x) -> outputs [B, T, H]`` (JAX)."""
    x, target = (jnp.asarray(a) for a in _data(shape))
    if mode == "infer":
        forward = jax.jit(apply)
        return lambda: jax.block_until_ready(forward(params, x))

    train_step, opt_state = jax_train_step(apply, params)
    # A private copy: donation deletes the buffers it is given.
    state = [jax.tree.map(jnp.copy, params), opt_state]

    def run():
        state[0], state[1], loss = train_step(state[0], state[1], x, target)
        jax.block_until_ready(loss)

    return run


def jax_train_step(apply, params):
    """``(train_step, opt_state)``: the jitted step (params and optimizer state donated)."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    def loss_fn(params, x, target):
        return jnp.mean((apply(params, x) - target) ** 2)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, target):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step, optimizer.init(params)


def _rnnjax(cell: str, mode: str, shape: Shape, options: dict):
    import rnnjax

    bf16 = options.pop("bf16", False)
    kind = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU, "rnn": rnnjax.RNN}[cell]
    layer = rnnjax.with_compute_dtype(kind(shape.hidden, **options), jnp.bfloat16 if bf16 else None)
    params = layer.init(jax.random.key(0), shape.inputs)
    if mode == "stream":
        # One step of one example through the layer with its state carried, as torch's
        # model(x[:1, :1], state): on the backend the options choose (native on CPU by default).
        step = jax.jit(lambda p, x, state: layer(p, x, initial_state=state))
        carry = [layer.initial_state(1)]
        x = jnp.asarray(_data(shape)[0][:1, :1])  # [1, 1, I]

        def run():
            out, carry[0] = step(params, x, carry[0])
            jax.block_until_ready(out)

        return run
    return _jax_runs(lambda p, x: layer(p, x)[0], params, mode, shape)


def _jax_cudnn(cell: str, mode: str, shape: Shape):
    from jax.experimental import rnn

    if cell != "lstm" or mode == "stream" or jax.default_backend() != "gpu":
        raise NotImplementedError("jax.experimental.rnn runs LSTM layers on a GPU only")
    weights = rnn.init_lstm_weight(jax.random.key(0), shape.inputs, shape.hidden, 1, False)
    zeros = jnp.zeros((1, shape.batch, shape.hidden))
    lengths = jnp.full((shape.batch,), shape.steps, jnp.int32)

    def apply(w, x):
        return rnn.lstm(x, zeros, zeros, w, lengths, shape.inputs, shape.hidden, 1, 0.0, False)[0]

    return _jax_runs(apply, weights, mode, shape)


def _flax(cell: str, mode: str, shape: Shape):
    import flax.linen as nn

    make = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[cell]
    x_np = _data(shape)[0]
    if mode == "stream":
        flax_cell = make(shape.hidden)
        x = jnp.asarray(x_np[:1, 0])  # [1, I]
        carry0 = flax_cell.initialize_carry(jax.random.key(1), x.shape)
        variables = flax_cell.init(jax.random.key(0), carry0, x)
        step = jax.jit(flax_cell.apply)
        carry = [carry0]

        def run():
            carry[0], out = step(variables, carry[0], x)
            jax.block_until_ready(out)

        return run
    model = nn.RNN(make(shape.hidden))
    params = model.init(jax.random.key(0), jnp.asarray(x_np))
    return _jax_runs(model.apply, params, mode, shape)


# -------------------------------------------------------------------------------------- torch


def _torch(cell: str, mode: str, shape: Shape, bf16: bool = False):
    import torch

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    make = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = make(shape.inputs, shape.hidden, batch_first=True).to(device, dtype)
    x_np, target_np = _data(shape)
    x = torch.from_numpy(x_np).to(device, dtype)
    target = torch.from_numpy(target_np).to(device, dtype)
    if mode == "stream":
        x1 = x[:1, :1]  # [1, 1, I]
        zeros = torch.zeros(1, 1, shape.hidden, device=device, dtype=dtype)
        carry = [(zeros, zeros.clone()) if cell == "lstm" else zeros]

        def run():
            with torch.inference_mode():
                _, carry[0] = model(x1, carry[0])
            sync()

        return run
    if mode == "infer":

        def run():
            with torch.inference_mode():
                model(x)
            sync()

        return run
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.mean((model(x)[0] - target) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync()

    return run
