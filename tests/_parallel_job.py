"""A tiny data-parallel training job for tests/test_parallel.py, run alone or under launch.local.

    python -m launch.local -n 2 --cpu-devices 2 -- python -m tests._parallel_job --workdir=W ...

A two-layer LSTM language model on random tokens, truncated BPTT (a carried state sharded along
its batch axis), dropout, Adam: trained for ``--steps`` steps with the machinery of
``rnnjax.training`` (mesh over every device of every process, per-process batch rows, replicated
state, orbax checkpoints every ``--checkpoint-every`` steps, resumption, preemption sync).
Process 0 appends ``{"step", "loss"}`` lines to ``WORKDIR/losses.jsonl`` and, at the end, writes
the parameters to ``WORKDIR/params.npz``. ``reference`` trains the same model on one device with
none of that machinery: the independent run that the sharded runs must reproduce.
"""

import argparse
import functools
import json
import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from rnnjax import data, training

V, E, H, L, B, T = 11, 8, 16, 1, 8, 6  # vocabulary, embedding, hidden, layers, batch, time
TOKENS = np.random.default_rng(0).integers(0, V, 400).astype(np.int32)


def make_layer(backend: str) -> rnnjax.LSTM:
    return rnnjax.LSTM(H, L, dropout=0.25, backend=backend)


def init_params(layer, key):
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    return {
        "embed": 0.5 * jax.random.normal(k_embed, (V, E)),
        "rnn": layer.init(k_rnn, E),
        "w_out": 0.3 * jax.random.normal(k_out, (H, V)),
        "b_out": jnp.zeros((V,)),
    }


def make_loss_fn(layer):
    def loss_fn(params, carry, batch, key):
        carry = jax.tree.map(lambda c: jnp.where(batch["reset"], 0.0, c), carry)
        x = params["embed"][batch["inputs"]]
        y, state = layer(params["rnn"], x, initial_state=carry, dropout_key=key)
        logits = y @ params["w_out"] + params["b_out"][None, None, :]
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        return jnp.mean(nll), (state, {})

    return loss_fn


def batch_at(step: int) -> dict:
    """The global batch of ``step``: a pure function of (seed, step)."""
    inputs, targets, reset = data.stream_windows(TOKENS, 0, step, B, T)
    return {"inputs": inputs, "targets": targets, "reset": np.bool_(reset)}


def make_optimizer():
    return training.make_optimizer(optax.adam(1e-2), max_norm=1.0)


def initial_state(layer, optimizer):
    params = init_params(layer, jax.random.PRNGKey(0))
    return training.create_train_state(
        params, optimizer, jax.random.PRNGKey(1), layer.initial_state(B)
    )


def reference(backend: str, num_steps: int):
    """Losses and final parameters of a plain one-device run (no mesh, no checkpoints)."""
    layer, optimizer = make_layer(backend), make_optimizer()
    step_fn = training.make_train_step(make_loss_fn(layer), optimizer, max_norm=1.0)
    state, losses = initial_state(layer, optimizer), []
    for step in range(num_steps):
        state, metrics = step_fn(state, batch_at(step))
        losses.append(float(metrics["loss"]))
    return losses, jax.tree.map(np.asarray, state.params)


def check_native_split(mesh) -> str:
    """A native bidirectional 2-layer LSTM call with lengths, under the mesh and without: the
    compiled program must not gather the inputs, and values and gradients must agree."""
    layer = rnnjax.LSTM(H, L, bidirectional=True, backend="native")
    params = layer.init(jax.random.PRNGKey(2), E)
    x = jax.random.normal(jax.random.PRNGKey(3), (B, T, E))
    lengths = jnp.arange(B) % (T + 1)  # empty, partial and full sequences

    def loss(params, x, state):
        y, (h, c) = layer(params, x, lengths, initial_state=state)
        return jnp.sum(y**2) + jnp.sum(h * c), (y, h, c)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
    state = layer.initial_state(B)
    state = jax.tree.map(lambda a: a + 0.1, state)
    want = grad(params, x, state)  # no mesh set: the kernels run whole
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x_split = jax.device_put(x, split)
    state_split = jax.device_put(state, training.batch_axis_sharding(layer.initial_state, B, mesh))
    params_rep = training.replicate(params, mesh)
    with jax.set_mesh(mesh):
        got = grad(params_rep, x_split, state_split)
        hlo = grad.lower(params_rep, x_split, state_split).compile().as_text()
    errors = [
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (1 + np.abs(np.asarray(b)))))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    ]
    calls = [line for line in hlo.splitlines() if "rnnjax_forward" in line]
    shapes = sorted({line.split(" = ")[1].split(" custom-call")[0][:60] for line in calls})
    return json.dumps(
        {
            "all_gathers": hlo.count("all-gather"),
            "max_error": max(errors),
            "forward": shapes,
            "cudnn_max_error": _cudnn_split_error(mesh, params[:2], x_split, state_split),
        }
    )


def _cudnn_split_error(mesh, params, x, state) -> float:
    """The cuDNN layer's wrapper, its kernel replaced by JAX's reference (this runs on CPU): the
    split run against the whole one, values and gradients."""
    from rnnjax.recurrence.backends import _cudnn

    def loss(params, x, state):
        x = jnp.swapaxes(x, 0, 1)
        y, states = _cudnn.lstm_layer(params, x, state, kernel=_cudnn.reference_kernel)
        return jnp.sum(y**2) + sum(jnp.sum(s.hidden * s.cell) for s in states), y

    first = jax.tree.map(lambda s: s[:2], state)
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
    want = grad(*jax.device_get((params, x, first)))
    with jax.set_mesh(mesh):
        got = grad(params, x, first)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (1 + np.abs(np.asarray(b)))))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )


def train(args) -> int:
    method = training.maybe_initialize_distributed(heartbeat_timeout_s=args.heartbeat)
    mesh = training.make_mesh()
    main = training.is_main_process()
    if main:
        print(f"distributed: {method}; {training.describe(mesh, B)}", flush=True)
    if args.check_native:
        print(f"native split: {check_native_split(mesh)}", flush=True)
    layer, optimizer = make_layer(args.backend), make_optimizer()
    carry = training.batch_axis_sharding(layer.initial_state, B, mesh)
    make_state = functools.partial(initial_state, layer, optimizer)
    shardings = training.train_state_sharding(jax.eval_shape(make_state), mesh, carry)
    state = jax.jit(make_state, out_shardings=shardings)()
    checkpointer = training.Checkpointer(os.path.join(args.workdir, "checkpoints"), 10)
    state = checkpointer.restore_latest(state)
    step_fn = training.make_train_step(make_loss_fn(layer), optimizer, max_norm=1.0)
    rows = training.process_batch_rows(B, mesh)
    step = int(state.step)
    if main:
        print(f"starting at step {step}; rows {rows.tolist()}", flush=True)
    log = open(os.path.join(args.workdir, "losses.jsonl"), "a") if main else None  # noqa: SIM115
    with jax.set_mesh(mesh), training.PreemptionSync() as preemption:
        while step < args.steps:
            if step == args.die_at and jax.process_index() == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            if step == args.sigterm_at and jax.process_index() == jax.process_count() - 1:
                os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice on one host only
            local = jax.tree.map(lambda a: a[rows] if a.ndim else a, batch_at(step))
            state, metrics = step_fn(state, training.make_global_batch(local, mesh, B))
            step += 1
            if log is not None:
                log.write(json.dumps({"step": step, "loss": float(metrics["loss"])}) + "\n")
                log.flush()
            if step % args.checkpoint_every == 0:
                checkpointer.save(state)
            if preemption.reached(step):
                checkpointer.save(state)
                print(f"preempted at step {step}", flush=True)
                return 128 + signal.SIGTERM
    checkpointer.save(state)
    checkpointer.close()
    same = [s.sharding.is_equivalent_to(t, s.ndim) for s, t in _pairs(state, shardings)]
    if main:
        params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state.params)
        leaves = {str(i): a for i, a in enumerate(jax.tree.leaves(params))}
        np.savez(os.path.join(args.workdir, "params.npz"), **leaves)
        print(f"done at step {step}; state shardings kept: {all(same)}; "
              f"compilations: {step_fn._cache_size()}", flush=True)  # fmt: skip
    return 0


def _pairs(state, shardings):
    return zip(jax.tree.leaves(state), jax.tree.leaves(shardings), strict=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--backend", default="scan")
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--die-at", type=int, default=-1, help="process 1 SIGKILLs itself")
    parser.add_argument("--sigterm-at", type=int, default=-1, help="the last process gets SIGTERM")
    parser.add_argument("--heartbeat", type=int, default=None)
    parser.add_argument("--check-native", action="store_true", help="see check_native_split")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
